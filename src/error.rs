//! The one place errors become HTTP: a status and a JSON body. keyway's own errors have the
//! Portkey shape `{"status":"failure","message":"…"}`; authentication and secret errors the
//! OpenAI shape `{"error":{"message","type","code"}}` that SDKs surface. Messages name the
//! header or setting at fault and never carry key material (the errors are built without it).

use std::sync::Arc;

use bytes::Bytes;
use pingora::{Error, ErrorSource, ErrorType};

use crate::auth::AuthError;
use crate::cache::secrets::SecretUnavailable;
use crate::credentials::CredentialError;
use crate::routing::RouteError;
use crate::vocab::Outcome;

/// Largest request body keyway reads itself (to check its model against an allow-list). Pingora
/// replays a body it buffered for retries up to this size, so a larger one could not be
/// forwarded after being read.
pub const BODY_CHECK_LIMIT: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    pub status: u16,
    pub message: String,
    /// A body in another shape (the OpenAI-style body of authentication errors).
    pub raw_body: Option<Bytes>,
    pub www_authenticate: Option<&'static str>,
}

impl ErrorResponse {
    fn portkey(status: u16, message: impl Into<String>) -> Self {
        ErrorResponse {
            status,
            message: message.into(),
            raw_body: None,
            www_authenticate: (status == 401).then_some("Bearer realm=\"keyway\""),
        }
    }

    /// An OpenAI-style error body: `{"error":{"message","type","param":null,"code"}}`.
    fn openai(status: u16, message: String, kind: &'static str, code: &'static str) -> Self {
        let body = serde_json::json!({
            "error": { "message": message, "type": kind, "param": null, "code": code }
        });
        ErrorResponse {
            status,
            raw_body: Some(Bytes::from(body.to_string())),
            message,
            www_authenticate: None,
        }
    }

    /// Portkey's answer when every attempt of a request ran out of its `request_timeout`.
    pub fn request_timeout(ms: u128) -> Self {
        let message = format!("Request exceeded the timeout sent in the request: {ms}ms");
        let body = serde_json::json!({
            "error": {"message": message, "type": "timeout_error", "param": null, "code": null}
        });
        ErrorResponse {
            status: 408,
            message,
            raw_body: Some(Bytes::from(body.to_string())),
            www_authenticate: None,
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

/// keyway's own refusals that are neither routing nor authentication: what the proxy finds
/// while preparing a request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    #[error("upstream host {0} cannot be resolved")]
    UnresolvableHost(Arc<str>),
    #[error("the request body could not be read")]
    BodyUnreadable,
    /// The body stalled for `[limits] body_timeout_ms`.
    #[error("the request body stalled: no byte within limits.body_timeout_ms")]
    BodyTimedOut,
    #[error("the request target is over {0} bytes (limits.max_uri_bytes)")]
    UriTooLong(usize),
    #[error("the request line and header fields are over {0} bytes (limits.max_header_bytes)")]
    HeaderTooLarge(usize),
    #[error(
        "the request body is too large to be kept for this request (its model allow-list, conditional routing or override_params): over upstream.replay_body_limit_bytes, or a chunked body over 64 KiB (send Content-Length)"
    )]
    BodyTooLarge,
    #[error("the request body names no model, and this caller may use only some models")]
    BodyWithoutModel,
    #[error("the request body is not JSON, and this caller may use only some models")]
    BodyNotJson,
    #[error("secret reference '{0}' holds characters not allowed in a header")]
    SecretNotHeaderSafe(Arc<str>),
    /// A secret reference the caller's workspace may not use (`None`: the open posture).
    #[error("secret reference '{slug}' is not available to {}", match .workspace {
        Some(w) => format!("workspace '{w}'"),
        None => "callers without a workspace (open posture)".to_owned(),
    })]
    SecretForbidden {
        slug: Arc<str>,
        workspace: Option<Arc<str>>,
    },
    /// A token that could not be had; `configured`: keyway's own credential, not the caller's.
    #[error("azure auth mode {error}")]
    Credential {
        error: CredentialError,
        configured: bool,
    },
    #[error("{0}")]
    Secret(SecretUnavailable),
}

