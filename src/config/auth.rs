//! Client authentication in the config file: `[auth]`, `[workspaces.<slug>]`, `[[api_keys]]` and
//! `[virtual_keys.<id>]`, strictly parsed and turned into the runtime registries of `crate::auth`.
//! `[[auth.jwt]]` is parsed here but validated by `config::jwt`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use super::schema::auth::{ApiKeySection, AuthSection, VirtualKeySection, WorkspaceSection};
use super::schema::secrets::SecretMappingSection;
use super::secrets::{self, Entity, SecretsSettings};
use super::{invalid, ConfigError, Credential};
use crate::auth::keys::{parse_hash_line, ApiKeyEntry, ApiKeyStore};
use crate::auth::workspace::{VirtualKey, VirtualKeys, Workspace, Workspaces};
use crate::auth::{AuthMode, Role};
use crate::vocab::Provider;

/// Validated client authentication (all but the JWT validators).
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    pub mode: AuthMode,
    pub keys: ApiKeyStore,
    pub workspaces: Workspaces,
    pub virtual_keys: VirtualKeys,
}

/// Validates the four auth sections. A virtual key whose `key` is mapped from a secret
/// reference gets a credential of its own, `virtual_keys.<id>`, added to `credentials`.
pub fn validate(
    auth: &AuthSection,
    workspaces: BTreeMap<String, WorkspaceSection>,
    api_keys: Vec<ApiKeySection>,
    virtual_keys: BTreeMap<String, VirtualKeySection>,
    credentials: &mut BTreeMap<String, Credential>,
    secrets: &SecretsSettings,
) -> Result<AuthSettings, ConfigError> {
    let mode = parse_mode(auth.mode.as_deref())?;
    if mode == AuthMode::Enforced && api_keys.is_empty() && auth.jwt.is_empty() {
        return Err(invalid(
            "auth.mode",
            "\"enforced\" needs at least one [[api_keys]] or [[auth.jwt]] (or set mode = \"open\")",
        ));
    }
    let ws = validate_workspaces(workspaces)?;
    let vks = validate_virtual_keys(virtual_keys, &ws, credentials, secrets)?;
    let keys = validate_api_keys(api_keys, &ws, &vks)?;
    Ok(AuthSettings {
        mode,
        keys: ApiKeyStore::new(keys),
        workspaces: Workspaces::new(ws),
        virtual_keys: VirtualKeys::new(vks.into_values()),
    })
}

fn parse_mode(mode: Option<&str>) -> Result<AuthMode, ConfigError> {
    match mode.unwrap_or("open") {
        "open" => Ok(AuthMode::Open),
        "enforced" => Ok(AuthMode::Enforced),
        other => Err(invalid(
            "auth.mode",
            format!("unknown mode '{other}' (known: open, enforced)"),
        )),
    }
}

fn check_slug(path: &str, what: &str, slug: &str) -> Result<(), ConfigError> {
    let ok = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    if slug.is_empty() || !slug.bytes().all(ok) {
        return Err(invalid(
            path,
            format!("{what} '{slug}' must match ^[a-zA-Z0-9_-]+$"),
        ));
    }
    Ok(())
}

fn model_list(path: String, v: Option<Vec<String>>) -> Result<Option<Arc<[String]>>, ConfigError> {
    match v {
        Some(l) if l.is_empty() => Err(invalid(path, "is empty; remove it to allow every model")),
        Some(l) if l.iter().any(|m| m.trim().is_empty()) => {
            Err(invalid(path, "holds an empty model name"))
        }
        other => Ok(other.map(Arc::from)),
    }
}

