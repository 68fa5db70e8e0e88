//! Workspaces (`/v1/admin/workspaces`, also `/v1/workspaces`): the tenants keys, virtual keys and
//! configs belong to, with optional provider and model allow-lists. Only organisation owners and
//! admins make and change them; a workspace admin sees its own.

use serde_json::{json, Map, Value};

use super::{
    base_view, check_len, file_view, only, required_str, take_str, take_strings, Kind, Write,
};
use crate::config::FileConfig;
use crate::control::http::ApiError;
use crate::store::Row;

pub struct Workspaces;

const FIELDS: &[&str] = &[
    "name",
    "slug",
    "description",
    "allowed_providers",
    "allowed_models",
    // Portkey's, accepted and not used by keyway.
    "defaults",
    "users",
    "metadata",
    "workspace_id",
];

fn organisation_only(c: &Write<'_>) -> Result<(), ApiError> {
    match c.actor.workspace {
        None => Ok(()),
        Some(_) => Err(ApiError::new(
            403,
            "forbidden",
            "only organisation owners and admins manage workspaces",
        )),
    }
}

fn fill(body: &mut Map<String, Value>, into: &mut Map<String, Value>) -> Result<(), ApiError> {
    if let Some(d) = take_str(body, "description")? {
        check_len("description", &d, 1024)?;
        into.insert("description".into(), d.into());
    }
    for f in ["allowed_providers", "allowed_models"] {
        if body.contains_key(f) {
            into.insert(f.into(), take_strings(body, f)?.into());
        }
    }
    Ok(())
}

impl Kind for Workspaces {
    const KIND: &'static str = "workspace";
    const OBJECT: &'static str = "workspace";
    const NOUN: &'static str = "workspace";

    fn create(c: &Write<'_>, mut body: Map<String, Value>) -> Result<Row, ApiError> {
        only(&body, FIELDS)?;
        organisation_only(c)?;
        let name = required_str(&mut body, "name", 255)?;
        let slug = c.new_slug::<Self>(take_str(&mut body, "slug")?, &name)?;
        let mut doc = Map::new();
        doc.insert("name".into(), name.into());
        fill(&mut body, &mut doc)?;
        // A workspace owns itself (a workspace admin may see its own).
        Ok(c.new_row::<Self>(slug.clone(), Some(slug), doc, Value::Null))
    }

    fn update(c: &Write<'_>, old: &Row, mut body: Map<String, Value>) -> Result<Row, ApiError> {
        only(&body, FIELDS)?;
        organisation_only(c)?;
        let mut doc = old.body.as_object().cloned().unwrap_or_default();
        if let Some(n) = take_str(&mut body, "name")? {
            check_len("name", &n, 255)?;
            doc.insert("name".into(), n.into());
        }
        fill(&mut body, &mut doc)?;
        Ok(c.changed(old, doc, old.secrets.clone()))
    }

    fn view(row: &Row) -> Value {
        Value::Object(base_view(row, Self::OBJECT))
    }

    fn file_views(file: &FileConfig) -> Vec<(Option<String>, Value)> {
        file.workspaces
            .iter()
            .map(|(slug, w)| {
                let mut m = Map::new();
                m.insert("name".into(), slug.clone().into());
                m.insert("allowed_providers".into(), json!(w.allowed_providers));
                m.insert("allowed_models".into(), json!(w.allowed_models));
                (Some(slug.clone()), file_view(slug, Self::OBJECT, m))
            })
            .collect()
    }

    fn file_slugs(file: &FileConfig) -> Vec<String> {
        file.workspaces.keys().cloned().collect()
    }

    fn in_use(row: &Row, rows: &[Row], _file: &FileConfig) -> Vec<String> {
        rows.iter()
            .filter(|r| r.kind != Self::KIND && r.workspace.as_deref() == Some(&row.slug))
            .map(|r| format!("{} {}", r.kind.replace('_', " "), r.slug))
            .collect()
    }
}
