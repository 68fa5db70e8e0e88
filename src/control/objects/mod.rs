//! The objects of the admin API. Each kind says how a request body becomes a stored row (its
//! sensitive fields apart, to be sealed), how a row is shown (masked), which objects of the
//! config file it lists read-only, and what keeps a row from being deleted. `config::stored` turns
//! the rows into the config file's shapes, so the same validation covers both.

pub mod api_keys;
pub mod configs;
pub mod integrations;
pub mod secret_refs;
pub mod virtual_keys;
pub mod workspaces;

use serde_json::{Map, Value};

use super::http::ApiError;
use super::rbac::Actor;
use crate::config::FileConfig;
use crate::store::Row;

/// A kind of object.
pub trait Kind {
    /// The row's `kind` column.
    const KIND: &'static str;
    /// The `object` field of its answers (`virtual-key`).
    const OBJECT: &'static str;
    /// What to call it in messages.
    const NOUN: &'static str;

    /// A new row from a create body. `rows` is the store as of this write.
    fn create(c: &Write<'_>, body: Map<String, Value>) -> Result<Row, ApiError>;

    /// The row after an update body (only the fields sent change).
    fn update(c: &Write<'_>, old: &Row, body: Map<String, Value>) -> Result<Row, ApiError>;

    /// The row as the API shows it, sensitive fields masked.
    fn view(row: &Row) -> Value;

    /// The config file's objects of this kind, shown read-only: (owning workspace, view).
    fn file_views(file: &FileConfig) -> Vec<(Option<String>, Value)>;

    /// The slugs the config file already uses for this kind.
    fn file_slugs(file: &FileConfig) -> Vec<String>;

    /// What still uses `row` (a delete is refused while anything does).
    fn in_use(_row: &Row, _rows: &[Row], _file: &FileConfig) -> Vec<String> {
        Vec::new()
    }
}

/// Everything a write decides with.
pub struct Write<'a> {
    pub actor: &'a Actor,
    pub rows: &'a [Row],
    pub file: &'a FileConfig,
    pub now: &'a str,
}

impl Write<'_> {
    /// A new row of `K`: a fresh id, created and updated now.
    pub fn new_row<K: Kind>(
        &self,
        slug: String,
        workspace: Option<String>,
        body: Map<String, Value>,
        secrets: Value,
    ) -> Row {
        Row {
            kind: K::KIND.into(),
            id: new_id(),
            slug,
            workspace,
            body: Value::Object(body),
            secrets,
            created_at: self.now.into(),
            updated_at: self.now.into(),
            version: 0,
        }
    }

    /// `old` with a new body and sealed fields, updated now.
    pub fn changed(&self, old: &Row, body: Map<String, Value>, secrets: Value) -> Row {
        Row {
            body: Value::Object(body),
            secrets,
            updated_at: self.now.into(),
            ..old.clone()
        }
    }

    /// The `name` a create must have (kept in `body` for the fields that follow) and the slug
    /// it gets: the one given, or one made from the name.
    pub fn name_and_slug<K: Kind>(
        &self,
        body: &mut Map<String, Value>,
    ) -> Result<(String, String), ApiError> {
        let name = required_str(body, "name", 255)?;
        body.insert("name".into(), name.clone().into());
        let slug = self.new_slug::<K>(take_str(body, "slug")?, &name)?;
        Ok((name, slug))
    }

    /// The row of `kind` named by `id_or_slug`.
    pub fn find(&self, kind: &str, id_or_slug: &str) -> Option<&Row> {
        find(self.rows, kind, id_or_slug)
    }

    /// The workspace a new object of a workspace admin goes to, or the one an organisation
    /// admin names (`field`); checked to exist and to be the actor's.
    pub fn workspace(
        &self,
        body: &mut Map<String, Value>,
        field: &str,
        required: bool,
    ) -> Result<Option<String>, ApiError> {
        let named = take_str(body, field)?.or(take_str(body, "workspace")?);
        let ws = match (named, &self.actor.workspace) {
            (Some(w), _) => Some(w),
            (None, Some(mine)) => Some(mine.to_string()),
            (None, None) if required => {
                return Err(ApiError::field(
                    field,
                    "is required (the owning workspace's slug)",
                ))
            }
            (None, None) => None,
        };
        // Named by slug or (a stored one) by id; kept as its slug.
        let ws = match ws {
            None => None,
            Some(w) if self.file.workspaces.contains_key(&w) => Some(w),
            Some(w) => match find(self.rows, "workspace", &w) {
                Some(r) => Some(r.slug.clone()),
                None => return Err(ApiError::field(field, format!("no workspace '{w}'"))),
            },
        };
        self.actor.check(ws.as_deref())?;
        Ok(ws)
    }

