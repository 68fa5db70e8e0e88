//! Client JWT validation with the semantics of APIM's `validate-jwt` and
//! `validate-azure-ad-token` (WIRE.md §5): where the token is, asymmetric signature against the
//! validator's [`JwksCache`], `exp`/`nbf` with clock skew, issuers (with the Azure tenant's v1 and
//! v2 issuers), audiences, required claims, client application ids; then the workspace and role
//! claims the proxy turns into a `Caller`.
//!
//! The clock comes in as a parameter; claims are checked here rather than by `jsonwebtoken`, which
//! reads the system clock and cannot say which check failed. A [`JwtFailure`] names the check for
//! logs and metrics; callers answer with the validator's configured status and message only.
//! Neither ever carries the token. `token` reads and verifies the compact JWS, `claims` checks
//! what it says, `verified` remembers tokens already checked.

mod claims;
mod settings;
mod token;
mod verified;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::SystemTime;

use claims::ClaimRules;

use jsonwebtoken::Algorithm;
use serde_json::Value;

use super::jwks::{JwksCache, JwksError, Published, VerifyKey};
use super::AuthError;
pub use claims::{JwtFailure, ValidatedClaims};
pub use settings::{ClaimMatch, JwtSettings, RequiredClaim};
pub use token::unverified_issuer;
use token::{read_header, verify_signature};
use verified::VerifiedTokens;

/// Tokens longer than this are refused before any parsing.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;
/// A token without `kid` is tried against at most this many published keys whose type and
/// algorithm fit, as APIM's `validate-jwt` tries the keys it has; the bound keeps a forged token
/// from costing more than a few signature checks.
pub const MAX_KIDLESS_CANDIDATES: usize = 8;

/// One `[[auth.jwt]]` validator: settings plus its key cache. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct JwtValidator {
    settings: JwtSettings,
    jwks: Arc<JwksCache>,
    issuers: HashSet<String>,
    rules: ClaimRules,
    verified: VerifiedTokens,
}

impl JwtValidator {
    /// Builds the validator and its key cache. Remote key sets are empty until the first
    /// `jwks().refresh()` (or the first unknown-`kid` refetch).
    pub fn new(settings: JwtSettings) -> Result<JwtValidator, JwksError> {
        let jwks = Arc::new(Self::key_cache(&settings)?);
        Ok(Self::with_keys(settings, jwks))
    }

    /// The key cache `settings` need: what its identity provider publishes.
    pub fn key_cache(settings: &JwtSettings) -> Result<JwksCache, JwksError> {
        Ok(JwksCache::new(settings.source.clone())?
            .with_min_refetch_interval(settings.min_refetch_interval)
            .with_issuer_document(settings.issuer_document.clone()))
    }

    /// A validator over an existing key cache (kept warm across configuration reloads).
    pub fn with_keys(settings: JwtSettings, jwks: Arc<JwksCache>) -> JwtValidator {
        JwtValidator {
            issuers: settings.issuers.iter().cloned().collect(),
            rules: ClaimRules::new(&settings),
            jwks,
            settings,
            verified: VerifiedTokens::default(),
        }
    }

    pub fn settings(&self) -> &JwtSettings {
        &self.settings
    }

    /// The key cache, for the background refresher (every `settings().refresh_interval`).
    pub fn jwks(&self) -> &Arc<JwksCache> {
        &self.jwks
    }

