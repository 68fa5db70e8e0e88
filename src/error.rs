//! The one place errors become HTTP: a status and the Portkey-shaped JSON body
//! `{"status":"failure","message":"…"}`. Messages name the header or setting at fault and never
//! carry key material (routing errors are built without it).

use bytes::Bytes;
use pingora::{Error, ErrorSource, ErrorType};

use crate::auth::AuthError;
use crate::credentials::CredentialError;
use crate::routing::RouteError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    pub status: u16,
    pub message: String,
    /// A body in another shape (the OpenAI-style body of authentication errors).
    pub raw_body: Option<Bytes>,
    pub www_authenticate: Option<&'static str>,
}

impl ErrorResponse {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        ErrorResponse {
            status,
            message: message.into(),
            raw_body: None,
            www_authenticate: (status == 401).then_some("Bearer realm=\"keyway\""),
        }
    }

    pub fn body(&self) -> Bytes {
        if let Some(b) = &self.raw_body {
            return b.clone();
        }
        #[derive(serde::Serialize)]
        struct Body<'a> {
            status: &'static str,
            message: &'a str,
        }
        let body = Body {
            status: "failure",
            message: &self.message,
        };
        Bytes::from(serde_json::to_vec(&body).expect("plain strings serialize"))
    }
}

impl ErrorResponse {
    /// An OpenAI-style error body: `{"error":{"message","type","param":null,"code"}}`.
    pub fn openai(status: u16, message: String, kind: &'static str) -> Self {
        let body = serde_json::json!({
            "error": { "message": message, "type": kind, "param": null, "code": kind }
        });
        ErrorResponse {
            status,
            raw_body: Some(Bytes::from(body.to_string())),
            message,
            www_authenticate: None,
        }
    }
}

/// A mapped secret that cannot be had: 503, naming the reference's slug and the failure class.
pub fn for_secret(e: &crate::cache::secrets::SecretUnavailable) -> ErrorResponse {
    ErrorResponse::openai(503, e.to_string(), "secret_unavailable")
}

/// A secret reference the caller's workspace may not use: 403.
pub fn secret_forbidden(slug: &str, workspace: Option<&str>) -> ErrorResponse {
    let who = match workspace {
        Some(w) => format!("workspace '{w}'"),
        None => "callers without a workspace (open posture)".to_owned(),
    };
    ErrorResponse::openai(
        403,
        format!("secret reference '{slug}' is not available to {who}"),
        "secret_reference_forbidden",
    )
}

impl From<&AuthError> for ErrorResponse {
    fn from(e: &AuthError) -> Self {
        let (status, body) = e.error_body();
        ErrorResponse {
            status,
            message: e.to_string(),
            raw_body: Some(body),
            www_authenticate: e.www_authenticate(),
        }
    }
}

impl From<&RouteError> for ErrorResponse {
    fn from(e: &RouteError) -> Self {
        if let RouteError::Denied(a) = e {
            return ErrorResponse::from(a);
        }
        let status = match e {
            RouteError::NoRoute => 404,
            RouteError::MissingKey(_) => 401,
            RouteError::TokenCacheFull => 503,
            _ => 400,
        };
        ErrorResponse::new(status, e.to_string())
    }
}

/// A token that could not be had. A rejected credential the caller sent (headers) is the
/// caller's 401; one from keyway's config, or an identity provider that is down, is a 502.
pub fn for_credential(e: &CredentialError, configured: bool) -> ErrorResponse {
    let status = match e {
        CredentialError::Rejected { .. } if !configured => 401,
        _ => 502,
    };
    ErrorResponse::new(status, format!("azure auth mode {e}"))
}

/// The response for a failure while talking to the upstream; `None` when the client is gone
/// (nothing can be sent).
pub fn for_proxy_error(e: &Error) -> Option<ErrorResponse> {
    use ErrorType::*;
    let et = e.etype();
    if let HTTPStatus(code) = et {
        let message = e.context.as_ref().map_or("request refused", |c| c.as_str());
        return Some(ErrorResponse::new(*code, message));
    }
    match e.esource() {
        ErrorSource::Downstream => match et {
            WriteError | ReadError | ConnectionClosed => None,
            ReadTimedout | WriteTimedout => {
                Some(ErrorResponse::new(408, "client request timed out"))
            }
            _ => Some(ErrorResponse::new(400, "malformed client request")),
        },
        ErrorSource::Upstream => Some(match et {
            ConnectTimedout | ReadTimedout | WriteTimedout | TLSHandshakeTimedout => {
                ErrorResponse::new(504, "upstream timed out")
            }
            ConnectRefused | ConnectNoRoute | ConnectError | SocketError | BindError => {
                ErrorResponse::new(502, "upstream unreachable: cannot connect")
            }
            TLSHandshakeFailure | InvalidCert | TLSWantX509Lookup => ErrorResponse::new(
                502,
                "upstream TLS handshake failed (certificate not trusted? see ca_file)",
            ),
            _ => ErrorResponse::new(502, "upstream connection failed before a complete response"),
        }),
        ErrorSource::Internal | ErrorSource::Unset => {
            Some(ErrorResponse::new(500, "internal gateway error"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_portkey_shaped() {
        let r = ErrorResponse::new(400, "x-portkey-config: \"bad\"");
        let v: serde_json::Value = serde_json::from_slice(&r.body()).unwrap();
        assert_eq!(v["status"], "failure");
        assert_eq!(v["message"], "x-portkey-config: \"bad\"");
    }

    #[test]
    fn upstream_errors_map_to_502_and_504() {
        let e = Error::explain(ErrorType::ConnectRefused, "x").into_up();
        assert_eq!(for_proxy_error(&e).unwrap().status, 502);
        let e = Error::explain(ErrorType::ReadTimedout, "x").into_up();
        assert_eq!(for_proxy_error(&e).unwrap().status, 504);
        let e = Error::explain(ErrorType::ConnectionClosed, "x").into_down();
        assert!(for_proxy_error(&e).is_none());
        assert_eq!(ErrorResponse::from(&RouteError::NoRoute).status, 404);
        assert_eq!(
            ErrorResponse::from(&RouteError::MissingProvider).status,
            400
        );
    }
}
