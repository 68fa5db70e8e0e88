//! Client JWT validation with the semantics of APIM's `validate-jwt` and
//! `validate-azure-ad-token` (WIRE.md §5): where the token is, asymmetric signature against the
//! validator's [`JwksCache`], `exp`/`nbf` with clock skew, issuers (with the Azure tenant's v1 and
//! v2 issuers), audiences, required claims, client application ids; then the workspace and role
//! claims the proxy turns into a `Caller`.
//!
//! The clock comes in as a parameter; claims are checked here rather than by `jsonwebtoken`, which
//! reads the system clock and cannot say which check failed. A [`JwtFailure`] names the check for
//! logs and metrics; callers answer with the validator's configured status and message only.
//! Neither ever carries the token.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::Value;

use super::jwks::{asymmetric_alg, JwksCache, JwksError, JwksSource, Published, VerifyKey};
use super::verified::VerifiedTokens;
use super::{AuthError, Outcome};

/// Tokens longer than this are refused before any parsing.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;
/// The claim read for the workspace when `workspace_claim` is unset or absent from the token.
pub const FALLBACK_WORKSPACE_CLAIM: &str = "workspace_slug";
/// The claim read for the role when `role_claim` is unset or yields no role.
pub const FALLBACK_ROLE_CLAIM: &str = "scopes";
/// Roles recognised in the role claim, highest first: the first one present wins.
const ROLES: [&str; 3] = ["owner", "admin", "member"];
/// A token without `kid` is tried against at most this many published keys whose type and
/// algorithm fit, as APIM's `validate-jwt` tries the keys it has; the bound keeps a forged token
/// from costing more than a few signature checks.
pub const MAX_KIDLESS_CANDIDATES: usize = 8;

/// How a required claim's values must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimMatch {
    /// Every listed value must be present.
    All,
    /// At least one listed value must be present.
    Any,
}

/// A `required_claims` entry. With no values, the claim only has to be present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequiredClaim {
    pub name: String,
    pub match_: ClaimMatch,
    pub values: Vec<String>,
}

/// One validated `[[auth.jwt]]` entry (built by `config::jwt::validate`).
#[derive(Debug, Clone)]
pub struct JwtSettings {
    /// Header carrying the token. Default `authorization`.
    pub header: http::HeaderName,
    /// Scheme before the token (`Bearer`, compared case-insensitively); `None`: the whole value.
    pub scheme: Option<String>,
    pub source: JwksSource,
    /// Accepted `iss` values (exact match), including those derived from `tenant_id`. Empty
    /// (and no `issuer_document`): any.
    pub issuers: Vec<String>,
    /// An Entra tenant's v2 discovery document: its `issuer` and the same tenant's v1 issuer
    /// are accepted too, read at every JWKS refresh (a tenant given by domain name).
    pub issuer_document: Option<url::Url>,
    /// Accepted `aud` values; a token matches if any of its audiences is listed. Empty: any.
    pub audiences: Vec<String>,
    pub required_claims: Vec<RequiredClaim>,
    /// Allowance on `exp` and `nbf`. Default 300 s, as APIM.
    pub clock_skew: Duration,
    /// Refuse tokens without `exp`. Default true, as APIM.
    pub require_expiration_time: bool,
    /// Status of a refusal. Default 401.
    pub failed_status: u16,
    /// Body message of a refusal. Default "JWT not present or invalid.".
    pub failed_message: String,
    /// If non-empty, `azp` or `appid` must be one of these.
    pub client_application_ids: Vec<String>,
    /// Claim naming the workspace, tried before [`FALLBACK_WORKSPACE_CLAIM`].
    pub workspace_claim: Option<String>,
    /// Claim carrying the role (space-separated string or array), tried before
    /// [`FALLBACK_ROLE_CLAIM`].
    pub role_claim: Option<String>,
    /// Period of the background JWKS refresh. Default 300 s.
    pub refresh_interval: Duration,
    /// Minimum gap between unknown-`kid` refetches. Default 60 s; not in the config file.
    pub min_refetch_interval: Duration,
}

/// What a valid token says about its caller.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedClaims {
    /// `sub`, else `azp`/`appid`, else empty. For logs only.
    pub subject: String,
    /// From the workspace claim, if it holds a slug (`[A-Za-z0-9_-]{1,64}`).
    pub workspace: Option<String>,
    /// "owner", "admin" or "member" if the role claim holds one; the caller defaults it.
    pub role: Option<String>,
    /// Every claim of the token.
    pub claims: Value,
}

