//! Who the caller is: gateway API keys (`keys`), workspaces and virtual keys (`workspace`), JWTs
//! (`jwt`, `jwks`). Sits before routing in the request path: the proxy authenticates a request
//! into a [`Caller`], then asks [`workspace::Workspaces::authorize`] whether that caller may use the
//! provider and model it routed to. Nothing here imports Pingora; failures are an [`AuthError`]
//! whose status and body are decided here, once.

pub mod gate;
pub mod jwks;
pub mod jwt;
pub mod keys;
mod verified;
pub mod workspace;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use bytes::Bytes;

/// `[auth] mode`: `Open` (default) lets requests through without gateway credentials, as a
/// drop-in Portkey gateway does; `Enforced` refuses any request without a valid key or token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AuthMode {
    #[default]
    Open,
    Enforced,
}

impl AuthMode {
    /// Also the `auth_mode` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Open => "open",
            AuthMode::Enforced => "enforced",
        }
    }
}

/// What a caller may do inside its workspace. Parsed from `"owner"`, `"admin"`, `"member"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Owner,
    Admin,
    Member,
}

impl Role {
    pub const NAMES: &'static str = "owner, admin, member";

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "owner" => Ok(Role::Owner),
            "admin" => Ok(Role::Admin),
            "member" => Ok(Role::Member),
            other => Err(format!("unknown role '{other}' (known: {})", Role::NAMES)),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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

/// An authenticated caller. Every field is an `Arc`, so cloning one per request is cheap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub workspace: Arc<str>,
    pub role: Role,
    pub method: AuthMethod,
    /// Canonical provider slugs this caller may use; `None`: no restriction of its own.
    pub allowed_providers: Option<Arc<[String]>>,
    /// Models this caller may use; `None`: no restriction of its own.
    pub allowed_models: Option<Arc<[String]>>,
    /// The virtual key a gateway key is bound to; requests then use it without a header.
    pub virtual_key: Option<Arc<str>>,
    /// JWT `sub`, for logs only: never a metric label, never in a response.
    pub subject: Option<Arc<str>>,
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

/// Why a request is refused. Messages never carry the presented key, its hash or a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "missing credentials: send a gateway API key in x-portkey-api-key or Authorization: Bearer"
    )]
    Missing,
    /// `reason` is outward-facing: unknown and revoked keys share one, so a caller cannot tell
    /// which of the two it holds.
    #[error("{reason}")]
    Invalid { reason: &'static str },
    #[error("the gateway API key has expired")]
    Expired,
    /// `what` names what is not allowed, e.g. "model gpt-4o is not allowed in workspace team-a".
    #[error("{what}")]
    Forbidden { what: String },
    /// A JWT validator refused the token: status and message are the validator's configured ones.
    #[error("{message}")]
    Jwt {
        status: u16,
        message: String,
        outcome: Outcome,
    },
}

/// The `Invalid` reason for a gateway key that is unknown or revoked.
pub const INVALID_API_KEY: &str = "invalid gateway API key";

impl AuthError {
    /// 401 for missing, invalid and expired credentials, 403 for forbidden, a JWT validator's
    /// configured status otherwise.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::Missing | AuthError::Invalid { .. } | AuthError::Expired => 401,
            AuthError::Forbidden { .. } => 403,
            AuthError::Jwt { status, .. } => *status,
        }
    }

    pub fn outcome_kind(&self) -> Outcome {
        match self {
            AuthError::Missing => Outcome::Missing,
            AuthError::Invalid { .. } => Outcome::Invalid,
            AuthError::Expired => Outcome::Expired,
            AuthError::Forbidden { .. } => Outcome::Forbidden,
            AuthError::Jwt { outcome, .. } => *outcome,
        }
    }

    /// The metric label: "missing", "invalid", "expired" or "forbidden".
    pub fn outcome(&self) -> &'static str {
        self.outcome_kind().as_str()
    }

    /// The `WWW-Authenticate` value for a 401 (RFC 6750), `None` for any other status.
    pub fn www_authenticate(&self) -> Option<&'static str> {
        if self.status() != 401 {
            return None;
        }
        Some(match self.outcome_kind() {
            Outcome::Missing => "Bearer realm=\"keyway\"",
            _ => "Bearer realm=\"keyway\", error=\"invalid_token\"",
        })
    }

    /// Status and OpenAI-style body:
    /// `{"error":{"message":…,"type":"invalid_request_error"|"permission_error","code":…}}`.
    pub fn error_body(&self) -> (u16, Bytes) {
        #[derive(serde::Serialize)]
        struct Inner<'a> {
            message: &'a str,
            #[serde(rename = "type")]
            kind: &'static str,
            code: &'static str,
        }
        #[derive(serde::Serialize)]
        struct Body<'a> {
            error: Inner<'a>,
        }
        let message = self.to_string();
        let (kind, code) = self.kind_and_code();
        let body = Body {
            error: Inner {
                message: &message,
                kind,
                code,
            },
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        (self.status(), Bytes::from(bytes))
    }

    fn kind_and_code(&self) -> (&'static str, &'static str) {
        let jwt = matches!(self, AuthError::Jwt { .. });
        match (self.outcome_kind(), jwt) {
            (Outcome::Forbidden, _) => ("permission_error", "forbidden"),
            (Outcome::Missing, _) => ("invalid_request_error", "missing_credentials"),
            (Outcome::Expired, false) => ("invalid_request_error", "expired_api_key"),
            (Outcome::Invalid, false) => ("invalid_request_error", "invalid_api_key"),
            (_, true) => ("invalid_request_error", "invalid_token"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(e: &AuthError) -> (u16, serde_json::Value) {
        let (status, bytes) = e.error_body();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[test]
    fn statuses_outcomes_and_bodies() {
        let (s, v) = body(&AuthError::Missing);
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (401, Some("missing_credentials"))
        );
        assert_eq!(v["error"]["type"], "invalid_request_error");
        let e = AuthError::Invalid {
            reason: INVALID_API_KEY,
        };
        assert_eq!((e.status(), e.outcome()), (401, "invalid"));
        assert_eq!(body(&e).1["error"]["message"], INVALID_API_KEY);
        assert_eq!(AuthError::Expired.outcome(), "expired");
        let f = AuthError::Forbidden {
            what: "model gpt-4o is not allowed in workspace team-a".into(),
        };
        let (s, v) = body(&f);
        assert_eq!(
            (s, v["error"]["type"].as_str()),
            (403, Some("permission_error"))
        );
        assert!(f.www_authenticate().is_none());
        assert!(AuthError::Expired
            .www_authenticate()
            .unwrap()
            .contains("invalid_token"));
    }

    #[test]
    fn jwt_errors_keep_the_configured_status_and_message() {
        let e = AuthError::Jwt {
            status: 403,
            message: "JWT not present or invalid.".into(),
            outcome: Outcome::Invalid,
        };
        let (s, v) = body(&e);
        assert_eq!(s, 403);
        assert_eq!(v["error"]["message"], "JWT not present or invalid.");
        assert_eq!(e.outcome(), "invalid");
        assert!(e.www_authenticate().is_none());
    }

    #[test]
    fn roles_parse_and_name_the_known_values() {
        assert_eq!("admin".parse::<Role>(), Ok(Role::Admin));
        assert!("root"
            .parse::<Role>()
            .unwrap_err()
            .contains("owner, admin, member"));
        assert_eq!(AuthMethod::VirtualKey.label(), "virtual_key");
    }
}
