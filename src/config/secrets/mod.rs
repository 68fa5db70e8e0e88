//! Secret references (seed 003) in the config file: `[secrets]` (cache policy) and
//! `[[secret_references]]`, strictly parsed and validated into `SecretReference`s whose
//! `auth_config` is already typed for its manager. Every error names the reference
//! (`secret_references[i] (slug)`) and the field. `shown` is the masked view that logs,
//! `--check-config` and errors use; nothing else prints a reference.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use super::identity::{ClientSecretConfig, Identity, TokenCredential};
use super::{invalid, secret_from, ConfigError};
use crate::credentials::secrets::aws::{AwsAuth, AwsSettings};
use crate::credentials::secrets::vault::{VaultAuth, VaultSettings};
use crate::credentials::secrets::ManagerType;
use crate::env::Env;
use crate::secret::Secret;

#[derive(Debug, Default, Deserialize)]
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

#[derive(Debug, Deserialize)]
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
#[derive(Debug, Default, Deserialize)]
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

/// The `auth_config` fields seed 003 masks as `masked_<field>`.
pub const SENSITIVE_FIELDS: [&str; 7] = [
    "aws_secret_access_key",
    "aws_access_key_id",
    "aws_role_arn",
    "aws_external_id",
    "azure_entra_client_secret",
    "vault_token",
    "vault_secret_id",
];

/// Where a reference's value comes from, typed per manager.
#[derive(Debug, Clone)]
pub enum SourceConfig {
    Aws(AwsSettings),
    KeyVault {
        vault_url: String,
        credential: TokenCredential,
    },
    Vault(VaultSettings),
}

#[derive(Debug, Clone)]
pub struct SecretReference {
    pub name: String,
    pub slug: Arc<str>,
    pub manager: ManagerType,
    pub source: SourceConfig,
    pub path: String,
    pub key: Option<String>,
    /// `None`: every workspace may use it.
    pub allowed_workspaces: Option<Arc<[Arc<str>]>>,
    /// The reference as it may be shown: sensitive `auth_config` fields masked.
    pub shown: serde_json::Value,
}

impl SecretReference {
    pub fn allows(&self, workspace: &str) -> bool {
        self.allowed_workspaces
            .as_ref()
            .is_none_or(|l| l.iter().any(|w| &**w == workspace))
    }
}

/// Validated `[secrets]` and `[[secret_references]]`.
#[derive(Debug, Clone)]
pub struct SecretsSettings {
    pub ttl: Duration,
    pub max_stale: Duration,
    pub prefetch: bool,
    pub fetch_timeout: Duration,
    pub references: Vec<SecretReference>,
}

impl SecretsSettings {
    /// No references, default policy.
    pub fn empty() -> Self {
        SecretsSettings {
            ttl: Duration::from_secs(300),
            max_stale: Duration::from_secs(3600),
            prefetch: true,
            fetch_timeout: Duration::from_secs(10),
            references: Vec::new(),
        }
    }

    pub fn by_slug(&self, slug: &str) -> Option<usize> {
        self.references.iter().position(|r| &*r.slug == slug)
    }
}

/// `first4****` for values of 12 characters or more, `****` otherwise: enough to tell two keys
/// apart, never enough to use one.
pub fn mask(value: &str) -> String {
    match value.chars().count() {
        n if n >= 12 => format!("{}****", value.chars().take(4).collect::<String>()),
        _ => "****".to_owned(),
    }
}

/// A slug made from a display name: lowercase ASCII letters, digits, `_` and `-`, with every
/// other run of characters turned into one `-`.
pub fn slug_from_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            c if c.is_ascii_alphanumeric() || c == '_' || c == '-' => {
                out.push(c.to_ascii_lowercase())
            }
            _ if !out.ends_with('-') => out.push('-'),
            _ => {}
        }
    }
    out.trim_matches('-').to_owned()
}

fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

pub fn validate(
    section: SecretsSection,
    raw: Vec<SecretReferenceSection>,
    workspaces: &BTreeSet<&str>,
    identity: &Identity,
    env: &Env,
) -> Result<SecretsSettings, ConfigError> {
    let secs = |path: &str, v: Option<u64>, default: u64| match v.unwrap_or(default) {
        0 => Err(invalid(path, "must be greater than 0")),
        n => Ok(Duration::from_secs(n)),
    };
    let mut references: Vec<SecretReference> = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let reference = validate_reference(i, r, workspaces, identity, env)?;
        if references.iter().any(|o| o.slug == reference.slug) {
            return Err(invalid(
                format!("secret_references[{i}] ({}).slug", reference.slug),
                "is used by an earlier reference; slugs must be unique",
            ));
        }
        references.push(reference);
    }
    Ok(SecretsSettings {
        ttl: secs("secrets.ttl_seconds", section.ttl_seconds, 300)?,
        max_stale: Duration::from_secs(section.max_stale_seconds.unwrap_or(3600)),
        prefetch: section.prefetch.unwrap_or(true),
        fetch_timeout: Duration::from_millis(match section.fetch_timeout_ms.unwrap_or(10_000) {
            0 => {
                return Err(invalid(
                    "secrets.fetch_timeout_ms",
                    "must be greater than 0",
                ))
            }
            n => n,
        }),
        references,
    })
}

