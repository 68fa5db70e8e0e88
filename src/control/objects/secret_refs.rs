//! Secret references (`/v1/secret-references`, seed 003): where a provider key or client secret
//! lives (AWS Secrets Manager, Azure Key Vault, HashiCorp Vault) and how to reach it. The
//! manager's credentials in `auth_config` are sealed at rest and masked on every read
//! (`masked_<field>`); `PUT` changes only what it is sent and merges `auth_config`;
//! `allow_all_workspaces: true` drops the workspace list, `allowed_workspaces` turns it off; a
//! reference that integrations or virtual keys still map cannot be deleted (409, naming them).

use serde_json::{Map, Value};

use super::{
    base_view, check_len, check_slug, file_view, find, only, sealed, take_bool, take_str, Kind,
    Write,
};
use crate::config::secrets::{is_auth_config_field, mask, slug_from_name, SENSITIVE_FIELDS};
use crate::config::FileConfig;
use crate::control::http::ApiError;
use crate::store::Row;

pub struct SecretRefs;

const FIELDS: &[&str] = &[
    "name",
    "slug",
    "description",
    "manager_type",
    "auth_config",
    "secret_path",
    "secret_key",
    "allow_all_workspaces",
    "allowed_workspaces",
    "tags",
];
const MANAGERS: &[&str] = &["aws_sm", "azure_kv", "hashicorp_vault"];

/// `auth_config` apart: (plain fields, sensitive fields). `_env` fields are refused: stored
/// references carry their values.
type Split = (Map<String, Value>, Map<String, Value>);

fn split_auth(v: Value) -> Result<Split, ApiError> {
    let Value::Object(m) = v else {
        return Err(ApiError::field("auth_config", "must be an object"));
    };
    let (mut plain, mut sealed) = (Map::new(), Map::new());
    for (k, v) in m {
        let at = format!("auth_config.{k}");
        if k.ends_with("_env") {
            return Err(ApiError::field(
                &at,
                "environment variables are for the config file; send the value",
            ));
        }
        if k == "vault_auth_type" {
            match v.as_str().map(str::to_ascii_lowercase).as_deref() {
                Some("token" | "approle") => {
                    plain.insert(k, v);
                    continue;
                }
                _ => return Err(ApiError::field(&at, "must be token or approle")),
            }
        }
        if !is_auth_config_field(&k) {
            return Err(ApiError::field(&at, "unknown field"));
        }
        match (&v, k == "vault_kv_version") {
            (Value::Null, _) => continue,
            (Value::Number(_), true) | (Value::String(_), false) => {}
            _ => return Err(ApiError::field(&at, "has the wrong type")),
        }
        match SENSITIVE_FIELDS.contains(&k.as_str()) {
            true => sealed.insert(k, v),
            false => plain.insert(k, v),
        };
    }
    Ok((plain, sealed))
}

/// `allowed_workspaces`: slugs or ids of existing workspaces, as slugs.
fn workspaces(c: &Write<'_>, v: Value) -> Result<Vec<String>, ApiError> {
    let Value::Array(items) = v else {
        return Err(ApiError::field(
            "allowed_workspaces",
            "must be a list of workspace ids or slugs",
        ));
    };
    if items.is_empty() {
        return Err(ApiError::field("allowed_workspaces", "is empty"));
    }
    items
        .into_iter()
        .map(|w| {
            let w = w
                .as_str()
                .ok_or_else(|| ApiError::field("allowed_workspaces", "must hold strings"))?
                .to_owned();
            if c.file.workspaces.contains_key(&w) {
                return Ok(w);
            }
            find(c.rows, "workspace", &w)
                .map(|r| r.slug.clone())
                .ok_or_else(|| ApiError::field("allowed_workspaces", format!("no workspace '{w}'")))
        })
        .collect()
}

