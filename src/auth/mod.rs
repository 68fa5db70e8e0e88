//! Who the caller is: gateway API keys (`keys`), workspaces and virtual keys (`workspace`), JWTs
//! (`jwt`, `jwks`). Sits before routing in the request path (`gate`): the proxy authenticates a
//! request into a [`Caller`] and resolves the virtual key it uses into a `Grant` before anything
//! is routed; once routing has picked the provider, the grant's allow-lists are checked against
//! it. Nothing here imports Pingora; failures are an [`AuthError`], which `error.rs` turns into
//! a status and a body.

pub mod gate;
pub mod jwks;
pub mod jwt;
pub mod keys;
pub mod workspace;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

pub use crate::vocab::{AuthMethod, Outcome};

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

/// An authenticated caller. Every field is an `Arc`, so cloning one per request is cheap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The workspace the caller acts in; `None`: an organisation-level key, which manages
    /// keyway (the admin API) but sends no requests upstream.
    pub workspace: Option<Arc<str>>,
    pub role: Role,
    pub method: AuthMethod,
    /// Canonical provider slugs this caller may use; `None`: no restriction of its own.
    pub allowed_providers: Option<Arc<[String]>>,
    /// Models this caller may use; `None`: no restriction of its own.
    pub allowed_models: Option<Arc<[String]>>,
    /// The virtual key a gateway key is bound to; requests then use it without a header.
    pub virtual_key: Option<Arc<str>>,
    /// JWT `sub`, or the gateway key's name: for logs and the audit log only, never a metric
    /// label, never in a proxied response.
    pub subject: Option<Arc<str>>,
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
    /// A virtual key in the open posture, where nobody is authenticated to hold one.
    #[error("x-portkey-virtual-key: virtual keys need a gateway credential: set auth.mode = \"enforced\"")]
    VirtualKeyNeedsCredential,
}

/// The `Invalid` reason for a gateway key that is unknown or revoked.
pub const INVALID_API_KEY: &str = "invalid gateway API key";

impl AuthError {
    pub fn outcome_kind(&self) -> Outcome {
        match self {
            AuthError::Missing => Outcome::Missing,
            AuthError::Invalid { .. } | AuthError::VirtualKeyNeedsCredential => Outcome::Invalid,
            AuthError::Expired => Outcome::Expired,
            AuthError::Forbidden { .. } => Outcome::Forbidden,
            AuthError::Jwt { outcome, .. } => *outcome,
        }
    }

    /// The metric label: "missing", "invalid", "expired" or "forbidden".
    pub fn outcome(&self) -> &'static str {
        self.outcome_kind().as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_and_name_the_known_values() {
        assert_eq!("admin".parse::<Role>(), Ok(Role::Admin));
        assert!("root"
            .parse::<Role>()
            .unwrap_err()
            .contains("owner, admin, member"));
        assert_eq!(AuthMethod::VirtualKey.label(), "virtual_key");
    }

    #[test]
    fn outcomes_name_the_failure_class() {
        assert_eq!(AuthError::Missing.outcome(), "missing");
        assert_eq!(AuthError::Expired.outcome(), "expired");
        let e = AuthError::Invalid {
            reason: INVALID_API_KEY,
        };
        assert_eq!(e.outcome(), "invalid");
        assert_eq!(AuthError::VirtualKeyNeedsCredential.outcome(), "invalid");
    }
}