fn validate_reference(
    i: usize,
    r: SecretReferenceSection,
    workspaces: &BTreeSet<&str>,
    identity: &Identity,
    env: &Env,
) -> Result<SecretReference, ConfigError> {
    let slug = match &r.slug {
        Some(s) => s.clone(),
        None => slug_from_name(&r.name),
    };
    let at = |field: &str| format!("secret_references[{i}] ({slug}).{field}");
    let len = r.name.chars().count();
    if !(1..=255).contains(&len) || r.name.trim().is_empty() {
        return Err(invalid(at("name"), "must be 1 to 255 characters"));
    }
    if !is_slug(&slug) {
        let why = match r.slug {
            Some(_) => "must match ^[a-zA-Z0-9_-]+$",
            None => "cannot be made from the name; give a slug matching ^[a-zA-Z0-9_-]+$",
        };
        return Err(invalid(at("slug"), why));
    }
    if r.description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 1024)
    {
        return Err(invalid(
            at("description"),
            "must be at most 1024 characters",
        ));
    }
    let manager = ManagerType::parse(&r.manager_type).ok_or_else(|| {
        invalid(
            at("manager_type"),
            format!(
                "unknown manager_type '{}' (known: aws_sm, azure_kv, hashicorp_vault)",
                r.manager_type
            ),
        )
    })?;
    if r.secret_path.trim().is_empty() {
        return Err(invalid(at("secret_path"), "is required"));
    }
    if r.secret_key.as_ref().is_some_and(|k| k.is_empty()) {
        return Err(invalid(
            at("secret_key"),
            "is empty; remove it to use the whole secret",
        ));
    }
    let shown = shown(&slug, manager, env, &r);
    let allowed_workspaces = match (r.allow_all_workspaces, r.allowed_workspaces) {
        (Some(true), Some(_)) => {
            return Err(invalid(
                at("allowed_workspaces"),
                "cannot be given with allow_all_workspaces = true; remove one",
            ))
        }
        (Some(false), None) => {
            return Err(invalid(
                at("allow_all_workspaces"),
                "is false but no allowed_workspaces are listed",
            ))
        }
        (_, Some(list)) => {
            if list.is_empty() {
                return Err(invalid(at("allowed_workspaces"), "is empty"));
            }
            for w in &list {
                if !workspaces.contains(w.as_str()) {
                    return Err(invalid(
                        at("allowed_workspaces"),
                        format!("no [workspaces.{w}] section"),
                    ));
                }
            }
            Some(list.into_iter().map(|w| Arc::from(w.as_str())).collect())
        }
        (_, None) => None,
    };
    let a = r.auth_config;
    check_fields(&at("auth_config"), manager, &a)?;
    let source = match manager {
        ManagerType::AwsSm => aws_source(&at("auth_config"), a, identity, env)?,
        ManagerType::AzureKv => {
            let vault_url = http_url(
                &at("auth_config.azure_vault_url"),
                a.azure_vault_url.clone(),
            )?;
            crate::credentials::secrets::keyvault::secret_url(&vault_url, &r.secret_path)
                .map_err(|m| invalid(at("secret_path"), m))?;
            SourceConfig::KeyVault {
                vault_url,
                credential: kv_credential(&at("auth_config"), a, identity, env)?,
            }
        }
        ManagerType::HashicorpVault => vault_source(&at("auth_config"), a, env)?,
    };
    Ok(SecretReference {
        name: r.name,
        slug: Arc::from(slug.as_str()),
        manager,
        source,
        path: r.secret_path,
        key: r.secret_key,
        allowed_workspaces,
        shown,
    })
}

/// The `auth_config` fields each manager takes (`_env` variants count as their field).
fn fields_of(m: ManagerType) -> &'static [&'static str] {
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
type Given<'a> = (&'static str, Option<&'a str>, bool);

fn given(a: &AuthConfigSection) -> Vec<Given<'_>> {
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

fn check_fields(path: &str, m: ManagerType, a: &AuthConfigSection) -> Result<(), ConfigError> {
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
fn shown(
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

fn env_value(a: &AuthConfigSection, field: &str, env: &Env) -> Option<String> {
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

fn need(path: &str, field: &str, v: Option<String>, why: &str) -> Result<String, ConfigError> {
    v.filter(|s| !s.trim().is_empty())
        .ok_or_else(|| invalid(format!("{path}.{field}"), format!("is required {why}")))
}

fn need_secret(
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

fn http_url(path: &str, v: Option<String>) -> Result<String, ConfigError> {
    let u = v.ok_or_else(|| invalid(path, "is required"))?;
    match Url::parse(&u) {
        Ok(p) if matches!(p.scheme(), "http" | "https") && p.host().is_some() => {
            Ok(u.trim_end_matches('/').to_owned())
        }
        _ => Err(invalid(path, format!("'{u}' must be an http(s) URL"))),
    }
}

fn aws_source(
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

fn kv_credential(
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

fn vault_source(path: &str, a: AuthConfigSection, env: &Env) -> Result<SourceConfig, ConfigError> {
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

mod mappings;
pub use mappings::{mappings, none_left, take, Entity, SecretMappingSection, SecretUse};

#[cfg(test)]
mod tests;
