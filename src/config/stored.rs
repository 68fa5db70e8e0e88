//! Stored rows in the config file's shapes: a workspace becomes a `[workspaces.<slug>]`, an API
//! key an `[[api_keys]]` entry, a secret reference a `[[secret_references]]` one, an integration a
//! `[credentials.<slug>]`, a virtual key a `[virtual_keys.<slug>]` (with a `vk/<slug>` credential
//! for its own key), a config a `[configs.<slug>]`. The runtime is then built, and every write
//! validated, exactly as a file would be.

use serde_json::Value;

use crate::config::schema::auth::{ApiKeySection, VirtualKeySection, WorkspaceSection};
use crate::config::schema::secrets::{
    AuthConfigSection, SecretMappingSection, SecretReferenceSection,
};
use crate::config::schema::{ConfigSection, CredentialSection};
use crate::config::Sections;
use crate::store::Row;

fn s(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

fn strings(v: &Value) -> Option<Vec<String>> {
    v.as_array().map(|l| {
        l.iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect()
    })
}

/// The slug of the secret reference `id_or_slug` names (mappings may use either).
fn reference_slug(rows: &[Row], id_or_slug: &str) -> String {
    rows.iter()
        .find(|r| r.kind == "secret_reference" && r.id == id_or_slug)
        .map_or_else(|| id_or_slug.to_owned(), |r| r.slug.clone())
}

fn mappings(rows: &[Row], v: &Value) -> Vec<SecretMappingSection> {
    v.as_array()
        .map(|l| {
            l.iter()
                .map(|m| SecretMappingSection {
                    target_field: s(&m["target_field"]).unwrap_or_default(),
                    secret_reference_id: reference_slug(
                        rows,
                        m["secret_reference_id"].as_str().unwrap_or_default(),
                    ),
                    secret_key: s(&m["secret_key"]),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The rows as sections; a row that cannot be read is left out (and logged).
pub fn sections(rows: &[Row]) -> Sections {
    let mut out = Sections::default();
    for r in rows {
        if let Err(e) = add(&mut out, r, rows) {
            log::warn!("store: {} {} left out: {e}", r.kind, r.slug);
        }
    }
    out
}

/// The rows as sections, or the first row that cannot be read and why (a write must not store
/// what would be left out).
pub fn try_sections(rows: &[Row]) -> Result<Sections, String> {
    let mut out = Sections::default();
    for r in rows {
        add(&mut out, r, rows).map_err(|e| format!("{} '{}': {e}", r.kind, r.slug))?;
    }
    Ok(out)
}

fn add(out: &mut Sections, r: &Row, rows: &[Row]) -> Result<(), String> {
    let b = &r.body;
    match r.kind.as_str() {
        "workspace" => {
            out.workspaces.insert(
                r.slug.clone(),
                WorkspaceSection {
                    allowed_providers: strings(&b["allowed_providers"]),
                    allowed_models: strings(&b["allowed_models"]),
                },
            );
        }
        "api_key" => out.api_keys.push(ApiKeySection {
            name: s(&b["name"]).ok_or("no name")?,
            hash: s(&b["hash"]).ok_or("no hash")?,
            workspace: r.workspace.clone(),
            role: s(&b["role"]),
            expires_at: s(&b["expires_at"]),
            revoked: b["revoked"] == true,
            allowed_providers: strings(&b["allowed_providers"]),
            allowed_models: strings(&b["allowed_models"]),
            virtual_key: s(&b["virtual_key"]),
        }),
        "secret_reference" => {
            let mut auth = b["auth_config"].as_object().cloned().unwrap_or_default();
            if let Value::Object(sealed) = &r.secrets {
                auth.extend(sealed.clone());
            }
            // Portkey's Vault auth type: keyway tells token and AppRole apart by the fields.
            auth.remove("vault_auth_type");
            let auth_config: AuthConfigSection =
                serde_json::from_value(Value::Object(auth)).map_err(|e| e.to_string())?;
            let allowed = strings(&b["allowed_workspaces"]);
            out.secret_references.push(SecretReferenceSection {
                name: s(&b["name"]).ok_or("no name")?,
                slug: Some(r.slug.clone()),
                description: s(&b["description"]),
                manager_type: s(&b["manager_type"]).ok_or("no manager_type")?,
                auth_config,
                secret_path: s(&b["secret_path"]).ok_or("no secret_path")?,
                secret_key: s(&b["secret_key"]),
                allow_all_workspaces: None,
                allowed_workspaces: allowed,
                tags: serde_json::from_value(b["tags"].clone()).unwrap_or_default(),
            });
        }
        "integration" => {
            out.credentials
                .insert(r.slug.clone(), integration(r, rows)?);
        }
        "virtual_key" => {
            let integration = s(&b["integration"]);
            let own = r.secrets["key"].as_str();
            let credential = match (&integration, own) {
                (Some(i), _) => Some(i.clone()),
                (None, Some(k)) => {
                    let name = format!("vk/{}", r.slug);
                    out.credentials
                        .insert(name.clone(), api_key(Some(k.to_owned()), vec![]));
                    Some(name)
                }
                (None, None) => None,
            };
            let from_integration = |f: &str| {
                integration.as_ref().and_then(|i| {
                    rows.iter()
                        .find(|x| x.kind == "integration" && &x.slug == i)
                        .and_then(|x| s(&x.body["configurations"][f]))
                })
            };
            out.virtual_keys.insert(
                r.slug.clone(),
                VirtualKeySection {
                    workspace: r.workspace.clone().ok_or("no workspace")?,
                    provider: s(&b["provider"]).ok_or("no provider")?,
                    credential,
                    secret_mappings: match own.is_some() || integration.is_some() {
                        true => vec![],
                        false => mappings(rows, &b["secret_mappings"]),
                    },
                    resource_name: s(&b["resource_name"])
                        .or_else(|| from_integration("azure_resource_name")),
                    deployment_id: s(&b["deployment_id"])
                        .or_else(|| from_integration("azure_deployment_name")),
                    api_version: s(&b["api_version"])
                        .or_else(|| from_integration("azure_api_version")),
                    allowed_models: strings(&b["allowed_models"]),
                },
            );
        }
        "config" => {
            out.configs.insert(
                r.slug.clone(),
                ConfigSection {
                    config: r.secrets["config"].to_string(),
                    workspace: r.workspace.clone(),
                    name: s(&b["name"]),
                },
            );
        }
        other => return Err(format!("unknown kind {other}")),
    }
    Ok(())
}

fn api_key(key: Option<String>, secret_mappings: Vec<SecretMappingSection>) -> CredentialSection {
    CredentialSection {
        kind: "api_key".into(),
        key,
        key_env: None,
        tenant_id: None,
        client_id: None,
        client_secret: None,
        client_secret_env: None,
        scope: None,
        token_file: None,
        secret_mappings,
    }
}

/// An integration as a `[credentials.<slug>]`, by its Azure auth mode.
fn integration(r: &Row, rows: &[Row]) -> Result<CredentialSection, String> {
    let c = &r.body["configurations"];
    let maps = mappings(rows, &r.body["secret_mappings"]);
    let mode = c["azure_auth_mode"].as_str().unwrap_or("apiKey");
    let key = s(&r.secrets["key"]);
    let mut cred = api_key(None, maps);
    cred.scope = s(&c["azure_entra_scope"]);
    match mode {
        "apiKey" => cred.key = key,
        "entra" => {
            cred.kind = "entra".into();
            cred.tenant_id = s(&c["azure_entra_tenant_id"]);
            cred.client_id = s(&c["azure_entra_client_id"]);
            cred.client_secret = s(&r.secrets["azure_entra_client_secret"]);
        }
        "managed" => {
            cred.kind = "managed".into();
            cred.client_id = s(&c["azure_managed_client_id"]);
        }
        "workload" => {
            cred.kind = "workload".into();
            cred.tenant_id = s(&c["azure_entra_tenant_id"]);
            cred.client_id = s(&c["azure_workload_client_id"]);
        }
        "entraFederated" => {
            cred.kind = "entra_federated".into();
            cred.tenant_id = s(&c["azure_entra_tenant_id"]);
            cred.client_id = s(&c["azure_entra_client_id"]);
        }
        other => return Err(format!("unknown azure_auth_mode {other}")),
    }
    Ok(cred)
}
