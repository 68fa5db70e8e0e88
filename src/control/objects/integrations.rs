//! Integrations (`/v1/integrations`): a provider credential kept by keyway — an API key, or an
//! Azure identity (`configurations.azure_auth_mode`: `apiKey`, `entra`, `managed`, `workload`,
//! `entraFederated`) — that virtual keys use by slug. The key and the Entra client secret are
//! sealed at rest and masked on reads; either may instead be mapped from a secret reference
//! (`secret_mappings`: `key`, `configurations.azure_entra_client_secret`).

use serde_json::{Map, Value};

use super::{
    base_view, check_len, file_view, keep_identity, mask_key, only, sealed, take_str, Kind, Write,
};
use crate::config::secrets::mask;
use crate::config::FileConfig;
use crate::control::http::ApiError;
use crate::store::Row;
use crate::vocab::Provider;

pub struct Integrations;

const FIELDS: &[&str] = &[
    "name",
    "slug",
    "description",
    "ai_provider_id",
    "provider",
    "key",
    "configurations",
    "secret_mappings",
    "workspace_id",
    "workspace",
    // Portkey's, accepted and not used by keyway.
    "note",
    "organisation_id",
    "workspaces",
];

/// `configurations` fields keyway uses; the sensitive one is sealed.
pub const CONFIGURATIONS: &[&str] = &[
    "azure_auth_mode",
    "azure_resource_name",
    "azure_deployment_name",
    "azure_api_version",
    "azure_entra_tenant_id",
    "azure_entra_client_id",
    "azure_entra_client_secret",
    "azure_entra_scope",
    "azure_managed_client_id",
    "azure_workload_client_id",
];
const SEALED_CONFIGURATION: &str = "azure_entra_client_secret";
const AUTH_MODES: &[&str] = &["apiKey", "entra", "managed", "workload", "entraFederated"];

fn configurations(
    v: Value,
    doc: &mut Map<String, Value>,
    secrets: &mut Map<String, Value>,
) -> Result<(), ApiError> {
    let Value::Object(m) = v else {
        return Err(ApiError::field("configurations", "must be an object"));
    };
    let cfg = doc
        .entry("configurations")
        .or_insert_with(|| Value::Object(Map::new()));
    for (k, v) in m {
        let at = format!("configurations.{k}");
        if !CONFIGURATIONS.contains(&k.as_str()) {
            return Err(ApiError::field(&at, "unknown field"));
        }
        if !(v.is_string() || v.is_null()) {
            return Err(ApiError::field(&at, "must be a string"));
        }
        if k == "azure_auth_mode" && !v.as_str().is_some_and(|m| AUTH_MODES.contains(&m)) {
            return Err(ApiError::field(
                &at,
                "must be apiKey, entra, managed, workload or entraFederated",
            ));
        }
        if k == SEALED_CONFIGURATION {
            secrets.insert(k, v);
        } else if let Value::Object(c) = cfg {
            c.insert(k, v);
        }
    }
    Ok(())
}

fn apply(
    body: &mut Map<String, Value>,
    doc: &mut Map<String, Value>,
    secrets: &mut Map<String, Value>,
) -> Result<(), ApiError> {
    if let Some(n) = take_str(body, "name")? {
        check_len("name", &n, 255)?;
        doc.insert("name".into(), n.into());
    }
    if body.contains_key("description") {
        doc.insert("description".into(), take_str(body, "description")?.into());
    }
    let provider = take_str(body, "ai_provider_id")?.or(take_str(body, "provider")?);
    if let Some(p) = provider {
        let p = Provider::from_slug(&p)
            .ok_or_else(|| ApiError::field("ai_provider_id", format!("unknown provider '{p}'")))?;
        doc.insert("ai_provider_id".into(), p.as_str().into());
    }
    if let Some(k) = take_str(body, "key")? {
        secrets.insert("key".into(), k.into());
    }
    if let Some(c) = body.remove("configurations") {
        configurations(c, doc, secrets)?;
    }
    if let Some(m) = body.remove("secret_mappings") {
        doc.insert(
            "secret_mappings".into(),
            super::virtual_keys::mappings(m, "configurations.")?,
        );
    }
    for f in ["note", "organisation_id", "workspaces"] {
        body.remove(f);
    }
    Ok(())
}

impl Kind for Integrations {
    const KIND: &'static str = "integration";
    const OBJECT: &'static str = "integration";
    const NOUN: &'static str = "integration";

    fn create(c: &Write<'_>, mut body: Map<String, Value>) -> Result<Row, ApiError> {
        only(&body, FIELDS)?;
        let (_, slug) = c.name_and_slug::<Self>(&mut body)?;
        let workspace = c.workspace(&mut body, "workspace_id", false)?;
        let (mut doc, mut secrets) = (Map::new(), Map::new());
        apply(&mut body, &mut doc, &mut secrets)?;
        if !doc.contains_key("ai_provider_id") {
            return Err(ApiError::field(
                "ai_provider_id",
                "is required (a provider slug)",
            ));
        }
        Ok(c.new_row::<Self>(slug, workspace, doc, sealed(secrets)))
    }

    fn update(c: &Write<'_>, old: &Row, mut body: Map<String, Value>) -> Result<Row, ApiError> {
        only(&body, FIELDS)?;
        keep_identity(&mut body, old, Self::NOUN)?;
        let mut doc = old.body.as_object().cloned().unwrap_or_default();
        let mut secrets = old.secrets.as_object().cloned().unwrap_or_default();
        apply(&mut body, &mut doc, &mut secrets)?;
        Ok(c.changed(old, doc, sealed(secrets)))
    }

    fn view(row: &Row) -> Value {
        let mut m = base_view(row, Self::OBJECT);
        let mut cfg = row.body["configurations"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        if let Some(s) = row.secrets[SEALED_CONFIGURATION].as_str() {
            cfg.insert(format!("masked_{SEALED_CONFIGURATION}"), mask(s).into());
        }
        m.insert("configurations".into(), Value::Object(cfg));
        mask_key(row, &mut m);
        Value::Object(m)
    }

    fn file_views(file: &FileConfig) -> Vec<(Option<String>, Value)> {
        file.credentials
            .iter()
            .map(|(name, c)| {
                let mut m = Map::new();
                m.insert("name".into(), name.clone().into());
                m.insert("type".into(), c.kind.clone().into());
                (None, file_view(name, Self::OBJECT, m))
            })
            .collect()
    }

    fn file_slugs(file: &FileConfig) -> Vec<String> {
        file.credentials.keys().cloned().collect()
    }

    fn in_use(row: &Row, rows: &[Row], _file: &FileConfig) -> Vec<String> {
        rows.iter()
            .filter(|r| r.kind == "virtual_key" && r.body["integration"] == row.slug.as_str())
            .map(|r| format!("virtual key {}", r.slug))
            .collect()
    }
}
