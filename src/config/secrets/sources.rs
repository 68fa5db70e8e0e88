//! An `auth_config` turned into the typed source of its manager: AWS keys or roles, a Key
//! Vault reader's Entra credential, a Vault token or AppRole. Every error names the field.

use url::Url;

use super::SourceConfig;
use crate::config::identity::{ClientSecretConfig, Identity, TokenCredential};
use crate::config::schema::secrets::AuthConfigSection;
use crate::config::{invalid, secret_from, ConfigError};
use crate::credentials::secrets::aws::{AwsAuth, AwsSettings};
use crate::credentials::secrets::vault::{VaultAuth, VaultSettings};
use crate::env::Env;
use crate::secret::Secret;

pub(super) fn need(
    path: &str,
    field: &str,
    v: Option<String>,
    why: &str,
) -> Result<String, ConfigError> {
    v.filter(|s| !s.trim().is_empty())
        .ok_or_else(|| invalid(format!("{path}.{field}"), format!("is required {why}")))
}

pub(super) fn need_secret(
    path: &str,
    field: &str,
    v: Option<Secret>,
    why: &str,
) -> Result<Secret, ConfigError> {
    v.ok_or_else(|| {
        invalid(
            format!("{path}.{field}"),
            format!("is required {why} (or {field}_env)"),
        )
    })
}

pub(super) fn http_url(path: &str, v: Option<String>) -> Result<String, ConfigError> {
    let u = v.ok_or_else(|| invalid(path, "is required"))?;
    match Url::parse(&u) {
        Ok(p) if matches!(p.scheme(), "http" | "https") && p.host().is_some() => {
            Ok(u.trim_end_matches('/').to_owned())
        }
        _ => Err(invalid(path, format!("'{u}' must be an http(s) URL"))),
    }
}

pub(super) fn aws_source(
    path: &str,
    a: AuthConfigSection,
    identity: &Identity,
    env: &Env,
) -> Result<SourceConfig, ConfigError> {
    let kind = need(path, "aws_auth_type", a.aws_auth_type, "for aws_sm")?;
    let sec = |f: &str, v: Option<String>, e: Option<String>| {
        secret_from(&format!("{path}.{f}"), v, e, env)
    };
    let why = format!("for aws_auth_type {kind}");
    let auth = match kind.as_str() {
        "accessKey" => AwsAuth::AccessKey {
            access_key_id: need_secret(
                path,
                "aws_access_key_id",
                sec(
                    "aws_access_key_id",
                    a.aws_access_key_id,
                    a.aws_access_key_id_env,
                )?,
                &why,
            )?,
            secret_access_key: need_secret(
                path,
                "aws_secret_access_key",
                sec(
                    "aws_secret_access_key",
                    a.aws_secret_access_key,
                    a.aws_secret_access_key_env,
                )?,
                &why,
            )?,
        },
        "assumedRole" => AwsAuth::AssumedRole {
            role_arn: need_secret(
                path,
                "aws_role_arn",
                sec("aws_role_arn", a.aws_role_arn, a.aws_role_arn_env)?,
                &why,
            )?,
            external_id: sec("aws_external_id", a.aws_external_id, a.aws_external_id_env)?,
        },
        "serviceRole" => AwsAuth::ServiceRole,
        other => {
            return Err(invalid(
                format!("{path}.aws_auth_type"),
                format!(
                    "unknown aws_auth_type '{other}' (known: accessKey, assumedRole, serviceRole)"
                ),
            ))
        }
    };
    let region = match auth {
        AwsAuth::ServiceRole => a.aws_region.or_else(|| identity.aws_region.clone()),
        _ => Some(need(path, "aws_region", a.aws_region, &why)?),
    };
    Ok(SourceConfig::Aws(AwsSettings {
        auth,
        region,
        endpoint: identity.secretsmanager_endpoint.clone(),
        sts_endpoint: identity.sts_endpoint.clone(),
    }))
}