    /// The token in this validator's header and scheme, if present.
    pub fn token_from<'a>(&self, headers: &'a http::HeaderMap) -> Option<&'a str> {
        let value = headers.get(&self.settings.header)?.to_str().ok()?.trim();
        let token = match &self.settings.scheme {
            None => value,
            Some(scheme) => {
                let (s, rest) = value.split_once(' ')?;
                if !s.eq_ignore_ascii_case(scheme) {
                    return None;
                }
                rest.trim()
            }
        };
        (!token.is_empty()).then_some(token)
    }

    /// The refusal to send for `failure`: the configured status and message.
    pub fn auth_error(&self, failure: &JwtFailure) -> AuthError {
        AuthError::Jwt {
            status: self.settings.failed_status,
            message: self.settings.failed_message.clone(),
            outcome: failure.outcome(),
        }
    }

    /// Validates `token` at time `now`. A token naming a `kid` the set lacks triggers at most
    /// one rate-limited refetch of the key set (see [`JwksCache::refetch_for_unknown_kid`]); a
    /// token without `kid` is tried against the published keys that fit its algorithm (at most
    /// [`MAX_KIDLESS_CANDIDATES`]), with the same refetch when none verifies it.
    pub async fn validate(
        &self,
        token: &str,
        now: SystemTime,
    ) -> Result<Arc<ValidatedClaims>, JwtFailure> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(JwtFailure::Malformed);
        }
        let digest = VerifiedTokens::digest(token);
        if let Some(hit) = self.verified.get(&digest) {
            let published = self.jwks.published();
            if published.keys.publishes(&hit.key) {
                self.rules.check_time(&hit.claims.claims, now)?;
                self.check_issuer(&hit.claims.claims, &published)?;
                return Ok(hit.claims.clone());
            }
        }
        let (alg, kid) = read_header(token)?;
        let (claims, key) = match self.verify(token, alg, kid.as_deref()).await {
            Err(JwtFailure::UnknownKid | JwtFailure::Signature) if kid.is_none() => {
                self.jwks.refetch_for_unknown_kid().await;
                self.verify(token, alg, None).await?
            }
            Err(JwtFailure::UnknownKid) => {
                self.jwks.refetch_for_unknown_kid().await;
                self.verify(token, alg, kid.as_deref()).await?
            }
            other => other?,
        };
        if !claims.is_object() {
            return Err(JwtFailure::Malformed);
        }
        self.rules.check_time(&claims, now)?;
        self.check_issuer(&claims, &self.jwks.published())?;
        self.rules.check_claims(&claims)?;
        let validated = Arc::new(self.rules.extract(claims));
        self.verified.insert(digest, key, validated.clone());
        Ok(validated)
    }

    /// Verifies the signature against the key the token names, or against the fitting keys
    /// when it names none; returns the claims and the verifying key's thumbprint.
    async fn verify(
        &self,
        token: &str,
        alg: Algorithm,
        kid: Option<&str>,
    ) -> Result<(Value, [u8; 32]), JwtFailure> {
        let published = self.jwks.published();
        let check = |key: &VerifyKey| -> Result<(Value, [u8; 32]), JwtFailure> {
            if !key.algs.contains(&alg) {
                return Err(JwtFailure::Algorithm);
            }
            verify_signature(token, &key.key, alg).map(|c| (c, key.thumbprint))
        };
        if let Some(kid) = kid {
            let key = published.keys.get(kid).ok_or(JwtFailure::UnknownKid)?;
            return check(key);
        }
        let mut failure = JwtFailure::UnknownKid;
        for key in published.keys.fitting(alg, MAX_KIDLESS_CANDIDATES) {
            match check(key) {
                Ok(found) => return Ok(found),
                Err(JwtFailure::Signature) => failure = JwtFailure::Signature,
                // Malformed (undecodable) tokens fail alike against every key.
                Err(other) => return Err(other),
            }
        }
        Err(failure)
    }

    /// Whether this validator accepts tokens of issuer `iss` (its configured issuers and those
    /// its tenant's discovery document names); a validator with neither accepts any.
    pub fn accepts_issuer(&self, iss: &str) -> bool {
        self.issuer_ok(Some(iss), &self.jwks.published())
    }

    fn issuer_ok(&self, iss: Option<&str>, published: &Published) -> bool {
        if self.issuers.is_empty() && self.settings.issuer_document.is_none() {
            return true;
        }
        iss.is_some_and(|i| self.issuers.contains(i) || published.issuers.iter().any(|p| p == i))
    }

    fn check_issuer(&self, claims: &Value, published: &Published) -> Result<(), JwtFailure> {
        let iss = claims.get("iss").and_then(Value::as_str);
        match self.issuer_ok(iss, published) {
            true => Ok(()),
            false => Err(JwtFailure::Issuer),
        }
    }
}
