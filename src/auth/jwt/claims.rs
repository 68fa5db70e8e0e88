//! What a token says and whether it may: time (`exp`, `nbf` with skew), audience, required
//! claims and client application; then the workspace and role a valid token names. Pure
//! functions of the claims and the validator's settings.

use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::settings::{ClaimMatch, JwtSettings, RequiredClaim};
use crate::auth::Outcome;

/// The claim read for the workspace when `workspace_claim` is unset or absent from the token.
pub const FALLBACK_WORKSPACE_CLAIM: &str = "workspace_slug";
/// The claim read for the role when `role_claim` is unset or yields no role.
pub const FALLBACK_ROLE_CLAIM: &str = "scopes";
/// Roles recognised in the role claim, highest first: the first one present wins.
const ROLES: [&str; 3] = ["owner", "admin", "member"];

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

/// The claim checks of one validator, with its lists as sets.
#[derive(Debug)]
pub(super) struct ClaimRules {
    settings: JwtSettings,
    audiences: HashSet<String>,
    clients: HashSet<String>,
}

impl ClaimRules {
    pub(super) fn new(settings: &JwtSettings) -> ClaimRules {
        ClaimRules {
            audiences: settings.audiences.iter().cloned().collect(),
            clients: settings.client_application_ids.iter().cloned().collect(),
            settings: settings.clone(),
        }
    }

    /// `exp` (required unless configured otherwise) and `nbf`, with the clock skew.
    pub(super) fn check_time(&self, claims: &Value, now: SystemTime) -> Result<(), JwtFailure> {
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

    /// Audience, required claims, client application (the issuer is the validator's).
    pub(super) fn check_claims(&self, claims: &Value) -> Result<(), JwtFailure> {
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

    /// The subject, workspace and role a valid token names.
    pub(super) fn extract(&self, claims: Value) -> ValidatedClaims {
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
