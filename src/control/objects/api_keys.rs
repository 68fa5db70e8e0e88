//! Gateway API keys (`/v1/api-keys`, seed 004): created with `POST /v1/api-keys/{type}/{sub-type}`
//! (`organisation` or `workspace`; `service` or `user`), returned once in full and stored only
//! as a SHA-256 hash; shown afterwards as their first characters. A role (`owner`, `admin`,
//! `member`), a workspace (none for organisation keys), provider and model allow-lists, an
//! expiry. Deleting or revoking one takes effect on every instance with the next snapshot.

use serde_json::{json, Map, Value};

use super::{
    base_view, check_len, file_view, find, keep_identity, new_id, only, required_str, take_bool,
    take_str, take_strings, Kind, Write,
};
use crate::auth::keys::new_key;
use crate::auth::Role;
use crate::config::FileConfig;
use crate::control::http::ApiError;
use crate::store::Row;

pub struct ApiKeys;

const FIELDS: &[&str] = &[
    "name",
    "description",
    "workspace_id",
    "workspace",
    "role",
    "scopes",
    "expires_at",
    "allowed_providers",
    "allowed_models",
    "virtual_key",
    "revoked",
    // Portkey's, accepted and not used by keyway.
    "id",
    "type",
    "sub-type",
    "user_id",
    "rate_limits",
    "usage_limits",
    "defaults",
    "alert_emails",
    "rotation_policy",
];

/// Portkey's fields keyway accepts and does not use.
const UNUSED: &[&str] = &[
    "type",
    "sub-type",
    "id",
    "user_id",
    "rate_limits",
    "usage_limits",
    "defaults",
];

/// Refuses unknown fields, drops the unused ones.
fn accepted(body: &mut Map<String, Value>) -> Result<(), ApiError> {
    only(body, FIELDS)?;
    for f in UNUSED {
        body.remove(*f);
    }
    Ok(())
}

/// `{type}/{sub-type}` of the create path.
pub fn kind_of_path(kind: &str, sub: &str) -> Result<bool, ApiError> {
    let organisation = match kind {
        "organisation" => true,
        "workspace" => false,
        _ => return Err(ApiError::field("type", "must be organisation or workspace")),
    };
    match sub {
        "service" | "user" => Ok(organisation),
        _ => Err(ApiError::field("sub-type", "must be service or user")),
    }
}

fn role(body: &mut Map<String, Value>, default: Role) -> Result<Role, ApiError> {
    match take_str(body, "role")? {
        None => Ok(default),
        Some(r) => r
            .to_ascii_lowercase()
            .parse::<Role>()
            .map_err(|m| ApiError::field("role", m)),
    }
}

fn expiry(body: &mut Map<String, Value>, doc: &mut Map<String, Value>) -> Result<(), ApiError> {
    if body.contains_key("expires_at") {
        let v = take_str(body, "expires_at")?;
        if let Some(t) = &v {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .map_err(|_| ApiError::field("expires_at", "must be an RFC 3339 time"))?;
        }
        doc.insert("expires_at".into(), v.into());
    }
    Ok(())
}

fn lists(body: &mut Map<String, Value>, doc: &mut Map<String, Value>) -> Result<(), ApiError> {
    for f in ["allowed_providers", "allowed_models", "scopes"] {
        if body.contains_key(f) {
            doc.insert(f.into(), take_strings(body, f)?.into());
        }
    }
    if let Some(d) = take_str(body, "description")? {
        check_len("description", &d, 1024)?;
        doc.insert("description".into(), d.into());
    }
    Ok(())
}

fn name_taken(c: &Write<'_>, name: &str, except: Option<&str>) -> bool {
    c.file.api_keys.iter().any(|k| k.name == name)
        || c.rows.iter().any(|r| {
            r.kind == ApiKeys::KIND && r.body["name"] == name && Some(r.id.as_str()) != except
        })
}

