//! Configs (`/v1/configs`): Portkey routing configs stored by slug; a request names one in
//! `x-portkey-config` instead of sending the JSON, as Portkey allows. A config may carry
//! provider keys and Azure secrets, so it is sealed at rest whole and shown with those masked.

use serde_json::{Map, Value};

use super::{base_view, file_view, keep_identity, only, required_str, take_str, Kind, Write};
use crate::config::FileConfig;
use crate::control::http::ApiError;
use crate::routing::portkey;
use crate::store::Row;

pub struct Configs;

const FIELDS: &[&str] = &[
    "name",
    "slug",
    "config",
    "workspace_id",
    "workspace",
    // Portkey's, accepted and not used by keyway.
    "isDefault",
    "is_default",
    "status",
];

/// The config as an object, whether sent as one or as JSON text; checked as a request's would be.
fn config(v: Value) -> Result<Value, ApiError> {
    let text = match &v {
        Value::String(s) => s.clone(),
        Value::Object(_) => v.to_string(),
        _ => {
            return Err(ApiError::field(
                "config",
                "must be an object (or its JSON text)",
            ))
        }
    };
    portkey::parse_stored(&text).map_err(|m| ApiError::field("config", m))?;
    serde_json::from_str(&text).map_err(|_| ApiError::field("config", "is not a JSON object"))
}

impl Kind for Configs {
    const KIND: &'static str = "config";
    const OBJECT: &'static str = "config";
    const NOUN: &'static str = "config";

    fn create(c: &Write<'_>, mut body: Map<String, Value>) -> Result<Row, ApiError> {
        only(&body, FIELDS)?;
        let name = required_str(&mut body, "name", 255)?;
        let slug = c.new_slug::<Self>(take_str(&mut body, "slug")?, &name)?;
        let workspace = c.workspace(&mut body, "workspace_id", false)?;
        let cfg = config(
            body.remove("config")
                .ok_or_else(|| ApiError::field("config", "is required"))?,
        )?;
        let mut doc = Map::new();
        doc.insert("name".into(), name.into());
        Ok(c.new_row::<Self>(slug, workspace, doc, serde_json::json!({ "config": cfg })))
    }

    fn update(c: &Write<'_>, old: &Row, mut body: Map<String, Value>) -> Result<Row, ApiError> {
        only(&body, FIELDS)?;
        keep_identity(&mut body, old, Self::NOUN)?;
        let mut doc = old.body.as_object().cloned().unwrap_or_default();
        if let Some(n) = take_str(&mut body, "name")? {
            super::check_len("name", &n, 255)?;
            doc.insert("name".into(), n.into());
        }
        let mut secrets = old.secrets.clone();
        if let Some(v) = body.remove("config") {
            secrets = serde_json::json!({ "config": config(v)? });
        }
        Ok(c.changed(old, doc, secrets))
    }

    fn view(row: &Row) -> Value {
        let mut m = base_view(row, Self::OBJECT);
        m.insert("config".into(), masked(&row.secrets["config"]));
        Value::Object(m)
    }

    fn file_views(file: &FileConfig) -> Vec<(Option<String>, Value)> {
        file.configs
            .iter()
            .map(|(slug, c)| {
                let mut m = Map::new();
                m.insert("name".into(), c.name.clone().unwrap_or(slug.clone()).into());
                let cfg: Value = serde_json::from_str(&c.config).unwrap_or(Value::Null);
                m.insert("config".into(), cfg);
                (c.workspace.clone(), file_view(slug, Self::OBJECT, m))
            })
            .collect()
    }

    fn file_slugs(file: &FileConfig) -> Vec<String> {
        file.configs.keys().cloned().collect()
    }
}

/// A config with every value of a sensitive-looking key (`api_key`, `*secret*`, `*token*`,
/// `*password*`) masked, at any depth.
pub fn masked(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let lower = k.to_ascii_lowercase();
                    let sensitive = ["key", "secret", "token", "password"]
                        .iter()
                        .any(|s| lower.contains(s))
                        && !lower.contains("virtual");
                    let shown = match (sensitive, v.as_str()) {
                        (true, Some(s)) => crate::config::secrets::mask(s).into(),
                        _ => masked(v),
                    };
                    (k.clone(), shown)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(masked).collect()),
        other => other.clone(),
    }
}
