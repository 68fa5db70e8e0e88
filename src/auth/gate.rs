//! The door: in the enforced posture every request presents a JWT (checked by the configured
//! validators) or a gateway API key; in the open posture nobody is asked. The result is the
//! `Caller` that routing and authorization use, or a [`Refusal`] that says which method
//! presented the refused credential.
//!
//! Several validators: a request is accepted when any validator that finds a token in its
//! header accepts it. When the token's (unverified) `iss` is one that some validators accept,
//! only those are tried; otherwise every validator that found a token is tried, in order. If all
//! refuse, the caller sees the refusal that got furthest (a verified token with a wrong claim
//! beats an unknown key, which beats a malformed token), with that validator's status and
//! message.

use std::sync::Arc;
use std::time::SystemTime;

use http::HeaderMap;

use super::jwt::{unverified_issuer, JwtFailure, JwtValidator, ValidatedClaims};
use super::keys::{presented_key, ApiKeyStore};
use super::workspace::{VirtualKey, VirtualKeys, Workspaces};
use super::{AuthError, AuthMethod, AuthMode, Caller, Role};
use crate::vocab::Provider;

#[derive(Debug)]
pub struct Authenticator {
    pub mode: AuthMode,
    pub keys: ApiKeyStore,
    pub jwt: Vec<Arc<JwtValidator>>,
    pub workspaces: Workspaces,
    pub virtual_keys: VirtualKeys,
    /// Headers that carry a keyway credential beyond the fixed ones the proxy always strips
    /// (the JWT validators' configured headers): never forwarded upstream.
    pub credential_headers: Vec<http::HeaderName>,
}

/// A refused request: the error to answer with and the method whose credential was refused
/// (`None` when no credential was presented), for the `keyway_auth_total` metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub method: Option<AuthMethod>,
    pub error: AuthError,
}

impl Refusal {
    fn new(method: AuthMethod, error: AuthError) -> Refusal {
        Refusal {
            method: Some(method),
            error,
        }
    }
}

/// What a request may use, decided before routing: who calls, and the virtual key it uses (the
/// one it names, or the one its gateway key is bound to), already checked against the caller.
#[derive(Debug)]
pub struct Grant<'a> {
    pub caller: Option<Caller>,
    pub virtual_key: Option<&'a VirtualKey>,
}

/// A compact JWS has three dot-separated parts; gateway keys never contain a dot.
fn looks_like_jwt(token: &str) -> bool {
    token.bytes().filter(|&b| b == b'.').count() == 2
}

impl Authenticator {
    pub fn new(
        mode: AuthMode,
        keys: ApiKeyStore,
        jwt: Vec<Arc<JwtValidator>>,
        workspaces: Workspaces,
        virtual_keys: VirtualKeys,
    ) -> Authenticator {
        let mut credential_headers: Vec<http::HeaderName> =
            jwt.iter().map(|v| v.settings().header.clone()).collect();
        credential_headers.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        credential_headers.dedup();
        Authenticator {
            mode,
            keys,
            jwt,
            workspaces,
            virtual_keys,
            credential_headers,
        }
    }

    pub fn enforced(&self) -> bool {
        self.mode == AuthMode::Enforced
    }