/// Which check refused a token. `as_str()` is a low-cardinality label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtFailure {
    #[error("token is not a well-formed JWT")]
    Malformed,
    #[error("token algorithm is refused (none, HMAC, unknown, or not the key's algorithm)")]
    Algorithm,
    /// The token's `kid` is not published (after a refetch), or, without `kid`, no published
    /// key fits its algorithm.
    #[error("no published key matches the token's kid or algorithm (after a refetch)")]
    UnknownKid,
    #[error("token signature does not verify")]
    Signature,
    #[error("token has no exp and require_expiration_time is set")]
    MissingExpiration,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet (nbf)")]
    NotYetValid,
    #[error("token issuer is not accepted")]
    Issuer,
    #[error("token audience is not accepted")]
    Audience,
    #[error("required claim '{0}' is missing or lacks the required values")]
    RequiredClaim(String),
    #[error("token azp/appid is not an accepted client application")]
    ClientApplication,
}

impl JwtFailure {
    pub fn as_str(&self) -> &'static str {
        match self {
            JwtFailure::Malformed => "malformed",
            JwtFailure::Algorithm => "algorithm",
            JwtFailure::UnknownKid => "unknown_kid",
            JwtFailure::Signature => "signature",
            JwtFailure::MissingExpiration => "missing_exp",
            JwtFailure::Expired => "expired",
            JwtFailure::NotYetValid => "not_yet_valid",
            JwtFailure::Issuer => "issuer",
            JwtFailure::Audience => "audience",
            JwtFailure::RequiredClaim(_) => "required_claim",
            JwtFailure::ClientApplication => "client_application",
        }
    }

    /// How far validation got before this failure: among several validators, the refusal that
    /// got furthest (signature verified, then a claim refused) is the one the caller sees.
    pub fn depth(&self) -> u8 {
        match self {
            JwtFailure::Malformed => 0,
            JwtFailure::Algorithm => 1,
            JwtFailure::UnknownKid => 2,
            JwtFailure::Signature => 3,
            JwtFailure::MissingExpiration | JwtFailure::Expired | JwtFailure::NotYetValid => 4,
            JwtFailure::Issuer => 5,
            JwtFailure::Audience => 6,
            JwtFailure::RequiredClaim(_) => 7,
            JwtFailure::ClientApplication => 8,
        }
    }

    /// `Expired` for an expired token, `Invalid` for everything else.
    pub fn outcome(&self) -> Outcome {
        match self {
            JwtFailure::Expired => Outcome::Expired,
            _ => Outcome::Invalid,
        }
    }
}

/// One `[[auth.jwt]]` validator: settings plus its key cache. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct JwtValidator {
    settings: JwtSettings,
    jwks: Arc<JwksCache>,
    issuers: HashSet<String>,
    audiences: HashSet<String>,
    clients: HashSet<String>,
    verified: VerifiedTokens,
}

