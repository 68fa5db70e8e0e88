//! Virtual keys (`/v1/virtual-keys`): a provider credential callers of one workspace use by
//! slug (`x-portkey-virtual-key`) without ever holding it — its own `key` (sealed at rest,
//! masked on reads), an integration's, or a key mapped from a secret reference — plus the Azure
//! fields it fills in (`resourceName`, `deploymentName`, `apiVersion`) and a model allow-list.

use serde_json::{Map, Value};

use super::{
    base_view, check_len, file_view, find, keep_identity, mask_key, only, sealed, take_str,
    take_strings, Kind, Write,
};
use crate::config::FileConfig;
use crate::control::http::ApiError;
use crate::routing::portkey;
use crate::store::Row;
use crate::vocab::Provider;

pub struct VirtualKeys;

const FIELDS: &[&str] = &[
    "name",
    "slug",
    "provider",
    "key",
    "integration",
    "note",
    "apiVersion",
    "resourceName",
    "deploymentName",
    "workspace_id",
    "workspace",
    "allowed_models",
    "secret_mappings",
    // Portkey's, accepted and not used by keyway.
    "usage_limits",
    "rate_limits",
    "expires_at",
    "deploymentConfig",
];

/// A `secret_mappings` list: objects with string `target_field`, `secret_reference_id` and
/// optional `secret_key`. A target field other than `key` without the entity's `prefix`
/// (`configurations.` for integrations, `model_config.` for virtual keys) gets it (seed 003's
/// normalisation); which fields may be mapped is checked with the rest of the configuration.
pub fn mappings(v: Value, prefix: &str) -> Result<Value, ApiError> {
    let Value::Array(mut items) = v else {
        return Err(ApiError::field("secret_mappings", "must be a list"));
    };
    for (i, m) in items.iter_mut().enumerate() {
        let at = |f: &str| format!("secret_mappings[{i}].{f}");
        let Value::Object(o) = m else {
            return Err(ApiError::field(
                &format!("secret_mappings[{i}]"),
                "must be an object",
            ));
        };
        for (k, v) in o.iter() {
            match (k.as_str(), v) {
                ("target_field" | "secret_reference_id", Value::String(s)) if !s.is_empty() => {}
                ("secret_key", Value::String(_) | Value::Null) => {}
                ("target_field" | "secret_reference_id" | "secret_key", _) => {
                    return Err(ApiError::field(&at(k), "must be a non-empty string"))
                }
                _ => return Err(ApiError::field(&at(k), "unknown field")),
            }
        }
        for f in ["target_field", "secret_reference_id"] {
            if !o.contains_key(f) {
                return Err(ApiError::field(&at(f), "is required"));
            }
        }
        if let Some(Value::String(t)) = o.get_mut("target_field") {
            if t != "key" && !t.starts_with(prefix) {
                *t = format!("{prefix}{t}");
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (i, m) in items.iter().enumerate() {
        if !seen.insert(m["target_field"].as_str().unwrap_or_default().to_owned()) {
            return Err(ApiError::field(
                &format!("secret_mappings[{i}].target_field"),
                "appears twice; each field is mapped once",
            ));
        }
    }
    Ok(Value::Array(items))
}

fn maps_key(doc: &Map<String, Value>) -> bool {
    doc.get("secret_mappings")
        .and_then(Value::as_array)
        .is_some_and(|l| l.iter().any(|m| m["target_field"] == "key"))
}

fn apply(
    c: &Write<'_>,
    body: &mut Map<String, Value>,
    doc: &mut Map<String, Value>,
    secrets: &mut Map<String, Value>,
) -> Result<(), ApiError> {
    if let Some(n) = take_str(body, "name")? {
        check_len("name", &n, 255)?;
        doc.insert("name".into(), n.into());
    }
    if let Some(p) = take_str(body, "provider")? {
        let p = Provider::from_slug(&p)
            .ok_or_else(|| ApiError::field("provider", format!("unknown provider '{p}'")))?;
        doc.insert("provider".into(), p.as_str().into());
    }
    if let Some(k) = take_str(body, "key")? {
        check_len("key", &k, 8192)?;
        secrets.insert("key".into(), k.into());
        doc.remove("integration");
    }
    if let Some(i) = take_str(body, "integration")? {
        let row = find(c.rows, "integration", &i)
            .ok_or_else(|| ApiError::field("integration", format!("no integration '{i}'")))?;
        c.actor.check(row.workspace.as_deref())?;
        doc.insert("integration".into(), row.slug.clone().into());
        if !doc.contains_key("provider") {
            doc.insert("provider".into(), row.body["ai_provider_id"].clone());
        }
        secrets.remove("key");
    }
    for (wire, field) in [
        ("note", "note"),
        ("apiVersion", "api_version"),
        ("resourceName", "resource_name"),
        ("deploymentName", "deployment_id"),
    ] {
        if body.contains_key(wire) {
            doc.insert(field.into(), take_str(body, wire)?.into());
        }
    }
    if body.contains_key("allowed_models") {
        doc.insert(
            "allowed_models".into(),
            take_strings(body, "allowed_models")?.into(),
        );
    }
    if let Some(m) = body.remove("secret_mappings") {
        doc.insert("secret_mappings".into(), mappings(m, "model_config.")?);
    }
    for f in [
        "usage_limits",
        "rate_limits",
        "expires_at",
        "deploymentConfig",
    ] {
        body.remove(f);
    }
    Ok(())
}

/// Exactly one credential: its own key, an integration, or a `key` mapping.
fn one_credential(doc: &Map<String, Value>, secrets: &Map<String, Value>) -> Result<(), ApiError> {
    let given = [
        secrets.contains_key("key"),
        doc.contains_key("integration"),
        maps_key(doc),
    ];
    match given.iter().filter(|g| **g).count() {
        1 => Ok(()),
        0 => Err(ApiError::field(
            "key",
            "is required (or an integration, or a secret mapping of key)",
        )),
        _ => Err(ApiError::field(
            "key",
            "give one of key, integration, or a secret mapping of key",
        )),
    }
}

impl Kind for VirtualKeys {
    const KIND: &'static str = "virtual_key";
    const OBJECT: &'static str = "virtual-key";
    const NOUN: &'static str = "virtual key";

    fn create(c: &Write<'_>, mut body: Map<String, Value>) -> Result<Row, ApiError> {
        only(&body, FIELDS)?;
        let (_, slug) = c.name_and_slug::<Self>(&mut body)?;
        let workspace = c.workspace(&mut body, "workspace_id", true)?;
        let (mut doc, mut secrets) = (Map::new(), Map::new());
        apply(c, &mut body, &mut doc, &mut secrets)?;
        if !doc.contains_key("provider") {
            return Err(ApiError::field("provider", "is required (a provider slug)"));
        }
        one_credential(&doc, &secrets)?;
        Ok(c.new_row::<Self>(slug, workspace, doc, sealed(secrets)))
    }

    fn update(c: &Write<'_>, old: &Row, mut body: Map<String, Value>) -> Result<Row, ApiError> {
        only(&body, FIELDS)?;
        keep_identity(&mut body, old, Self::NOUN)?;
        let mut doc = old.body.as_object().cloned().unwrap_or_default();
        let mut secrets = old.secrets.as_object().cloned().unwrap_or_default();
        apply(c, &mut body, &mut doc, &mut secrets)?;
        one_credential(&doc, &secrets)?;
        Ok(c.changed(old, doc, sealed(secrets)))
    }

    fn view(row: &Row) -> Value {
        let mut m = base_view(row, Self::OBJECT);
        mask_key(row, &mut m);
        Value::Object(m)
    }

    fn file_views(file: &FileConfig) -> Vec<(Option<String>, Value)> {
        file.virtual_keys
            .iter()
            .map(|(id, v)| {
                let mut m = Map::new();
                m.insert("name".into(), id.clone().into());
                m.insert("provider".into(), v.provider.clone().into());
                m.insert("workspace_id".into(), v.workspace.clone().into());
                (Some(v.workspace.clone()), file_view(id, Self::OBJECT, m))
            })
            .collect()
    }

    fn file_slugs(file: &FileConfig) -> Vec<String> {
        file.virtual_keys.keys().cloned().collect()
    }

    fn in_use(row: &Row, rows: &[Row], file: &FileConfig) -> Vec<String> {
        let mut users: Vec<String> = rows
            .iter()
            .filter(|r| r.kind == "api_key" && r.body["virtual_key"] == row.slug.as_str())
            .map(|r| format!("API key {}", r.body["name"].as_str().unwrap_or(&r.id)))
            .collect();
        users.extend(
            file.api_keys
                .iter()
                .filter(|k| k.virtual_key.as_deref() == Some(&row.slug))
                .map(|k| format!("API key {} (config file)", k.name)),
        );
        let names = |text: Option<&str>| {
            text.and_then(|t| portkey::parse_stored(t).ok())
                .is_some_and(|t| portkey::virtual_keys(&t).contains(&row.slug.as_str()))
        };
        users.extend(
            rows.iter()
                .filter(|r| r.kind == "config")
                .filter(|r| names(config_text(&r.secrets["config"]).as_deref()))
                .map(|r| format!("config {}", r.slug)),
        );
        users.extend(
            file.configs
                .iter()
                .filter(|(_, c)| names(Some(&c.config)))
                .map(|(slug, _)| format!("config {slug} (config file)")),
        );
        users
    }
}

/// A stored config's JSON as text (rows keep the object).
fn config_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(_) => Some(v.to_string()),
        _ => None,
    }
}
