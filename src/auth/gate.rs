//! The door: in the enforced posture every request presents a JWT (checked by the configured
//! validators) or a gateway API key; in the open posture nobody is asked. The result is the
//! `Caller` that routing and authorization use.

use std::sync::Arc;
use std::time::SystemTime;

use http::HeaderMap;

use super::jwt::{JwtValidator, ValidatedClaims};
use super::keys::{presented_key, ApiKeyStore};
use super::workspace::{VirtualKeys, Workspaces};
use super::{AuthError, AuthMethod, AuthMode, Caller, Role};

pub struct Authenticator {
    pub mode: AuthMode,
    pub keys: ApiKeyStore,
    pub jwt: Vec<JwtValidator>,
    pub workspaces: Workspaces,
    pub virtual_keys: VirtualKeys,
}

/// A compact JWS has three dot-separated parts; gateway keys never contain a dot.
fn looks_like_jwt(token: &str) -> bool {
    token.bytes().filter(|&b| b == b'.').count() == 2
}

impl Authenticator {
    pub fn enforced(&self) -> bool {
        self.mode == AuthMode::Enforced
    }

    /// `Ok(None)` in the open posture.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        now: SystemTime,
    ) -> Result<Option<Caller>, AuthError> {
        if !self.enforced() {
            return Ok(None);
        }
        for v in &self.jwt {
            if let Some(token) = v.token_from(headers).filter(|t| looks_like_jwt(t)) {
                return match v.validate(token, now).await {
                    Ok(claims) => caller_from_claims(claims).map(Some),
                    Err(failure) => {
                        log::info!("jwt refused: {}", failure.as_str());
                        Err(v.auth_error(&failure))
                    }
                };
            }
        }
        match presented_key(headers) {
            Some(key) => self.keys.authenticate(key, now).map(|m| Some(m.caller)),
            None => Err(AuthError::Missing),
        }
    }
}

fn caller_from_claims(c: Arc<ValidatedClaims>) -> Result<Caller, AuthError> {
    let workspace = c.workspace.as_deref().ok_or_else(|| AuthError::Forbidden {
        what: "the token names no workspace".into(),
    })?;
    let role = c
        .role
        .as_deref()
        .and_then(|r| r.parse::<Role>().ok())
        .unwrap_or(Role::Member);
    Ok(Caller {
        workspace: Arc::from(workspace),
        role,
        method: AuthMethod::Jwt,
        allowed_providers: None,
        allowed_models: None,
        virtual_key: None,
        subject: Some(Arc::from(c.subject.as_str())),
    })
}
