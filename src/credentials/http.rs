//! The HTTP client every token source shares, and the parsing all token answers have in common.
//! Sits under `entra`, `imds` and `workload`; knows nothing of a flow, only how to send a form
//! or a GET, how to name an endpoint in an error (never with its query), and how to read the
//! `access_token` / `expires_*` fields the Azure identity endpoints answer with.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::Value;
use url::Url;

use super::{AuthMode, CredentialError, Token};
use crate::secret::Secret;

/// Connect timeout: an unreachable IMDS (keyway not on Azure) must fail fast, not hang a refresh.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Whole-request timeout: identity providers answer in well under a second when healthy.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A cheap-to-clone handle on the identity client. Entra requests honour the usual proxy
/// variables; requests to host-local metadata endpoints (IMDS, App Service) never go through a
/// proxy, as the Azure SDKs do, because a proxy cannot reach 169.254.169.254 or localhost.
#[derive(Debug, Clone)]
pub struct IdentityHttp {
    client: reqwest::Client,
    direct: reqwest::Client,
}

/// A status and a body, whatever the status.
#[derive(Debug, Clone)]
pub struct HttpReply {
    pub status: u16,
    pub body: Bytes,
}

impl IdentityHttp {
    /// A client with [`CONNECT_TIMEOUT`] and [`REQUEST_TIMEOUT`].
    ///
    /// # Panics
    /// Only if the TLS backend cannot start, as `reqwest::Client::new` does: nothing works then.
    pub fn new() -> IdentityHttp {
        Self::with_timeouts(CONNECT_TIMEOUT, REQUEST_TIMEOUT)
            .unwrap_or_else(|e| panic!("identity HTTP client: TLS backend failed to start: {e}"))
    }

    /// As `new`, with other timeouts; fails only if the TLS backend cannot start.
    pub fn with_timeouts(
        connect: Duration,
        total: Duration,
    ) -> Result<IdentityHttp, reqwest::Error> {
        let builder = || {
            reqwest::Client::builder()
                .connect_timeout(connect)
                .timeout(total)
                .user_agent(concat!("keyway/", env!("CARGO_PKG_VERSION")))
        };
        Ok(IdentityHttp {
            client: builder().build()?,
            direct: builder().no_proxy().build()?,
        })
    }

    /// POSTs `form` as `application/x-www-form-urlencoded`.
    pub async fn post_form(
        &self,
        mode: AuthMode,
        url: &Url,
        form: &[(&str, &str)],
    ) -> Result<HttpReply, CredentialError> {
        let req = self.client.post(url.clone()).form(form);
        send(mode, url, req).await
    }

    /// GETs a host-local metadata endpoint (no proxy) with extra headers.
    pub async fn get_local(
        &self,
        mode: AuthMode,
        url: &Url,
        headers: &[(&str, &str)],
    ) -> Result<HttpReply, CredentialError> {
        let mut req = self.direct.get(url.clone());
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        send(mode, url, req).await
    }
}

impl Default for IdentityHttp {
    fn default() -> Self {
        Self::new()
    }
}

async fn send(
    mode: AuthMode,
    url: &Url,
    req: reqwest::RequestBuilder,
) -> Result<HttpReply, CredentialError> {
    let unavailable = |e: reqwest::Error| CredentialError::Unavailable {
        mode,
        endpoint: endpoint_name(url),
        reason: transport_reason(&e),
    };
    let resp = req.send().await.map_err(unavailable)?;
    let status = resp.status().as_u16();
    let body = resp.bytes().await.map_err(unavailable)?;
    Ok(HttpReply { status, body })
}

/// The URL as errors show it: scheme, host, port and path; no query, no user info.
pub fn endpoint_name(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

/// What went wrong on the wire, without the URL reqwest would otherwise print.
pub(crate) fn transport_reason(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut root = None;
    let mut next = std::error::Error::source(e);
    while let Some(s) = next {
        root = Some(s);
        next = s.source();
    }
    match root {
        Some(root) => format!("{kind}: {root}"),
        None => kind.to_owned(),
    }
}

/// Reads `access_token` and the expiry from a 200 answer. Prefers `expires_on` (unix seconds,
/// IMDS / App Service) over `expires_in` (seconds from now, Entra); either may be a number or a
/// string. Details never quote the body: it may hold a token.
pub(crate) fn parse_token(
    mode: AuthMode,
    url: &Url,
    body: &[u8],
    now: SystemTime,
) -> Result<Token, CredentialError> {
    let malformed = |detail: &str| CredentialError::Malformed {
        mode,
        endpoint: endpoint_name(url),
        detail: detail.to_owned(),
    };
    let v: Value = serde_json::from_slice(body).map_err(|_| malformed("body is not JSON"))?;
    let token = v
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| malformed("no access_token"))?;
    let expires_at = match (
        flexible_secs(&v, "expires_on"),
        flexible_secs(&v, "expires_in"),
    ) {
        (Some(on), _) => UNIX_EPOCH + Duration::from_secs(on),
        (None, Some(secs)) => now + Duration::from_secs(secs),
        (None, None) => return Err(malformed("no expires_in or expires_on")),
    };
    Ok(Token {
        value: Secret::new(token),
        expires_at,
    })
}

/// A non-negative whole number of seconds given as a JSON number or a string of digits.
fn flexible_secs(v: &Value, field: &str) -> Option<u64> {
    match v.get(field)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url() -> Url {
        Url::parse("http://u:p@169.254.169.254/metadata/identity/oauth2/token?resource=x#f")
            .unwrap()
    }

    #[test]
    fn endpoint_name_drops_query_and_user_info() {
        assert_eq!(
            endpoint_name(&url()),
            "http://169.254.169.254/metadata/identity/oauth2/token"
        );
    }

    #[test]
    fn expiry_as_number_or_string_prefers_expires_on() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let t = parse_token(
            AuthMode::Managed,
            &url(),
            br#"{"access_token":"t","expires_in":"60","expires_on":"5000"}"#,
            now,
        )
        .unwrap();
        assert_eq!(t.expires_at, UNIX_EPOCH + Duration::from_secs(5000));
        let t = parse_token(
            AuthMode::Entra,
            &url(),
            br#"{"access_token":"t","expires_in":60}"#,
            now,
        )
        .unwrap();
        assert_eq!(t.expires_at, now + Duration::from_secs(60));
    }

    #[test]
    fn malformed_answers_never_quote_the_body() {
        let now = SystemTime::now();
        for body in [
            &b"sk-not-json"[..],
            br#"{"access_token":"sk-leak"}"#,
            br#"{"expires_in":1}"#,
        ] {
            let e = parse_token(AuthMode::Entra, &url(), body, now).unwrap_err();
            assert!(matches!(e, CredentialError::Malformed { .. }), "{e}");
            assert!(!e.to_string().contains("sk-"), "{e}");
        }
    }
}
