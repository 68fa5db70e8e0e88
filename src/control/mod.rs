//! The control plane: Portkey's admin API over the shared store, so a fleet of keyway instances
//! is managed live. Paths and shapes are Portkey's (`/v1/secret-references`, `/v1/integrations`,
//! `/v1/virtual-keys`, `/v1/api-keys`, `/v1/admin/workspaces`, `/v1/configs`), plus
//! `/v1/audit-logs`. Every write is one store transaction that re-validates the whole
//! configuration (the file's objects and the stored ones together) before anything is written,
//! appends an audit entry, and is live on this instance when the answer goes out (on the others
//! within a second, through the reloader's store watch). Objects of the config file are listed
//! read-only and keep their slugs.

pub mod http;
pub mod objects;
pub mod rbac;

use std::sync::Arc;

use arc_swap::ArcSwap;
use serde_json::{json, Map, Value};

use self::http::{list, object, query_param, AdminRequest, AdminResponse, ApiError};
use self::objects::api_keys::ApiKeys;
use self::objects::configs::Configs;
use self::objects::integrations::Integrations;
use self::objects::secret_refs::SecretRefs;
use self::objects::virtual_keys::VirtualKeys;
use self::objects::workspaces::Workspaces;
use self::objects::{find, Kind, Write};
use self::rbac::Actor;
use crate::config::ConfigError;
use crate::metrics::Metrics;
use crate::reload::Reloader;
use crate::runtime::Runtime;
use crate::store::{now, Audit, Mutation, Row};

/// Largest admin request body.
pub const MAX_BODY: usize = 256 * 1024;

pub struct ControlPlane {
    pub runtime: Arc<ArcSwap<Runtime>>,
    pub reloader: Arc<Reloader>,
    pub metrics: Arc<Metrics>,
}

/// What an admin request is about; also the `route` metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    SecretReferences,
    Integrations,
    VirtualKeys,
    ApiKeys,
    Workspaces,
    Configs,
    AuditLogs,
}

impl Resource {
    pub const ALL: [Resource; 7] = [
        Resource::SecretReferences,
        Resource::Integrations,
        Resource::VirtualKeys,
        Resource::ApiKeys,
        Resource::Workspaces,
        Resource::Configs,
        Resource::AuditLogs,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Resource::SecretReferences => "secret-references",
            Resource::Integrations => "integrations",
            Resource::VirtualKeys => "virtual-keys",
            Resource::ApiKeys => "api-keys",
            Resource::Workspaces => "workspaces",
            Resource::Configs => "configs",
            Resource::AuditLogs => "audit-logs",
        }
    }
}

/// The resource and the rest of the path (`id`, or `type/sub-type`) of an admin path, with or
/// without the `/v1` prefix; `None` for paths the admin API does not serve.
pub fn resource(path: &str) -> Option<(Resource, Vec<&str>)> {
    let p = path.strip_prefix("/v1").unwrap_or(path);
    let p = p.trim_end_matches('/');
    let (res, rest) = [
        ("/secret-references", Resource::SecretReferences),
        ("/integrations", Resource::Integrations),
        ("/virtual-keys", Resource::VirtualKeys),
        ("/api-keys", Resource::ApiKeys),
        ("/admin/workspaces", Resource::Workspaces),
        ("/workspaces", Resource::Workspaces),
        ("/configs", Resource::Configs),
        ("/audit-logs", Resource::AuditLogs),
    ]
    .iter()
    .find_map(|(prefix, r)| {
        let rest = p.strip_prefix(prefix)?;
        (rest.is_empty() || rest.starts_with('/')).then_some((*r, rest))
    })?;
    let parts = rest.split('/').filter(|s| !s.is_empty()).collect();
    Some((res, parts))
}

impl ControlPlane {
    /// Serves one admin request; counted by resource and outcome.
    pub async fn handle(&self, req: AdminRequest) -> AdminResponse {
        let res = resource(&req.path);
        let answer = match res {
            None => Err(ApiError::not_found("such admin API path")),
            Some((r, ref parts)) => self.serve(&req, r, parts).await,
        };
        let resp = answer.unwrap_or_else(|e| e.response());
        let route = res.map_or("other", |(r, _)| r.as_str());
        self.metrics.admin_request(route, resp.status);
        resp
    }

