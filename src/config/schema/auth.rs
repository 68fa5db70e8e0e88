//! `[auth]`, `[[auth.jwt]]`, `[workspaces.<slug>]`, `[[api_keys]]` and `[virtual_keys.<id>]` as
//! the file may say them.

use serde::{Deserialize, Serialize};

use super::secrets::SecretMappingSection;

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// "open" (default) or "enforced".
    pub mode: Option<String>,
    /// JWT validators, tried in order; validated by `config::jwt::validate`.
    #[serde(default)]
    pub jwt: Vec<JwtSection>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceSection {
    /// Provider slugs (aliases accepted). Absent: every provider.
    pub allowed_providers: Option<Vec<String>>,
    /// Absent: every model.
    pub allowed_models: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeySection {
    /// Unique; shown in logs instead of the key.
    pub name: String,
    /// `sha256:<64 lowercase hex>`, as printed by `keyway keys new`.
    pub hash: String,
    /// Absent: an organisation-level key (it manages keyway through the admin API; requests
    /// upstream need a workspace key).
    pub workspace: Option<String>,
    /// "owner", "admin" or "member" (default).
    pub role: Option<String>,
    /// RFC 3339; the key is refused from this instant on.
    pub expires_at: Option<String>,
    #[serde(default)]
    pub revoked: bool,
    pub allowed_providers: Option<Vec<String>>,
    pub allowed_models: Option<Vec<String>>,
    /// A `[virtual_keys.<id>]` of the same workspace used when the request names none.
    pub virtual_key: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualKeySection {
    pub workspace: String,
    pub provider: String,
    /// Name of a `[credentials.*]` section; absent when `key` is mapped from a secret reference.
    pub credential: Option<String>,
    /// `key` from a secret reference (the reference must allow the key's workspace).
    #[serde(default)]
    pub secret_mappings: Vec<SecretMappingSection>,
    /// Azure defaults (azure-openai / azure-ai only).
    pub resource_name: Option<String>,
    pub deployment_id: Option<String>,
    pub api_version: Option<String>,
    pub allowed_models: Option<Vec<String>>,
}

/// One `[[auth.jwt]]` entry.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSection {
    /// Header carrying the token. Default `Authorization`.
    pub header: Option<String>,
    /// Scheme before the token; `""` for none. Default `Bearer` for `Authorization`, else none.
    pub scheme: Option<String>,
    /// OpenID discovery URL (its `jwks_uri` is used). One of openid_config, jwks_uri, keys;
    /// with `tenant_id` and none of them: `{authority}/{tenant_id}/v2.0/.well-known/openid-configuration`.
    pub openid_config: Option<String>,
    pub jwks_uri: Option<String>,
    /// Inline public JWKs.
    pub keys: Option<Vec<JwkSection>>,
    #[serde(default)]
    pub issuers: Vec<String>,
    #[serde(default)]
    pub audiences: Vec<String>,
    #[serde(default)]
    pub required_claims: Vec<RequiredClaimSection>,
    /// Default 300.
    pub clock_skew_seconds: Option<u64>,
    /// Default true.
    pub require_expiration_time: Option<bool>,
    /// Default 401.
    pub failed_validation_httpcode: Option<u16>,
    /// Default "JWT not present or invalid.".
    pub failed_validation_error_message: Option<String>,
    /// Entra tenant, GUID or domain: accepts the v1 and v2 issuers its discovery document names.
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub client_application_ids: Vec<String>,
    /// Default: only the fallback claim `workspace_slug`.
    pub workspace_claim: Option<String>,
    /// Default: only the fallback claim `scopes`.
    pub role_claim: Option<String>,
    /// Background JWKS refresh period. Default 300.
    pub refresh_interval_seconds: Option<u64>,
}

/// An inline JWK: public members only.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JwkSection {
    pub kty: String,
    pub kid: Option<String>,
    pub alg: Option<String>,
    #[serde(rename = "use")]
    pub use_: Option<String>,
    pub crv: Option<String>,
    pub n: Option<String>,
    pub e: Option<String>,
    pub x: Option<String>,
    pub y: Option<String>,
    pub x5c: Option<Vec<String>>,
    pub x5t: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RequiredClaimSection {
    pub name: String,
    /// "all" (default) or "any".
    #[serde(rename = "match")]
    pub match_: Option<String>,
    #[serde(default)]
    pub values: Vec<String>,
}