    /// Resolves the virtual key a request uses: `named` (header or config JSON) or the
    /// caller's binding. Unknown → 401, another workspace's or not the bound one → 403; in the
    /// open posture a virtual key is refused (nobody is authenticated to hold one).
    pub fn grant(&self, caller: Option<Caller>, named: Option<&str>) -> Result<Grant<'_>, Refusal> {
        let refused = |error| Refusal::new(AuthMethod::VirtualKey, error);
        let id = named.or(caller.as_ref().and_then(|c| c.virtual_key.as_deref()));
        let virtual_key = match (id, &caller) {
            (None, _) => None,
            (Some(_), None) => return Err(refused(AuthError::VirtualKeyNeedsCredential)),
            (Some(id), Some(c)) => Some(self.virtual_keys.virtual_key_for(c, id).map_err(refused)?),
        };
        Ok(Grant {
            caller,
            virtual_key,
        })
    }

    /// Whether checking the grant needs the request's model (some allow-list restricts models).
    pub fn restricts_models(&self, grant: &Grant<'_>) -> bool {
        let Some(c) = &grant.caller else {
            return false;
        };
        c.allowed_models.is_some()
            || grant
                .virtual_key
                .is_some_and(|v| v.allowed_models.is_some())
            || c.workspace
                .as_deref()
                .and_then(|w| self.workspaces.get(w))
                .is_some_and(|w| w.allowed_models.is_some())
    }

    /// May the granted caller use `provider` and `model` (`None`: not checked)? The workspace,
    /// the caller's own lists and the virtual key's must all allow them.
    pub fn authorize(
        &self,
        grant: &Grant<'_>,
        provider: Provider,
        model: Option<&str>,
    ) -> Result<(), Refusal> {
        let Some(c) = &grant.caller else {
            return Ok(());
        };
        let denied = |e| Refusal::new(c.method, e);
        self.workspaces
            .authorize(c, provider.as_str(), model)
            .map_err(denied)?;
        if let Some(v) = grant.virtual_key {
            v.authorize_model(model).map_err(denied)?;
        }
        Ok(())
    }

    /// Who presents these headers, whatever the posture (the admin API always asks): a JWT
    /// accepted by a validator, or a gateway key.
    pub async fn identify(&self, headers: &HeaderMap, now: SystemTime) -> Result<Caller, Refusal> {
        let mut presented = self
            .jwt
            .iter()
            .filter_map(|v| v.token_from(headers).map(|t| (v, t)))
            .filter(|(_, t)| looks_like_jwt(t));
        if let Some(first) = presented.next() {
            // One validator with a token (the usual case) costs no list.
            let claims = match presented.next() {
                None => validate_one(first.0, first.1, now).await,
                Some(second) => {
                    let all: Vec<(&JwtValidator, &str)> = [first, second]
                        .into_iter()
                        .chain(presented)
                        .map(|(v, t)| (&**v, t))
                        .collect();
                    validate_any(&all, now).await
                }
            }
            .map_err(|e| Refusal::new(AuthMethod::Jwt, e))?;
            return caller_from_claims(claims).map_err(|e| Refusal::new(AuthMethod::Jwt, e));
        }
        match presented_key(headers) {
            Some(key) => self
                .keys
                .authenticate(key, now)
                .map(|m| m.caller)
                .map_err(|e| Refusal::new(AuthMethod::ApiKey, e)),
            None => Err(Refusal {
                method: None,
                error: AuthError::Missing,
            }),
        }
    }
}

async fn validate_one(
    v: &JwtValidator,
    token: &str,
    now: SystemTime,
) -> Result<Arc<ValidatedClaims>, AuthError> {
    v.validate(token, now).await.map_err(|f| refused(v, &f))
}

/// The first validator (among those accepting the token's issuer, else all, in order) that
/// accepts its token; else the most specific refusal.
async fn validate_any(
    presented: &[(&JwtValidator, &str)],
    now: SystemTime,
) -> Result<Arc<ValidatedClaims>, AuthError> {
    let by_issuer: Vec<&(&JwtValidator, &str)> = presented
        .iter()
        .filter(|(v, t)| unverified_issuer(t).is_some_and(|iss| v.accepts_issuer(&iss)))
        .collect();
    let candidates: Vec<&(&JwtValidator, &str)> = match by_issuer.is_empty() {
        true => presented.iter().collect(),
        false => by_issuer,
    };
    let mut worst: Option<(&JwtValidator, JwtFailure)> = None;
    for (v, token) in candidates {
        match v.validate(token, now).await {
            Ok(claims) => return Ok(claims),
            Err(f) if worst.as_ref().is_none_or(|(_, w)| f.depth() > w.depth()) => {
                worst = Some((v, f))
            }
            Err(_) => {}
        }
    }
    match worst {
        Some((v, f)) => Err(refused(v, &f)),
        None => Err(AuthError::Missing),
    }
}

fn refused(v: &JwtValidator, failure: &JwtFailure) -> AuthError {
    log::info!("jwt refused: {}", failure.as_str());
    v.auth_error(failure)
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
        workspace: Some(Arc::from(workspace)),
        role,
        method: AuthMethod::Jwt,
        allowed_providers: None,
        allowed_models: None,
        virtual_key: None,
        subject: Some(Arc::from(c.subject.as_str())),
    })
}