    async fn serve(
        &self,
        req: &AdminRequest,
        res: Resource,
        parts: &[&str],
    ) -> Result<AdminResponse, ApiError> {
        let rt = self.runtime.load_full();
        let actor = rbac::actor(&rt.auth, &req.headers).await?;
        let q = req.query.as_deref();
        let m = &req.method;
        use ::http::Method;
        match (res, m, parts) {
            (Resource::AuditLogs, &Method::GET, []) => self.audit(&actor, q).await,
            (Resource::ApiKeys, &Method::POST, [kind, sub]) => {
                let organisation = objects::api_keys::kind_of_path(kind, sub)?;
                self.create_key(&actor, organisation, object(&req.body)?)
                    .await
            }
            (Resource::SecretReferences, ..) => self.crud::<SecretRefs>(&actor, req, parts).await,
            (Resource::Integrations, ..) => self.crud::<Integrations>(&actor, req, parts).await,
            (Resource::VirtualKeys, ..) => self.crud::<VirtualKeys>(&actor, req, parts).await,
            (Resource::ApiKeys, ..) => self.crud::<ApiKeys>(&actor, req, parts).await,
            (Resource::Workspaces, &Method::DELETE, []) => {
                // The SDK's admin.workspaces.delete sends the id in the body.
                let id = object(&req.body)?
                    .get("workspace_id")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| ApiError::field("workspace_id", "is required"))?;
                self.delete::<Workspaces>(&actor, &id).await
            }
            (Resource::Workspaces, ..) => self.crud::<Workspaces>(&actor, req, parts).await,
            (Resource::Configs, ..) => self.crud::<Configs>(&actor, req, parts).await,
            _ => Err(ApiError::new(
                405,
                "method_not_allowed",
                "method not allowed here",
            )),
        }
    }

    async fn crud<K: Kind>(
        &self,
        actor: &Actor,
        req: &AdminRequest,
        parts: &[&str],
    ) -> Result<AdminResponse, ApiError> {
        use ::http::Method;
        match (&req.method, parts) {
            (&Method::GET, []) => {
                self.reloader.catch_up().await;
                self.list::<K>(actor, req.query.as_deref())
            }
            (&Method::POST, []) => self.create::<K>(actor, object(&req.body)?).await,
            (&Method::GET, [id]) => {
                self.reloader.catch_up().await;
                self.get::<K>(actor, id)
            }
            (&Method::PUT, [id]) | (&Method::PATCH, [id]) => {
                self.update::<K>(actor, id, object(&req.body)?).await
            }
            (&Method::DELETE, [id]) => self.delete::<K>(actor, id).await,
            _ => Err(ApiError::new(
                405,
                "method_not_allowed",
                "method not allowed here",
            )),
        }
    }

    /// The store's rows as of the last snapshot this instance loaded.
    fn rows(&self) -> Arc<Vec<Row>> {
        self.reloader.rows()
    }

    fn list<K: Kind>(&self, actor: &Actor, q: Option<&str>) -> Result<AdminResponse, ApiError> {
        let rows = self.rows();
        let file = self.reloader.file();
        // A workspace named by id is filtered by its slug.
        let filter = query_param(q, &["workspace_id"])
            .filter(|w| !w.is_empty())
            .map(|w| find(&rows, "workspace", &w).map_or(w, |r| r.slug.clone()));
        let filter = filter.as_deref();
        // `name` (the SDK's workspaces.list): a case-insensitive substring, or the exact name
        // with `exact_name=true`.
        let name = query_param(q, &["name"]).filter(|n| !n.is_empty());
        let exact = query_param(q, &["exact_name"]).is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let named = |v: &Value| match (&name, v["name"].as_str().or(v["slug"].as_str())) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(want), Some(n)) if exact => n == want,
            (Some(want), Some(n)) => n.to_lowercase().contains(&want.to_lowercase()),
        };
        let stored = rows
            .iter()
            .filter(|r| r.kind == K::KIND && actor.may_touch(r.workspace.as_deref()))
            .filter(|r| filter.is_none() || r.workspace.as_deref() == filter)
            .map(K::view);
        let declared = K::file_views(&file)
            .into_iter()
            .filter(|(w, _)| actor.may_touch(w.as_deref()))
            .filter(|(w, _)| filter.is_none() || w.as_deref() == filter)
            .map(|(_, v)| v);
        list(declared.chain(stored).filter(|v| named(v)).collect(), q)
    }

    fn get<K: Kind>(&self, actor: &Actor, id: &str) -> Result<AdminResponse, ApiError> {
        let rows = self.rows();
        if let Some(r) = find(&rows, K::KIND, id) {
            actor.check(r.workspace.as_deref())?;
            return Ok(AdminResponse::ok(K::view(r)));
        }
        K::file_views(&self.reloader.file())
            .into_iter()
            .find(|(w, v)| v["slug"] == id && actor.may_touch(w.as_deref()))
            .map(|(_, v)| AdminResponse::ok(v))
            .ok_or_else(|| ApiError::not_found(K::NOUN))
    }

    async fn create<K: Kind>(
        &self,
        actor: &Actor,
        body: Map<String, Value>,
    ) -> Result<AdminResponse, ApiError> {
        self.write(actor, "create", |w| {
            let row = K::create(w, body)?;
            let view = K::view(&row);
            Ok((vec![Mutation::Put(row.clone())], None, Some(row), view))
        })
        .await
    }

    async fn create_key(
        &self,
        actor: &Actor,
        organisation: bool,
        body: Map<String, Value>,
    ) -> Result<AdminResponse, ApiError> {
        self.write(actor, "create", |w| {
            let (row, key) = ApiKeys::create_key(w, organisation, body)?;
            let mut view = ApiKeys::view(&row);
            // The key itself, this once.
            view["key"] = key.into();
            Ok((vec![Mutation::Put(row.clone())], None, Some(row), view))
        })
        .await
    }

    async fn update<K: Kind>(
        &self,
        actor: &Actor,
        id: &str,
        body: Map<String, Value>,
    ) -> Result<AdminResponse, ApiError> {
        let id = id.to_owned();
        self.write(actor, "update", move |w| {
            let old = existing::<K>(w, &id)?.clone();
            let new = K::update(w, &old, body)?;
            let view = K::view(&new);
            Ok((vec![Mutation::Put(new.clone())], Some(old), Some(new), view))
        })
        .await
    }

    async fn delete<K: Kind>(&self, actor: &Actor, id: &str) -> Result<AdminResponse, ApiError> {
        let id = id.to_owned();
        self.write(actor, "delete", move |w| {
            let old = existing::<K>(w, &id)?.clone();
            let users = K::in_use(&old, w.rows, w.file);
            if !users.is_empty() {
                return Err(ApiError::conflict(format!(
                    "{} '{}' is in use by {}; remove those first",
                    K::NOUN,
                    old.slug,
                    users.join(", ")
                )));
            }
            let m = Mutation::Delete {
                kind: old.kind.clone(),
                id: old.id.clone(),
            };
            let view =
                json!({"id": old.id, "slug": old.slug, "object": K::OBJECT, "deleted": true});
            Ok((vec![m], Some(old), None, view))
        })
        .await
    }

    /// One write: `change` decides (before, after) from the rows as of this transaction; the
    /// whole configuration is validated with the change applied, the change and its audit
    /// entry written together, and the new snapshot made live here before the answer.
    async fn write<F>(
        &self,
        actor: &Actor,
        action: &str,
        change: F,
    ) -> Result<AdminResponse, ApiError>
    where
        F: FnOnce(&Write<'_>) -> Result<Change, ApiError>,
    {
        let store = self
            .reloader
            .store()
            .ok_or_else(|| ApiError::unavailable("the store is not reachable; try again later"))?;
        let file = self.reloader.file();
        let env = self.reloader.env().clone();
        let stamp = now();
        let outcome = store
            .write(|rows, _version| {
                let w = Write {
                    actor,
                    rows,
                    file: &file,
                    now: &stamp,
                };
                let (mutations, before, after, view) = change(&w)?;
                let next = apply(rows, &mutations);
                let sections = crate::config::stored::try_sections(&next)
                    .map_err(|m| ApiError::new(400, "invalid_configuration", m))?;
                crate::config::validate_merged(&file, sections, &env).map_err(config_error)?;
                let subject = after.as_ref().or(before.as_ref());
                let audit = Audit {
                    actor: actor.name.clone(),
                    action: action.to_owned(),
                    kind: subject.map(|r| r.kind.clone()).unwrap_or_default(),
                    slug: subject.map(|r| r.slug.clone()).unwrap_or_default(),
                    workspace: subject.and_then(|r| r.workspace.clone()),
                    before: before.as_ref().map(audit_view),
                    after: after.as_ref().map(audit_view),
                };
                Ok((mutations, audit, view))
            })
            .await
            .map_err(|e| {
                self.metrics.store_error("write");
                log::warn!("admin API: {e}");
                ApiError::unavailable("the store is not reachable; try again later")
            })?;
        let (version, view) = outcome?;
        self.reloader.reload_store(version, "admin API").await;
        Ok(AdminResponse::ok(view))
    }

    async fn audit(&self, actor: &Actor, q: Option<&str>) -> Result<AdminResponse, ApiError> {
        let store = self
            .reloader
            .store()
            .ok_or_else(|| ApiError::unavailable("the store is not reachable; try again later"))?;
        let (offset, limit) = http::page(q)?;
        let (total, entries) = store
            .audit(actor.workspace.as_deref(), offset as i64, limit as i64)
            .await
            .map_err(|e| {
                self.metrics.store_error("audit");
                ApiError::unavailable(e.to_string())
            })?;
        Ok(AdminResponse::ok(
            json!({"object": "list", "total": total, "data": entries}),
        ))
    }
}