impl From<&GatewayError> for ErrorResponse {
    fn from(e: &GatewayError) -> Self {
        use GatewayError::*;
        let message = e.to_string();
        match e {
            UnresolvableHost(_) => ErrorResponse::portkey(502, message),
            BodyUnreadable | BodyWithoutModel | BodyNotJson => ErrorResponse::portkey(400, message),
            BodyTooLarge => ErrorResponse::portkey(413, message),
            BodyTimedOut => {
                ErrorResponse::openai(408, message, "invalid_request_error", "request_timeout")
            }
            UriTooLong(_) => {
                ErrorResponse::openai(414, message, "invalid_request_error", "uri_too_long")
            }
            HeaderTooLarge(_) => ErrorResponse::openai(
                431,
                message,
                "invalid_request_error",
                "request_header_fields_too_large",
            ),
            SecretNotHeaderSafe(_) | Secret(_) => {
                ErrorResponse::openai(503, message, "secret_unavailable", "secret_unavailable")
            }
            SecretForbidden { .. } => ErrorResponse::openai(
                403,
                message,
                "secret_reference_forbidden",
                "secret_reference_forbidden",
            ),
            // A rejected credential the caller sent (headers) is the caller's 401; one from
            // keyway's configuration, or an identity provider that is down, is a 502.
            Credential { error, configured } => match (error, configured) {
                (CredentialError::Rejected { .. }, false) => ErrorResponse::portkey(401, message),
                _ => ErrorResponse::portkey(502, message),
            },
        }
    }
}

impl From<&AuthError> for ErrorResponse {
    /// 401 for missing, invalid and expired credentials (with `WWW-Authenticate`, RFC 6750),
    /// 403 for forbidden, a JWT validator's configured status and message for its refusals,
    /// 400 for a virtual key in the open posture; OpenAI-style bodies.
    fn from(e: &AuthError) -> Self {
        let jwt = matches!(e, AuthError::Jwt { .. });
        let status = match e {
            AuthError::Missing | AuthError::Invalid { .. } | AuthError::Expired => 401,
            AuthError::Forbidden { .. } => 403,
            AuthError::Jwt { status, .. } => *status,
            AuthError::VirtualKeyNeedsCredential => {
                return ErrorResponse::portkey(400, e.to_string())
            }
        };
        let (kind, code) = match (e.outcome_kind(), jwt) {
            (Outcome::Forbidden, _) => ("permission_error", "forbidden"),
            (Outcome::Missing, _) => ("invalid_request_error", "missing_credentials"),
            (Outcome::Expired, false) => ("invalid_request_error", "expired_api_key"),
            (Outcome::Invalid, false) => ("invalid_request_error", "invalid_api_key"),
            (_, true) => ("invalid_request_error", "invalid_token"),
        };
        let body =
            serde_json::json!({"error": {"message": e.to_string(), "type": kind, "code": code}});
        ErrorResponse {
            status,
            message: e.to_string(),
            raw_body: Some(Bytes::from(body.to_string())),
            www_authenticate: (status == 401).then_some(match e.outcome_kind() {
                Outcome::Missing => "Bearer realm=\"keyway\"",
                _ => "Bearer realm=\"keyway\", error=\"invalid_token\"",
            }),
        }
    }
}

impl From<&RouteError> for ErrorResponse {
    fn from(e: &RouteError) -> Self {
        let status = match e {
            RouteError::NoRoute => 404,
            RouteError::MissingKey(_) => 401,
            RouteError::ConfigForbidden => 403,
            RouteError::TokenCacheFull => 503,
            RouteError::Internal(_) => 500,
            _ => 400,
        };
        ErrorResponse::portkey(status, e.to_string())
    }
}

/// The response for a failure while talking to the upstream; `None` when the client is gone
/// (nothing can be sent).
pub fn for_proxy_error(e: &Error) -> Option<ErrorResponse> {
    use ErrorType::*;
    let et = e.etype();
    if let HTTPStatus(code) = et {
        let message = e.context.as_ref().map_or("request refused", |c| c.as_str());
        return Some(ErrorResponse::portkey(*code, message));
    }
    match e.esource() {
        ErrorSource::Downstream => match et {
            WriteError | ReadError | ConnectionClosed => None,
            ReadTimedout | WriteTimedout => {
                Some(ErrorResponse::portkey(408, "client request timed out"))
            }
            _ => Some(ErrorResponse::portkey(400, "malformed client request")),
        },
        ErrorSource::Upstream => Some(match et {
            ConnectTimedout | ReadTimedout | WriteTimedout | TLSHandshakeTimedout => {
                ErrorResponse::portkey(504, "upstream timed out")
            }
            ConnectRefused | ConnectNoRoute | ConnectError | SocketError | BindError => {
                ErrorResponse::portkey(502, "upstream unreachable: cannot connect")
            }
            TLSHandshakeFailure | InvalidCert | TLSWantX509Lookup => ErrorResponse::portkey(
                502,
                "upstream TLS handshake failed (certificate not trusted? see ca_file)",
            ),
            _ => {
                ErrorResponse::portkey(502, "upstream connection failed before a complete response")
            }
        }),
        ErrorSource::Internal | ErrorSource::Unset => {
            Some(ErrorResponse::portkey(500, "internal gateway error"))
        }
    }
}

#[cfg(test)]
mod tests;
