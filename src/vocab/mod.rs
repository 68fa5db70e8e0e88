//! The shared vocabulary: the words every layer uses — which provider, which route, how a
//! caller proved itself and how that ended, how a credential header is spelled. A leaf: it
//! imports nothing of keyway, so metrics, caches, routing and auth can all use it without
//! importing each other.

mod provider;

use http::HeaderValue;

pub use provider::{
    AuthStyle, PathStyle, Provider, ANTHROPIC_VERSION, AZURE_AI_DEFAULT_API_VERSION,
    AZURE_OPENAI_DEFAULT_API_VERSION, BEDROCK_DEFAULT_REGION,
};

/// Index into the active runtime's route labels: 0 none, 1 Portkey headers, 2.. configured
/// routes in file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RouteId(pub usize);

impl RouteId {
    pub const NONE: RouteId = RouteId(0);
    pub const PORTKEY: RouteId = RouteId(1);
}

/// How the caller proved who it is; `label()` is the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    ApiKey,
    VirtualKey,
    Jwt,
}

impl AuthMethod {
    pub fn label(self) -> &'static str {
        match self {
            AuthMethod::ApiKey => "api_key",
            AuthMethod::VirtualKey => "virtual_key",
            AuthMethod::Jwt => "jwt",
        }
    }
}

/// Failure class of an authentication or authorization step; `as_str()` is the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Missing,
    Invalid,
    Expired,
    Forbidden,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Missing => "missing",
            Outcome::Invalid => "invalid",
            Outcome::Expired => "expired",
            Outcome::Forbidden => "forbidden",
        }
    }
}

/// `Authorization: Bearer <token>` as a header value marked sensitive (never logged by the
/// `http` crate's `Debug`); `None` when the token holds characters a header cannot. The one
/// place a Bearer value is built.
pub fn bearer(token: &str) -> Option<HeaderValue> {
    let mut v = HeaderValue::try_from(format!("Bearer {token}")).ok()?;
    v.set_sensitive(true);
    Some(v)
}

/// The token of a `Bearer <token>` value (scheme case-insensitive, surrounding space trimmed);
/// `None` for another scheme or an empty token.
pub fn strip_bearer(value: &str) -> Option<&str> {
    let (scheme, rest) = value.trim_start().split_once(' ')?;
    Some(rest.trim()).filter(|t| scheme.eq_ignore_ascii_case("bearer") && !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_values_are_built_and_read_in_one_place() {
        let v = bearer("tok-1").unwrap();
        assert_eq!(v.to_str().unwrap(), "Bearer tok-1");
        assert!(v.is_sensitive());
        assert!(bearer("bad\ntoken").is_none());
        assert_eq!(strip_bearer("bearer  abc "), Some("abc"));
        assert_eq!(strip_bearer("Bearer"), None);
        assert_eq!(strip_bearer("Bearer   "), None);
        assert_eq!(strip_bearer("Basic abc"), None);
        assert_eq!(AuthMethod::VirtualKey.label(), "virtual_key");
        assert_eq!(Outcome::Forbidden.as_str(), "forbidden");
    }
}