/// (mutations, row before, row after, the answer's body).
type Change = (Vec<Mutation>, Option<Row>, Option<Row>, Value);

/// The stored row `id` names, or why not: 404, or 403 for a config file object (read-only)
/// or another workspace's.
fn existing<'r, K: Kind>(w: &'r Write<'_>, id: &str) -> Result<&'r Row, ApiError> {
    match w.find(K::KIND, id) {
        Some(r) => {
            w.actor.check(r.workspace.as_deref())?;
            Ok(r)
        }
        None if K::file_slugs(w.file).iter().any(|s| s == id) => Err(ApiError::new(
            403,
            "read_only",
            format!(
                "{} '{id}' is declared in the config file: change it there",
                K::NOUN
            ),
        )),
        None => Err(ApiError::not_found(K::NOUN)),
    }
}

fn apply(rows: &[Row], mutations: &[Mutation]) -> Vec<Row> {
    let mut next = rows.to_vec();
    for m in mutations {
        match m {
            Mutation::Put(r) => {
                next.retain(|x| !(x.kind == r.kind && x.id == r.id));
                next.push(r.clone());
            }
            Mutation::Delete { kind, id } => next.retain(|x| !(&x.kind == kind && &x.id == id)),
        }
    }
    next
}

/// A row as the audit log keeps it: its masked view, by kind.
fn audit_view(r: &Row) -> Value {
    match r.kind.as_str() {
        "workspace" => Workspaces::view(r),
        "api_key" => ApiKeys::view(r),
        "secret_reference" => SecretRefs::view(r),
        "integration" => Integrations::view(r),
        "virtual_key" => VirtualKeys::view(r),
        _ => Configs::view(r),
    }
}