/// Canonical slugs; aliases are accepted.
fn provider_list(
    path: String,
    v: Option<Vec<String>>,
) -> Result<Option<Arc<[String]>>, ConfigError> {
    let Some(list) = v else { return Ok(None) };
    if list.is_empty() {
        return Err(invalid(path, "is empty; remove it to allow every provider"));
    }
    list.iter()
        .map(|s| {
            Provider::from_slug(s)
                .map(|p| p.as_str().to_owned())
                .ok_or_else(|| invalid(&path, format!("unknown provider '{s}'")))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(|l| Some(Arc::from(l)))
}

fn validate_workspaces(
    raw: BTreeMap<String, WorkspaceSection>,
) -> Result<BTreeMap<String, Workspace>, ConfigError> {
    let mut out = BTreeMap::new();
    for (slug, w) in raw {
        let path = format!("workspaces.{slug}");
        check_slug(&path, "workspace", &slug)?;
        let ws = Workspace {
            allowed_providers: provider_list(
                format!("{path}.allowed_providers"),
                w.allowed_providers,
            )?,
            allowed_models: model_list(format!("{path}.allowed_models"), w.allowed_models)?,
        };
        out.insert(slug, ws);
    }
    Ok(out)
}

fn known_workspace(
    path: String,
    slug: &str,
    ws: &BTreeMap<String, Workspace>,
) -> Result<Arc<str>, ConfigError> {
    match ws.contains_key(slug) {
        true => Ok(Arc::from(slug)),
        false => Err(invalid(path, format!("no [workspaces.{slug}] section"))),
    }
}

fn azure_default(
    path: String,
    provider: Provider,
    v: Option<String>,
) -> Result<Option<String>, ConfigError> {
    match v {
        Some(_) if !provider.is_azure() => Err(invalid(
            path,
            "only azure-openai and azure-ai virtual keys take Azure defaults",
        )),
        Some(s) if s.trim().is_empty() => Err(invalid(path, "is empty")),
        other => Ok(other),
    }
}

fn validate_virtual_keys(
    raw: BTreeMap<String, VirtualKeySection>,
    ws: &BTreeMap<String, Workspace>,
    credentials: &mut BTreeMap<String, Credential>,
    secrets: &SecretsSettings,
) -> Result<BTreeMap<String, VirtualKey>, ConfigError> {
    let mut out = BTreeMap::new();
    for (id, v) in raw {
        let path = format!("virtual_keys.{id}");
        check_slug(&path, "virtual key id", &id)?;
        let workspace = known_workspace(format!("{path}.workspace"), &v.workspace, ws)?;
        let provider = Provider::from_slug(&v.provider).ok_or_else(|| {
            invalid(
                format!("{path}.provider"),
                format!("unknown provider '{}'", v.provider),
            )
        })?;
        let credential = vk_credential(
            &path,
            &id,
            &workspace,
            v.credential,
            v.secret_mappings,
            credentials,
            secrets,
        )?;
        let vk = VirtualKey {
            id: Arc::from(id.as_str()),
            workspace,
            provider,
            credential,
            resource_name: azure_default(
                format!("{path}.resource_name"),
                provider,
                v.resource_name,
            )?,
            deployment_id: azure_default(
                format!("{path}.deployment_id"),
                provider,
                v.deployment_id,
            )?,
            api_version: azure_default(format!("{path}.api_version"), provider, v.api_version)?,
            allowed_models: model_list(format!("{path}.allowed_models"), v.allowed_models)?,
        };
        out.insert(id, vk);
    }
    Ok(out)
}

/// The credential a virtual key uses: a named one, or its own mapped key. Either way every
/// secret reference behind it must be available to the key's workspace.
fn vk_credential(
    path: &str,
    id: &str,
    workspace: &str,
    named: Option<String>,
    raw_maps: Vec<SecretMappingSection>,
    credentials: &mut BTreeMap<String, Credential>,
    secrets: &SecretsSettings,
) -> Result<String, ConfigError> {
    let mut maps = secrets::mappings(path, Entity::VirtualKey, raw_maps, secrets, Some(workspace))?;
    let key = secrets::take(&mut maps, &["key"]);
    secrets::none_left(
        path,
        &maps,
        "a virtual key",
        "key; map client secrets on the [credentials.*] the key uses",
    )?;
    match (named, key) {
        (Some(_), Some(_)) => Err(invalid(
            format!("{path}.credential"),
            "give credential or a secret mapping for key, not both",
        )),
        (None, None) => Err(invalid(
            format!("{path}.credential"),
            "is required (or a secret mapping for key)",
        )),
        (None, Some(u)) => {
            let name = format!("virtual_keys.{id}");
            if credentials.contains_key(&name) {
                return Err(invalid(
                    format!("credentials.{name}"),
                    "this name is kept for the virtual key's own mapped key; rename the credential",
                ));
            }
            credentials.insert(name.clone(), Credential::MappedKey(u));
            Ok(name)
        }
        (Some(name), None) => {
            let cred = credentials.get(&name).ok_or_else(|| {
                invalid(
                    format!("{path}.credential"),
                    format!("no [credentials.{name}] section"),
                )
            })?;
            if let Some(u) = cred.secret_uses() {
                let r = &secrets.references[u.reference];
                if !r.allows(workspace) {
                    return Err(invalid(
                        format!("{path}.credential"),
                        format!(
                            "[credentials.{name}] reads secret reference '{}', which is not available to workspace '{workspace}'",
                            r.slug
                        ),
                    ));
                }
            }
            Ok(name)
        }
    }
}

fn parse_expiry(path: String, v: Option<&str>) -> Result<Option<SystemTime>, ConfigError> {
    use time::format_description::well_known::Rfc3339;
    v.map(|s| {
        time::OffsetDateTime::parse(s, &Rfc3339)
            .map(SystemTime::from)
            .map_err(|_| {
                invalid(
                    &path,
                    format!("'{s}' is not an RFC 3339 time (e.g. 2026-12-31T23:59:59Z)"),
                )
            })
    })
    .transpose()
}

fn validate_api_keys(
    raw: Vec<ApiKeySection>,
    ws: &BTreeMap<String, Workspace>,
    vks: &BTreeMap<String, VirtualKey>,
) -> Result<Vec<ApiKeyEntry>, ConfigError> {
    let mut out: Vec<ApiKeyEntry> = Vec::with_capacity(raw.len());
    for (i, k) in raw.into_iter().enumerate() {
        let entry = api_key(&format!("api_keys[{i}]"), k, ws, vks)?;
        if let Some(j) = out.iter().position(|o| o.name == entry.name) {
            return Err(invalid(
                format!("api_keys[{i}].name"),
                format!("'{}' is already used by api_keys[{j}]", entry.name),
            ));
        }
        if let Some(j) = out.iter().position(|o| o.digest == entry.digest) {
            return Err(invalid(
                format!("api_keys[{i}].hash"),
                format!("is the same key as api_keys[{j}]"),
            ));
        }
        out.push(entry);
    }
    Ok(out)
}

fn api_key(
    path: &str,
    k: ApiKeySection,
    ws: &BTreeMap<String, Workspace>,
    vks: &BTreeMap<String, VirtualKey>,
) -> Result<ApiKeyEntry, ConfigError> {
    if k.name.trim().is_empty() {
        return Err(invalid(format!("{path}.name"), "must be non-empty"));
    }
    let digest = parse_hash_line(&k.hash).map_err(|m| invalid(format!("{path}.hash"), m))?;
    let workspace = match &k.workspace {
        Some(w) => Some(known_workspace(format!("{path}.workspace"), w, ws)?),
        None => None,
    };
    let role = k.role.as_deref().unwrap_or("member").parse::<Role>();
    let role = role.map_err(|m| invalid(format!("{path}.role"), m))?;
    let allowed_providers =
        provider_list(format!("{path}.allowed_providers"), k.allowed_providers)?;
    let virtual_key = match k.virtual_key {
        Some(id) => {
            let Some(w) = &workspace else {
                return Err(invalid(
                    format!("{path}.virtual_key"),
                    "an organisation key (no workspace) cannot be bound to a virtual key",
                ));
            };
            Some(bound_virtual_key(
                path,
                &id,
                w,
                allowed_providers.as_deref(),
                vks,
            )?)
        }
        None => None,
    };
    Ok(ApiKeyEntry {
        name: Arc::from(k.name),
        digest,
        workspace,
        role,
        expires_at: parse_expiry(format!("{path}.expires_at"), k.expires_at.as_deref())?,
        revoked: k.revoked,
        allowed_providers,
        allowed_models: model_list(format!("{path}.allowed_models"), k.allowed_models)?,
        virtual_key,
    })
}

fn bound_virtual_key(
    path: &str,
    id: &str,
    workspace: &str,
    allowed_providers: Option<&[String]>,
    vks: &BTreeMap<String, VirtualKey>,
) -> Result<Arc<str>, ConfigError> {
    let path = format!("{path}.virtual_key");
    let vk = vks
        .get(id)
        .ok_or_else(|| invalid(&path, format!("no [virtual_keys.{id}] section")))?;
    if &*vk.workspace != workspace {
        return Err(invalid(
            path,
            format!(
                "virtual key '{id}' belongs to workspace {}, not {workspace}",
                vk.workspace
            ),
        ));
    }
    if allowed_providers.is_some_and(|l| !l.iter().any(|p| p == vk.provider.as_str())) {
        return Err(invalid(
            path,
            format!(
                "virtual key '{id}' uses provider {}, which allowed_providers excludes",
                vk.provider.as_str()
            ),
        ));
    }
    Ok(vk.id.clone())
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
