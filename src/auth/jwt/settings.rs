//! What one `[[auth.jwt]]` entry asks of a token, as `config::jwt` validated it.

use std::time::Duration;

use crate::auth::jwks::JwksSource;

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
#[derive(Debug, Clone, PartialEq)]
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