/// The whole configuration refused the change: a 400 naming the field.
fn config_error(e: ConfigError) -> ApiError {
    let (path, message) = match &e {
        ConfigError::Invalid { path, message } => (path.clone(), message.clone()),
        other => (String::new(), other.to_string()),
    };
    // `virtual_keys.vk1.credential` → `credential`; `secret_references[2] (s).auth_config.x` →
    // `auth_config.x`; `api_keys[3].virtual_key` → `virtual_key`.
    let field = match path.split_once(").") {
        Some((_, f)) => f.to_owned(),
        None => {
            let mut segs = path.splitn(3, '.');
            let first = segs.next().unwrap_or_default();
            match first.contains('[') {
                true => path
                    .split_once('.')
                    .map_or(path.clone(), |(_, f)| f.to_owned()),
                false => {
                    segs.next();
                    segs.next().map_or(path.clone(), str::to_owned)
                }
            }
        }
    };
    ApiError {
        status: 400,
        message: format!("{field}: {message}"),
        param: Some(field),
        code: "invalid_configuration",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_with_and_without_v1() {
        let (r, p) = resource("/v1/secret-references/abc").unwrap();
        assert_eq!((r, p), (Resource::SecretReferences, vec!["abc"]));
        let (r, p) = resource("/api-keys/organisation/service").unwrap();
        assert_eq!((r, p), (Resource::ApiKeys, vec!["organisation", "service"]));
        assert_eq!(
            resource("/v1/admin/workspaces").unwrap().0,
            Resource::Workspaces
        );
        assert_eq!(resource("/v1/workspaces/").unwrap().0, Resource::Workspaces);
        assert!(resource("/v1/chat/completions").is_none());
        assert!(resource("/v1/configsx").is_none());
    }

    #[test]
    fn configuration_errors_name_the_field() {
        let e = config_error(ConfigError::Invalid {
            path: "secret_references[2] (s).auth_config.aws_region".into(),
            message: "is required".into(),
        });
        assert_eq!(e.param.as_deref(), Some("auth_config.aws_region"));
        let e = config_error(ConfigError::Invalid {
            path: "virtual_keys.vk1.secret_mappings[0].secret_reference_id".into(),
            message: "no reference".into(),
        });
        assert_eq!(
            e.param.as_deref(),
            Some("secret_mappings[0].secret_reference_id")
        );
        let e = config_error(ConfigError::Invalid {
            path: "api_keys[3].virtual_key".into(),
            message: "x".into(),
        });
        assert_eq!(e.param.as_deref(), Some("virtual_key"));
        assert_eq!(e.status, 400);
    }
}