/// The fields both create and update take, applied to `doc` (and `secrets`).
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
    if body.contains_key("description") {
        let d = take_str(body, "description")?;
        if let Some(d) = &d {
            if d.chars().count() > 1024 {
                return Err(ApiError::field(
                    "description",
                    "must be at most 1024 characters",
                ));
            }
        }
        doc.insert("description".into(), d.into());
    }
    if let Some(m) = take_str(body, "manager_type")? {
        if !MANAGERS.contains(&m.as_str()) {
            return Err(ApiError::field(
                "manager_type",
                "must be aws_sm, azure_kv or hashicorp_vault",
            ));
        }
        doc.insert("manager_type".into(), m.into());
    }
    if let Some(v) = body.remove("auth_config") {
        let (plain, sealed) = split_auth(v)?;
        // Merged into what is there (a create starts empty).
        let into = doc
            .entry("auth_config")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = into {
            m.extend(plain);
        }
        secrets.extend(sealed);
    }
    if let Some(p) = take_str(body, "secret_path")? {
        check_len("secret_path", &p, 1024)?;
        doc.insert("secret_path".into(), p.into());
    }
    if body.contains_key("secret_key") {
        let k = take_str(body, "secret_key")?;
        if k.as_deref() == Some("") {
            return Err(ApiError::field(
                "secret_key",
                "is empty; send null to use the whole secret",
            ));
        }
        doc.insert("secret_key".into(), k.into());
    }
    match body.remove("tags") {
        None => {}
        Some(Value::Null) => {
            doc.insert("tags".into(), Value::Object(Map::new()));
        }
        Some(Value::Object(t)) if t.values().all(Value::is_string) => {
            doc.insert("tags".into(), Value::Object(t));
        }
        Some(_) => return Err(ApiError::field("tags", "must be an object of strings")),
    }
    let all = take_bool(body, "allow_all_workspaces")?;
    let list = body.remove("allowed_workspaces").filter(|v| !v.is_null());
    match (all, list) {
        (Some(true), Some(_)) => {
            return Err(ApiError::field(
                "allowed_workspaces",
                "cannot be given with allow_all_workspaces: true",
            ))
        }
        (Some(false), None) if !doc.contains_key("allowed_workspaces") => {
            return Err(ApiError::field(
                "allow_all_workspaces",
                "is false but no allowed_workspaces are given",
            ))
        }
        // Seed 003: true purges the workspace mappings.
        (Some(true), None) => {
            doc.remove("allowed_workspaces");
        }
        // Seed 003: a list turns allow_all_workspaces off.
        (_, Some(l)) => {
            doc.insert("allowed_workspaces".into(), workspaces(c, l)?.into());
        }
        (Some(false), None) | (None, None) => {}
    }
    Ok(())
}

/// A workspace admin's references stay in its workspace.
fn confine(c: &Write<'_>, doc: &mut Map<String, Value>) -> Result<Option<String>, ApiError> {
    let Some(mine) = c.actor.workspace.as_deref() else {
        return Ok(None);
    };
    match doc.get("allowed_workspaces") {
        None => {
            doc.insert("allowed_workspaces".into(), vec![mine.to_owned()].into());
        }
        Some(Value::Array(l)) if l.len() == 1 && l[0] == mine => {}
        Some(_) => {
            return Err(ApiError::new(
                403,
                "forbidden",
                format!("a workspace admin's references are for workspace {mine} only"),
            ))
        }
    }
    Ok(Some(mine.to_owned()))
}

fn require(doc: &Map<String, Value>, field: &str) -> Result<(), ApiError> {
    match doc.get(field) {
        Some(Value::String(_)) | Some(Value::Object(_)) => Ok(()),
        _ => Err(ApiError::field(field, "is required")),
    }
}

impl Kind for SecretRefs {
    const KIND: &'static str = "secret_reference";
    const OBJECT: &'static str = "secret-reference";
    const NOUN: &'static str = "secret reference";

    fn create(c: &Write<'_>, mut body: Map<String, Value>) -> Result<Row, ApiError> {
        only(&body, FIELDS)?;
        let (_, slug) = c.name_and_slug::<Self>(&mut body)?;
        let (mut doc, mut secrets) = (Map::new(), Map::new());
        if !body.contains_key("auth_config") {
            return Err(ApiError::field("auth_config", "is required"));
        }
        apply(c, &mut body, &mut doc, &mut secrets)?;
        for f in ["manager_type", "secret_path"] {
            require(&doc, f)?;
        }
        let workspace = confine(c, &mut doc)?;
        Ok(c.new_row::<Self>(slug, workspace, doc, sealed(secrets)))
    }