impl JwtValidator {
    /// Builds the validator and its key cache. Remote key sets are empty until the first
    /// `jwks().refresh()` (or the first unknown-`kid` refetch).
    pub fn new(settings: JwtSettings) -> Result<JwtValidator, JwksError> {
        let jwks = JwksCache::new(settings.source.clone())?
            .with_min_refetch_interval(settings.min_refetch_interval)
            .with_issuer_document(settings.issuer_document.clone());
        Ok(JwtValidator {
            issuers: settings.issuers.iter().cloned().collect(),
            audiences: settings.audiences.iter().cloned().collect(),
            clients: settings.client_application_ids.iter().cloned().collect(),
            jwks: Arc::new(jwks),
            settings,
            verified: VerifiedTokens::default(),
        })
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
                self.check_time(&hit.claims.claims, now)?;
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
        self.check_time(&claims, now)?;
        self.check_issuer(&claims, &self.jwks.published())?;
        self.check_claims(&claims)?;
        let validated = Arc::new(self.extract(claims));
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

    fn check_time(&self, claims: &Value, now: SystemTime) -> Result<(), JwtFailure> {
        let now = now
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let skew = self.settings.clock_skew.as_secs_f64();
        match numeric_date(claims, "exp")? {
            None if self.settings.require_expiration_time => {
                return Err(JwtFailure::MissingExpiration)
            }
            Some(exp) if now >= exp + skew => return Err(JwtFailure::Expired),
            _ => {}
        }
        match numeric_date(claims, "nbf")? {
            Some(nbf) if now + skew < nbf => Err(JwtFailure::NotYetValid),
            _ => Ok(()),
        }
    }

    fn check_claims(&self, claims: &Value) -> Result<(), JwtFailure> {
        if !self.audiences.is_empty() {
            let ok = match claims.get("aud") {
                Some(Value::String(a)) => self.audiences.contains(a),
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .any(|a| self.audiences.contains(a)),
                _ => false,
            };
            if !ok {
                return Err(JwtFailure::Audience);
            }
        }
        for rc in &self.settings.required_claims {
            if !required_claim_holds(claims, rc) {
                return Err(JwtFailure::RequiredClaim(rc.name.clone()));
            }
        }
        if !self.clients.is_empty() {
            let ok = ["azp", "appid"].iter().any(|c| {
                claims
                    .get(*c)
                    .and_then(Value::as_str)
                    .is_some_and(|id| self.clients.contains(id))
            });
            if !ok {
                return Err(JwtFailure::ClientApplication);
            }
        }
        Ok(())
    }

    fn extract(&self, claims: Value) -> ValidatedClaims {
        let s = &self.settings;
        let str_claim = |name: &str| claims.get(name).and_then(Value::as_str);
        let subject = ["sub", "azp", "appid"]
            .iter()
            .find_map(|c| str_claim(c))
            .unwrap_or_default()
            .to_owned();
        let workspace = s
            .workspace_claim
            .iter()
            .map(String::as_str)
            .chain([FALLBACK_WORKSPACE_CLAIM])
            .find_map(|c| str_claim(c).filter(|v| is_slug(v)))
            .map(str::to_owned);
        let role = s
            .role_claim
            .iter()
            .map(String::as_str)
            .chain([FALLBACK_ROLE_CLAIM])
            .find_map(|c| claims.get(c).and_then(role_in))
            .map(str::to_owned);
        ValidatedClaims {
            subject,
            workspace,
            role,
            claims,
        }
    }
}

/// `alg` and `kid` (if any) from the protected header. Only asymmetric algorithms pass; a header
/// with `crit` is refused, since no critical extension is understood here (RFC 7515 §4.1.11).
fn read_header(token: &str) -> Result<(Algorithm, Option<String>), JwtFailure> {
    #[derive(serde::Deserialize)]
    struct Header {
        alg: Option<String>,
        kid: Option<String>,
        crit: Option<Value>,
    }
    let mut parts = token.split('.');
    let (Some(h), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtFailure::Malformed);
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(h)
        .map_err(|_| JwtFailure::Malformed)?;
    let header: Header = serde_json::from_slice(&bytes).map_err(|_| JwtFailure::Malformed)?;
    if header.crit.is_some() {
        return Err(JwtFailure::Malformed);
    }
    let alg = header
        .alg
        .as_deref()
        .and_then(asymmetric_alg)
        .ok_or(JwtFailure::Algorithm)?;
    Ok((alg, header.kid.filter(|k| !k.is_empty())))
}

/// The `iss` a token claims, read without verifying anything: only to choose which validator
/// checks it. `None` for anything unreadable.
pub fn unverified_issuer(token: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Claims {
        iss: Option<String>,
    }
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice::<Claims>(&bytes).ok()?.iss
}

/// Verifies the signature with `alg` and returns the claims; no claim is checked here.
fn verify_signature(
    token: &str,
    key: &jsonwebtoken::DecodingKey,
    alg: Algorithm,
) -> Result<Value, JwtFailure> {
    use jsonwebtoken::errors::ErrorKind;
    let mut v = Validation::new(alg);
    v.required_spec_claims.clear();
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.leeway = 0;
    match jsonwebtoken::decode::<Value>(token, key, &v) {
        Ok(data) => Ok(data.claims),
        Err(e) => Err(match e.kind() {
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => JwtFailure::Algorithm,
            ErrorKind::InvalidToken
            | ErrorKind::Base64(_)
            | ErrorKind::Json(_)
            | ErrorKind::Utf8(_) => JwtFailure::Malformed,
            _ => JwtFailure::Signature,
        }),
    }
}

/// A NumericDate claim (RFC 7519 §2): absent → `None`; present but not a number → malformed.
fn numeric_date(claims: &Value, name: &str) -> Result<Option<f64>, JwtFailure> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or(JwtFailure::Malformed),
    }
}

/// The words a claim holds: a string and its space-separated parts, each string of an array
/// and its parts, numbers and booleans as JSON text.
fn claim_words(v: &Value) -> HashSet<String> {
    fn add(out: &mut HashSet<String>, v: &Value) {
        match v {
            Value::String(s) => {
                out.insert(s.clone());
                out.extend(s.split_whitespace().map(str::to_owned));
            }
            Value::Number(_) | Value::Bool(_) => {
                out.insert(v.to_string());
            }
            _ => {}
        }
    }
    let mut out = HashSet::new();
    match v {
        Value::Array(items) => items.iter().for_each(|i| add(&mut out, i)),
        other => add(&mut out, other),
    }
    out
}

fn required_claim_holds(claims: &Value, rc: &RequiredClaim) -> bool {
    let Some(v) = claims.get(&rc.name).filter(|v| !v.is_null()) else {
        return false;
    };
    if rc.values.is_empty() {
        return true;
    }
    let words = claim_words(v);
    match rc.match_ {
        ClaimMatch::All => rc.values.iter().all(|x| words.contains(x)),
        ClaimMatch::Any => rc.values.iter().any(|x| words.contains(x)),
    }
}