pub(super) fn kv_credential(
    path: &str,
    a: AuthConfigSection,
    identity: &Identity,
    env: &Env,
) -> Result<TokenCredential, ConfigError> {
    let scope = Some(crate::credentials::KEY_VAULT_SCOPE.to_owned());
    let mode = a.azure_auth_mode.as_deref().unwrap_or("entra");
    let why = format!("for azure_auth_mode {mode}");
    let w = &identity.workload;
    Ok(match mode {
        "entra" => TokenCredential::Entra {
            tenant: need(path, "azure_entra_tenant_id", a.azure_entra_tenant_id, &why)?,
            client_id: need(path, "azure_entra_client_id", a.azure_entra_client_id, &why)?,
            secret: ClientSecretConfig::Inline(need_secret(
                path,
                "azure_entra_client_secret",
                secret_from(
                    &format!("{path}.azure_entra_client_secret"),
                    a.azure_entra_client_secret,
                    a.azure_entra_client_secret_env,
                    env,
                )?,
                &why,
            )?),
            scope,
        },
        "managed" => TokenCredential::Managed {
            client_id: a.azure_managed_client_id,
            scope,
        },
        "workload" => TokenCredential::Workload {
            tenant: a
                .azure_entra_tenant_id
                .or_else(|| w.tenant.clone())
                .ok_or_else(|| {
                    invalid(
                        format!("{path}.azure_entra_tenant_id"),
                        "workload identity: AZURE_TENANT_ID is not set; set it or give azure_entra_tenant_id",
                    )
                })?,
            client_id: a
                .azure_workload_client_id
                .or_else(|| w.client_id.clone())
                .ok_or_else(|| {
                    invalid(
                        format!("{path}.azure_workload_client_id"),
                        "workload identity: AZURE_CLIENT_ID is not set; set it or give azure_workload_client_id",
                    )
                })?,
            token_file: w.token_file.clone().ok_or_else(|| {
                invalid(
                    format!("{path}.azure_auth_mode"),
                    "workload identity: AZURE_FEDERATED_TOKEN_FILE is not set",
                )
            })?,
            scope,
        },
        other => {
            return Err(invalid(
                format!("{path}.azure_auth_mode"),
                format!("unknown azure_auth_mode '{other}' (known: entra, managed, workload)"),
            ))
        }
    })
}

pub(super) fn vault_source(
    path: &str,
    a: AuthConfigSection,
    env: &Env,
) -> Result<SourceConfig, ConfigError> {
    let addr = http_url(&format!("{path}.vault_addr"), a.vault_addr)?;
    let token = secret_from(
        &format!("{path}.vault_token"),
        a.vault_token,
        a.vault_token_env,
        env,
    )?;
    let secret_id = secret_from(
        &format!("{path}.vault_secret_id"),
        a.vault_secret_id,
        a.vault_secret_id_env,
        env,
    )?;
    let auth =
        match (token, a.vault_role_id, secret_id) {
            (Some(t), None, None) => VaultAuth::Token(t),
            (None, Some(role_id), Some(secret_id)) if !role_id.is_empty() => VaultAuth::AppRole {
                role_id,
                secret_id,
                mount: a.vault_approle_mount.unwrap_or_else(|| "approle".into()),
            },
            (Some(_), _, _) => {
                return Err(invalid(
                    format!("{path}.vault_token"),
                    "give vault_token or vault_role_id + vault_secret_id (AppRole), not both",
                ))
            }
            _ => return Err(invalid(
                path,
                "hashicorp_vault needs vault_token, or vault_role_id and vault_secret_id (AppRole)",
            )),
        };
    let kv_version = a.vault_kv_version.unwrap_or(2);
    if !matches!(kv_version, 1 | 2) {
        return Err(invalid(
            format!("{path}.vault_kv_version"),
            "must be 1 or 2",
        ));
    }
    Ok(SourceConfig::Vault(VaultSettings {
        addr: Url::parse(&addr)
            .map_err(|e| invalid(format!("{path}.vault_addr"), e.to_string()))?,
        auth,
        namespace: a.vault_namespace.filter(|n| !n.is_empty()),
        mount: a
            .vault_mount
            .map(|m| m.trim_matches('/').to_owned())
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| "secret".into()),
        kv_version,
    }))
}