impl ApiKeys {
    /// A create: the row and the key to show once.
    pub fn create_key(
        c: &Write<'_>,
        organisation: bool,
        mut body: Map<String, Value>,
    ) -> Result<(Row, String), ApiError> {
        accepted(&mut body)?;
        let name = required_str(&mut body, "name", 255)?;
        if name_taken(c, &name, None) {
            return Err(ApiError::conflict(format!(
                "an API key named '{name}' exists"
            )));
        }
        let workspace = match organisation {
            true => {
                if c.actor.workspace.is_some() {
                    return Err(ApiError::new(
                        403,
                        "forbidden",
                        "only organisation owners and admins make organisation keys",
                    ));
                }
                for f in ["workspace_id", "workspace"] {
                    if take_str(&mut body, f)?.is_some() {
                        return Err(ApiError::field(f, "organisation keys have no workspace"));
                    }
                }
                None
            }
            false => c.workspace(&mut body, "workspace_id", true)?,
        };
        let default = if organisation {
            Role::Admin
        } else {
            Role::Member
        };
        let role = role(&mut body, default)?;
        if role == Role::Owner && c.actor.role != Role::Owner {
            return Err(ApiError::new(
                403,
                "forbidden",
                "only owners make owner keys",
            ));
        }
        let (key, hash) = new_key();
        let mut doc = Map::new();
        doc.insert("name".into(), name.into());
        doc.insert("role".into(), role.as_str().into());
        doc.insert("hash".into(), hash.into());
        doc.insert(
            "key_prefix".into(),
            key.chars().take(7).collect::<String>().into(),
        );
        doc.insert(
            "type".into(),
            match organisation {
                true => "organisation-service",
                false => "workspace-service",
            }
            .into(),
        );
        doc.insert("revoked".into(), false.into());
        lists(&mut body, &mut doc)?;
        expiry(&mut body, &mut doc)?;
        if let Some(vk) = take_str(&mut body, "virtual_key")? {
            doc.insert("virtual_key".into(), vk.into());
        }
        take_bool(&mut body, "revoked")?;
        let id = new_id();
        let row = Row {
            kind: Self::KIND.into(),
            slug: id.clone(),
            id,
            workspace,
            body: Value::Object(doc),
            secrets: Value::Null,
            created_at: c.now.into(),
            updated_at: c.now.into(),
            version: 0,
        };
        Ok((row, key))
    }
}

impl Kind for ApiKeys {
    const KIND: &'static str = "api_key";
    const OBJECT: &'static str = "api-key";
    const NOUN: &'static str = "API key";

    fn create(c: &Write<'_>, body: Map<String, Value>) -> Result<Row, ApiError> {
        Self::create_key(c, c.actor.workspace.is_none(), body).map(|(r, _)| r)
    }

    fn update(c: &Write<'_>, old: &Row, mut body: Map<String, Value>) -> Result<Row, ApiError> {
        accepted(&mut body)?;
        let mut doc = old.body.as_object().cloned().unwrap_or_default();
        if let Some(n) = take_str(&mut body, "name")? {
            check_len("name", &n, 255)?;
            if name_taken(c, &n, Some(&old.id)) {
                return Err(ApiError::conflict(format!("an API key named '{n}' exists")));
            }
            doc.insert("name".into(), n.into());
        }
        if body.contains_key("role") {
            let r = role(&mut body, Role::Member)?;
            if r == Role::Owner && c.actor.role != Role::Owner {
                return Err(ApiError::new(
                    403,
                    "forbidden",
                    "only owners make owner keys",
                ));
            }
            doc.insert("role".into(), r.as_str().into());
        }
        if old.body["role"] == "owner" && c.actor.role != Role::Owner {
            return Err(ApiError::new(
                403,
                "forbidden",
                "only owners change owner keys",
            ));
        }
        if let Some(r) = take_bool(&mut body, "revoked")? {
            doc.insert("revoked".into(), r.into());
        }
        keep_identity(&mut body, old, "key")?;
        lists(&mut body, &mut doc)?;
        expiry(&mut body, &mut doc)?;
        if body.contains_key("virtual_key") {
            doc.insert(
                "virtual_key".into(),
                take_str(&mut body, "virtual_key")?.into(),
            );
        }
        Ok(c.changed(old, doc, old.secrets.clone()))
    }

    fn view(row: &Row) -> Value {
        let mut m = base_view(row, Self::OBJECT);
        let prefix = m
            .remove("key_prefix")
            .and_then(|p| p.as_str().map(str::to_owned));
        m.remove("hash");
        m.insert("key".into(), prefix.map(|p| format!("{p}********")).into());
        let revoked = row.body["revoked"] == true;
        let expired = row.body["expires_at"].as_str().is_some_and(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .is_ok_and(|t| t <= time::OffsetDateTime::now_utc())
        });
        let status = match (revoked, expired) {
            (true, _) => "revoked",
            (_, true) => "expired",
            _ => "active",
        };
        m.insert("status".into(), status.into());
        Value::Object(m)
    }

    fn file_views(file: &FileConfig) -> Vec<(Option<String>, Value)> {
        file.api_keys
            .iter()
            .map(|k| {
                let mut m = Map::new();
                m.insert("name".into(), k.name.clone().into());
                m.insert(
                    "role".into(),
                    k.role.clone().unwrap_or("member".into()).into(),
                );
                m.insert("workspace_id".into(), json!(k.workspace));
                m.insert("revoked".into(), k.revoked.into());
                (k.workspace.clone(), file_view(&k.name, Self::OBJECT, m))
            })
            .collect()
    }

    fn file_slugs(_file: &FileConfig) -> Vec<String> {
        Vec::new()
    }
}

/// The key row named by `id` (id only: keys have no slug of their own).
pub fn by_id<'r>(rows: &'r [Row], id: &str) -> Option<&'r Row> {
    find(rows, ApiKeys::KIND, id)
}