/// The highest role named in a scope-like claim, compared case-insensitively.
fn role_in(v: &Value) -> Option<&'static str> {
    let words = claim_words(v);
    ROLES
        .into_iter()
        .find(|r| words.iter().any(|w| w.eq_ignore_ascii_case(r)))
}

fn is_slug(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rc(name: &str, m: ClaimMatch, values: &[&str]) -> RequiredClaim {
        RequiredClaim {
            name: name.into(),
            match_: m,
            values: values.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn required_claims_match_strings_words_and_arrays() {
        let c = json!({"roles": ["a", "b"], "scp": "read write", "n": 3, "nul": null});
        assert!(required_claim_holds(
            &c,
            &rc("roles", ClaimMatch::All, &["a", "b"])
        ));
        assert!(!required_claim_holds(
            &c,
            &rc("roles", ClaimMatch::All, &["a", "c"])
        ));
        assert!(required_claim_holds(
            &c,
            &rc("roles", ClaimMatch::Any, &["c", "b"])
        ));
        assert!(required_claim_holds(
            &c,
            &rc("scp", ClaimMatch::All, &["write", "read"])
        ));
        assert!(required_claim_holds(
            &c,
            &rc("scp", ClaimMatch::Any, &["read write"])
        ));
        assert!(required_claim_holds(&c, &rc("n", ClaimMatch::All, &["3"])));
        assert!(required_claim_holds(&c, &rc("scp", ClaimMatch::All, &[])));
        assert!(!required_claim_holds(&c, &rc("nul", ClaimMatch::All, &[])));
        assert!(!required_claim_holds(
            &c,
            &rc("missing", ClaimMatch::Any, &[])
        ));
    }

    #[test]
    fn role_is_the_highest_named() {
        assert_eq!(role_in(&json!("read Member admin")), Some("admin"));
        assert_eq!(role_in(&json!(["member", "owner"])), Some("owner"));
        assert_eq!(role_in(&json!("read write")), None);
        assert_eq!(role_in(&json!(7)), None);
    }

    #[test]
    fn headers_refuse_none_hmac_and_crit_and_allow_no_kid() {
        let tok = |h: Value| format!("{}.e30.sig", URL_SAFE_NO_PAD.encode(h.to_string()));
        assert_eq!(
            read_header(&tok(json!({"alg":"RS256","kid":"k"}))),
            Ok((Algorithm::RS256, Some("k".into())))
        );
        for h in [
            json!({"alg":"none","kid":"k"}),
            json!({"alg":"HS256","kid":"k"}),
            json!({"kid":"k"}),
        ] {
            assert_eq!(read_header(&tok(h)), Err(JwtFailure::Algorithm));
        }
        assert_eq!(
            read_header(&tok(json!({"alg":"ES256"}))),
            Ok((Algorithm::ES256, None))
        );
        assert_eq!(
            read_header(&tok(json!({"alg":"ES256","kid":""}))),
            Ok((Algorithm::ES256, None))
        );
        assert_eq!(
            read_header(&tok(json!({"alg":"ES256","kid":"k","crit":["exp"]}))),
            Err(JwtFailure::Malformed)
        );
        assert_eq!(read_header("a.b"), Err(JwtFailure::Malformed));
        assert_eq!(read_header("!!.b.c"), Err(JwtFailure::Malformed));
    }

    #[test]
    fn unverified_issuer_reads_the_payload_only() {
        let tok = |c: Value| format!("e30.{}.sig", URL_SAFE_NO_PAD.encode(c.to_string()));
        assert_eq!(
            unverified_issuer(&tok(json!({"iss":"https://a/"}))).as_deref(),
            Some("https://a/")
        );
        assert_eq!(unverified_issuer(&tok(json!({"iss":7}))), None);
        assert_eq!(unverified_issuer("a.!!.c"), None);
        assert_eq!(unverified_issuer("abc"), None);
    }

    #[test]
    fn later_checks_are_more_specific() {
        let order = [
            JwtFailure::Malformed,
            JwtFailure::Algorithm,
            JwtFailure::UnknownKid,
            JwtFailure::Signature,
            JwtFailure::Expired,
            JwtFailure::Issuer,
            JwtFailure::Audience,
            JwtFailure::RequiredClaim("r".into()),
            JwtFailure::ClientApplication,
        ];
        assert!(order.windows(2).all(|w| w[0].depth() < w[1].depth()));
    }

    #[test]
    fn slugs() {
        assert!(is_slug("team-a_1"));
        assert!(!is_slug(""));
        assert!(!is_slug("a b"));
        assert!(!is_slug(&"a".repeat(65)));
    }
}
