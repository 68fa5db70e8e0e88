//! Secret references (seed 003) in the config file: `[secrets]` (cache policy) and
//! `[[secret_references]]`, strictly parsed and validated into `SecretReference`s whose
//! `auth_config` is already typed for its manager. Every error names the reference
//! (`secret_references[i] (slug)`) and the field. `shown` is the masked view that logs,
//! `--check-config` and errors use; nothing else prints a reference.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use super::identity::{Identity, TokenCredential};
use super::schema::secrets::{SecretReferenceSection, SecretsSection};
use super::{invalid, ConfigError};
use crate::credentials::secrets::aws::AwsSettings;
use crate::credentials::secrets::vault::VaultSettings;
use crate::credentials::secrets::ManagerType;
use crate::env::Env;
use auth_config::{check_fields, shown};
use sources::{aws_source, http_url, kv_credential, vault_source};

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
    /// What the reference is (`digest.rs`): equal digests share a cache entry across reloads.
    pub digest: [u8; 32],
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
/// Whether `name` is an `auth_config` field of some secret manager.
pub fn is_auth_config_field(name: &str) -> bool {
    use crate::credentials::secrets::ManagerType;
    [
        ManagerType::AwsSm,
        ManagerType::AzureKv,
        ManagerType::HashicorpVault,
    ]
    .into_iter()
    .any(|m| auth_config::fields_of(m).contains(&name))
}

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
    let mut reference = SecretReference {
        name: r.name,
        slug: Arc::from(slug.as_str()),
        manager,
        source,
        path: r.secret_path,
        key: r.secret_key,
        allowed_workspaces,
        shown,
        digest: [0; 32],
    };
    reference.digest = digest::reference_digest(&reference);
    Ok(reference)
}

mod auth_config;
mod digest;
mod mappings;
mod sources;
pub use mappings::{mappings, none_left, take, Entity, SecretUse};

#[cfg(test)]
mod tests;