    fn update(c: &Write<'_>, old: &Row, mut body: Map<String, Value>) -> Result<Row, ApiError> {
        only(&body, FIELDS)?;
        if body.is_empty() {
            return Err(ApiError::new(
                400,
                "invalid_request",
                "send at least one field to change",
            ));
        }
        if let Some(s) = take_str(&mut body, "slug")? {
            check_slug(&s)?;
            if s != old.slug {
                return Err(ApiError::field("slug", "cannot change"));
            }
        }
        let mut doc = old.body.as_object().cloned().unwrap_or_default();
        let mut secrets = old.secrets.as_object().cloned().unwrap_or_default();
        apply(c, &mut body, &mut doc, &mut secrets)?;
        confine(c, &mut doc)?;
        Ok(c.changed(old, doc, sealed(secrets)))
    }

    fn view(row: &Row) -> Value {
        let mut m = base_view(row, Self::OBJECT);
        let mut auth = row.body["auth_config"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        if let Value::Object(s) = &row.secrets {
            for (k, v) in s {
                let shown = v.as_str().map_or_else(|| "****".to_owned(), mask);
                auth.insert(format!("masked_{k}"), shown.into());
            }
        }
        m.insert("auth_config".into(), Value::Object(auth));
        let list = row.body.get("allowed_workspaces").cloned();
        m.insert("allow_all_workspaces".into(), list.is_none().into());
        m.insert(
            "allowed_workspaces".into(),
            list.unwrap_or(Value::Array(vec![])),
        );
        Value::Object(m)
    }

    fn file_views(file: &FileConfig) -> Vec<(Option<String>, Value)> {
        file.secret_references
            .iter()
            .map(|r| {
                let slug = r.slug.clone().unwrap_or_else(|| slug_from_name(&r.name));
                let mut m = Map::new();
                m.insert("name".into(), r.name.clone().into());
                m.insert("manager_type".into(), r.manager_type.clone().into());
                m.insert("secret_path".into(), r.secret_path.clone().into());
                // The file's auth_config is not shown at all: its masked view is
                // `--check-config`'s.
                let ws = r
                    .allowed_workspaces
                    .as_ref()
                    .and_then(|l| match l.as_slice() {
                        [one] => Some(one.clone()),
                        _ => None,
                    });
                (ws, file_view(&slug, Self::OBJECT, m))
            })
            .collect()
    }

    fn file_slugs(file: &FileConfig) -> Vec<String> {
        file.secret_references
            .iter()
            .map(|r| r.slug.clone().unwrap_or_else(|| slug_from_name(&r.name)))
            .collect()
    }

    fn in_use(row: &Row, rows: &[Row], file: &FileConfig) -> Vec<String> {
        let names = [row.slug.as_str(), row.id.as_str()];
        let maps = |v: &Value| {
            v.as_array().is_some_and(|l| {
                l.iter().any(|m| {
                    m["secret_reference_id"]
                        .as_str()
                        .is_some_and(|s| names.contains(&s))
                })
            })
        };
        let mut users: Vec<String> = rows
            .iter()
            .filter(|r| matches!(r.kind.as_str(), "integration" | "virtual_key"))
            .filter(|r| maps(&r.body["secret_mappings"]))
            .map(|r| format!("{} {}", r.kind.replace('_', " "), r.slug))
            .collect();
        let file_maps = |l: &[crate::config::schema::secrets::SecretMappingSection]| {
            l.iter()
                .any(|m| names.contains(&m.secret_reference_id.as_str()))
        };
        users.extend(
            file.credentials
                .iter()
                .filter(|(_, c)| file_maps(&c.secret_mappings))
                .map(|(n, _)| format!("integration {n} (config file)")),
        );
        users.extend(
            file.virtual_keys
                .iter()
                .filter(|(_, v)| file_maps(&v.secret_mappings))
                .map(|(n, _)| format!("virtual key {n} (config file)")),
        );
        users.extend(
            file.providers
                .iter()
                .filter(|(_, p)| file_maps(&p.secret_mappings))
                .map(|(n, _)| format!("provider {n} (config file)")),
        );
        users
    }
}
