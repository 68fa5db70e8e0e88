//! What an `auth_config` may say for each manager, and its masked view (seed 003's
//! "Sensitive Field Masking"): the only way a reference is ever shown.

use super::SENSITIVE_FIELDS;
use crate::config::schema::secrets::{AuthConfigSection, SecretReferenceSection};
use crate::config::{invalid, ConfigError};
use crate::credentials::secrets::ManagerType;
use crate::env::Env;

use super::mask;

/// The `auth_config` fields each manager takes (`_env` variants count as their field).
pub(super) fn fields_of(m: ManagerType) -> &'static [&'static str] {
    match m {
        ManagerType::AwsSm => &[
            "aws_auth_type",
            "aws_access_key_id",
            "aws_secret_access_key",
            "aws_region",
            "aws_role_arn",
            "aws_external_id",
        ],
        ManagerType::AzureKv => &[
            "azure_vault_url",
            "azure_auth_mode",
            "azure_entra_tenant_id",
            "azure_entra_client_id",
            "azure_entra_client_secret",
            "azure_managed_client_id",
            "azure_workload_client_id",
        ],
        ManagerType::HashicorpVault => &[
            "vault_addr",
            "vault_token",
            "vault_role_id",
            "vault_secret_id",
            "vault_namespace",
            "vault_mount",
            "vault_kv_version",
            "vault_approle_mount",
        ],
    }
}

/// The fields given, by name, with their plain values (`None` for secrets read from the
/// environment and for numbers).
pub(super) type Given<'a> = (&'static str, Option<&'a str>, bool);

pub(super) fn given(a: &AuthConfigSection) -> Vec<Given<'_>> {
    fn s<'a>(n: &'static str, v: &'a Option<String>) -> Option<Given<'a>> {
        v.as_ref().map(|v| (n, Some(v.as_str()), false))
    }
    fn e<'a>(n: &'static str, v: &'a Option<String>) -> Option<Given<'a>> {
        v.as_ref().map(|_| (n, None, true))
    }
    [
        s("aws_auth_type", &a.aws_auth_type),
        s("aws_access_key_id", &a.aws_access_key_id),
        e("aws_access_key_id", &a.aws_access_key_id_env),
        s("aws_secret_access_key", &a.aws_secret_access_key),
        e("aws_secret_access_key", &a.aws_secret_access_key_env),
        s("aws_region", &a.aws_region),
        s("aws_role_arn", &a.aws_role_arn),
        e("aws_role_arn", &a.aws_role_arn_env),
        s("aws_external_id", &a.aws_external_id),
        e("aws_external_id", &a.aws_external_id_env),
        s("azure_vault_url", &a.azure_vault_url),
        s("azure_auth_mode", &a.azure_auth_mode),
        s("azure_entra_tenant_id", &a.azure_entra_tenant_id),
        s("azure_entra_client_id", &a.azure_entra_client_id),
        s("azure_entra_client_secret", &a.azure_entra_client_secret),
        e(
            "azure_entra_client_secret",
            &a.azure_entra_client_secret_env,
        ),
        s("azure_managed_client_id", &a.azure_managed_client_id),
        s("azure_workload_client_id", &a.azure_workload_client_id),
        s("vault_addr", &a.vault_addr),
        s("vault_token", &a.vault_token),
        e("vault_token", &a.vault_token_env),
        s("vault_role_id", &a.vault_role_id),
        s("vault_secret_id", &a.vault_secret_id),
        e("vault_secret_id", &a.vault_secret_id_env),
        s("vault_namespace", &a.vault_namespace),
        a.vault_kv_version
            .map(|_| ("vault_kv_version", None, false)),
        s("vault_mount", &a.vault_mount),
        s("vault_approle_mount", &a.vault_approle_mount),
    ]
    .into_iter()
    .flatten()
    .collect()
}

pub(super) fn check_fields(
    path: &str,
    m: ManagerType,
    a: &AuthConfigSection,
) -> Result<(), ConfigError> {
    for (field, _, _) in given(a) {
        if !fields_of(m).contains(&field) {
            return Err(invalid(
                format!("{path}.{field}"),
                format!("is not an auth_config field of manager_type {m}"),
            ));
        }
    }
    Ok(())
}

/// The masked view of a reference (seed 003's "Sensitive Field Masking").
pub(super) fn shown(
    slug: &str,
    manager: ManagerType,
    env: &Env,
    r: &SecretReferenceSection,
) -> serde_json::Value {
    let a = &r.auth_config;
    let mut auth = serde_json::Map::new();
    for (field, value, from_env) in given(a) {
        let value = match (value, from_env) {
            (Some(v), _) => Some(v.to_owned()),
            (None, true) => env_value(a, field, env),
            (None, false) => None,
        };
        if SENSITIVE_FIELDS.contains(&field) {
            let v = value.as_deref().map_or_else(|| "****".to_owned(), mask);
            auth.insert(format!("masked_{field}"), v.into());
        } else if field == "vault_kv_version" {
            auth.insert(field.into(), a.vault_kv_version.into());
        } else {
            auth.insert(field.into(), value.into());
        }
    }
    serde_json::json!({
        "name": r.name,
        "slug": slug,
        "description": r.description,
        "manager_type": manager.as_str(),
        "auth_config": auth,
        "secret_path": r.secret_path,
        "secret_key": r.secret_key,
        "allow_all_workspaces": r.allowed_workspaces.is_none(),
        "allowed_workspaces": r.allowed_workspaces.clone().unwrap_or_default(),
        "tags": r.tags,
    })
}

pub(super) fn env_value(a: &AuthConfigSection, field: &str, env: &Env) -> Option<String> {
    let var = match field {
        "aws_access_key_id" => &a.aws_access_key_id_env,
        "aws_secret_access_key" => &a.aws_secret_access_key_env,
        "aws_role_arn" => &a.aws_role_arn_env,
        "aws_external_id" => &a.aws_external_id_env,
        "azure_entra_client_secret" => &a.azure_entra_client_secret_env,
        "vault_token" => &a.vault_token_env,
        "vault_secret_id" => &a.vault_secret_id_env,
        _ => return None,
    };
    var.as_deref().and_then(|v| env.get(v)).map(str::to_owned)
}