    /// A slug for a new object: the one given (checked) or one made from `name`; refused when
    /// the store or the config file has it already.
    pub fn new_slug<K: Kind>(&self, given: Option<String>, name: &str) -> Result<String, ApiError> {
        let slug = match given {
            Some(s) => {
                check_slug(&s)?;
                s
            }
            None => {
                let s = crate::config::secrets::slug_from_name(name);
                if s.is_empty() {
                    return Err(ApiError::field(
                        "slug",
                        "cannot be made from the name; give a slug matching ^[a-zA-Z0-9_-]+$",
                    ));
                }
                s
            }
        };
        if K::file_slugs(self.file).contains(&slug) {
            return Err(ApiError::conflict(format!(
                "{} slug '{slug}' is declared in the config file",
                K::NOUN
            )));
        }
        if self
            .rows
            .iter()
            .any(|r| r.kind == K::KIND && r.slug == slug)
        {
            return Err(ApiError::conflict(format!(
                "a {} with slug '{slug}' already exists",
                K::NOUN
            )));
        }
        Ok(slug)
    }
}

pub fn find<'r>(rows: &'r [Row], kind: &str, id_or_slug: &str) -> Option<&'r Row> {
    rows.iter()
        .find(|r| r.kind == kind && (r.id == id_or_slug || r.slug == id_or_slug))
}

/// A new object id (a UUID, as Portkey's).
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub fn check_slug(s: &str) -> Result<(), ApiError> {
    let ok = (1..=255).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    match ok {
        true => Ok(()),
        false => Err(ApiError::field(
            "slug",
            "must match ^[a-zA-Z0-9_-]+$ (1 to 255 characters)",
        )),
    }
}

/// Refuses any field outside `known` (keyway's and the Portkey fields it accepts and ignores).
pub fn only(body: &Map<String, Value>, known: &[&str]) -> Result<(), ApiError> {
    match body.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(ApiError::field(k, "unknown field")),
        None => Ok(()),
    }
}

/// Removes and returns a string field; `null` counts as absent, another type is refused.
pub fn take_str(body: &mut Map<String, Value>, field: &str) -> Result<Option<String>, ApiError> {
    match body.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::field(field, "must be a string")),
    }
}

/// A required string, trimmed non-empty, at most `max` characters.
pub fn required_str(
    body: &mut Map<String, Value>,
    field: &str,
    max: usize,
) -> Result<String, ApiError> {
    let v = take_str(body, field)?.ok_or_else(|| ApiError::field(field, "is required"))?;
    check_len(field, &v, max)?;
    Ok(v)
}

pub fn check_len(field: &str, v: &str, max: usize) -> Result<(), ApiError> {
    let n = v.chars().count();
    match n >= 1 && n <= max && !v.trim().is_empty() {
        true => Ok(()),
        false => Err(ApiError::field(
            field,
            format!("must be 1 to {max} characters"),
        )),
    }
}

/// An optional list of strings.
pub fn take_strings(
    body: &mut Map<String, Value>,
    field: &str,
) -> Result<Option<Vec<String>>, ApiError> {
    match body.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) if !s.is_empty() => Ok(s),
                _ => Err(ApiError::field(
                    field,
                    "must be a list of non-empty strings",
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(ApiError::field(field, "must be a list of strings")),
    }
}

pub fn take_bool(body: &mut Map<String, Value>, field: &str) -> Result<Option<bool>, ApiError> {
    match body.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(_) => Err(ApiError::field(field, "must be true or false")),
    }
}

/// Refuses an update that would change the object's slug or owning workspace (make a new one).
pub fn keep_identity(body: &mut Map<String, Value>, old: &Row, noun: &str) -> Result<(), ApiError> {
    if take_str(body, "slug")?.is_some_and(|s| s != old.slug) {
        return Err(ApiError::field("slug", "cannot change"));
    }
    for f in ["workspace_id", "workspace"] {
        if take_str(body, f)?.is_some_and(|w| Some(&w) != old.workspace.as_ref()) {
            return Err(ApiError::field(
                f,
                format!("cannot change; make a new {noun}"),
            ));
        }
    }
    Ok(())
}

/// Sensitive fields as stored: `Null` when there are none.
pub fn sealed(secrets: Map<String, Value>) -> Value {
    match secrets.is_empty() {
        true => Value::Null,
        false => Value::Object(secrets),
    }
}

/// `masked_key` for a row with a provider key of its own.
pub fn mask_key(row: &Row, view: &mut Map<String, Value>) {
    if let Some(k) = row.secrets["key"].as_str() {
        view.insert("masked_key".into(), crate::config::secrets::mask(k).into());
    }
}

/// The common part of every view.
pub fn base_view(row: &Row, object: &str) -> Map<String, Value> {
    let mut m = match &row.body {
        Value::Object(b) => b.clone(),
        _ => Map::new(),
    };
    m.insert("id".into(), row.id.clone().into());
    m.insert("slug".into(), row.slug.clone().into());
    m.insert("workspace_id".into(), row.workspace.clone().into());
    m.insert("created_at".into(), row.created_at.clone().into());
    m.insert("last_updated_at".into(), row.updated_at.clone().into());
    m.insert("object".into(), object.into());
    m.insert("source".into(), "api".into());
    m
}

/// A config file object's view: read-only.
pub fn file_view(slug: &str, object: &str, mut fields: Map<String, Value>) -> Value {
    fields.insert("id".into(), slug.into());
    fields.insert("slug".into(), slug.into());
    fields.insert("object".into(), object.into());
    fields.insert("source".into(), "file".into());
    fields.insert("read_only".into(), true.into());
    Value::Object(fields)
}
