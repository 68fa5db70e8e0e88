//! `[secrets]`, `[[secret_references]]` (seed 003) and the `secret_mappings` entries of
//! credentials, providers and virtual keys, as the file may say them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsSection {
    /// How long a fetched value is used before it is fetched again. Default 300.
    pub ttl_seconds: Option<u64>,
    /// How long past its TTL a value keeps serving while its manager fails. Default 3600.
    pub max_stale_seconds: Option<u64>,
    /// Fetch every mapped secret at start-up and hold `/readyz` until they are in. Default true.
    pub prefetch: Option<bool>,
    /// Bound on one fetch, login included. Default 10000.
    pub fetch_timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecretReferenceSection {
    pub name: String,
    pub slug: Option<String>,
    pub description: Option<String>,
    pub manager_type: String,
    pub auth_config: AuthConfigSection,
    pub secret_path: String,
    pub secret_key: Option<String>,
    pub allow_all_workspaces: Option<bool>,
    pub allowed_workspaces: Option<Vec<String>>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// Every `auth_config` field of every manager; `validate` refuses the ones that do not belong
/// to the reference's manager. Sensitive fields also take `<field>_env`.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfigSection {
    pub aws_auth_type: Option<String>,
    pub aws_access_key_id: Option<String>,
    pub aws_access_key_id_env: Option<String>,
    pub aws_secret_access_key: Option<String>,
    pub aws_secret_access_key_env: Option<String>,
    pub aws_region: Option<String>,
    pub aws_role_arn: Option<String>,
    pub aws_role_arn_env: Option<String>,
    pub aws_external_id: Option<String>,
    pub aws_external_id_env: Option<String>,
    pub azure_vault_url: Option<String>,
    pub azure_auth_mode: Option<String>,
    pub azure_entra_tenant_id: Option<String>,
    pub azure_entra_client_id: Option<String>,
    pub azure_entra_client_secret: Option<String>,
    pub azure_entra_client_secret_env: Option<String>,
    pub azure_managed_client_id: Option<String>,
    pub azure_workload_client_id: Option<String>,
    pub vault_addr: Option<String>,
    pub vault_token: Option<String>,
    pub vault_token_env: Option<String>,
    pub vault_role_id: Option<String>,
    pub vault_secret_id: Option<String>,
    pub vault_secret_id_env: Option<String>,
    pub vault_namespace: Option<String>,
    pub vault_mount: Option<String>,
    pub vault_kv_version: Option<u8>,
    pub vault_approle_mount: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecretMappingSection {
    /// `key`, `configurations.<field>` or `model_config.<field>`; the entity's prefix is added
    /// when omitted.
    pub target_field: String,
    /// The reference's slug.
    pub secret_reference_id: String,
    /// Overrides the reference's `secret_key`.
    pub secret_key: Option<String>,
}
