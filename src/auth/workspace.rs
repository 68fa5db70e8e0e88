//! Workspaces and virtual keys: what an authenticated [`Caller`] may reach. Runs after
//! authentication and routing, before the upstream request is built. A workspace and the key (or
//! token) inside it may each restrict providers and models; a request must pass both.

use std::collections::HashMap;
use std::sync::Arc;

use super::{AuthError, AuthMethod, Caller, Role};
use crate::vocab::Provider;

/// Model names longer than this are cut in error messages (they come from the request body).
const SHOWN_MODEL_MAX: usize = 100;

/// One `[workspaces.<slug>]`; `None` lists mean "no restriction".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Workspace {
    /// Canonical provider slugs.
    pub allowed_providers: Option<Arc<[String]>>,
    pub allowed_models: Option<Arc<[String]>>,
}

/// All workspaces, by slug.
#[derive(Debug, Clone, Default)]
pub struct Workspaces {
    by_slug: HashMap<String, Workspace>,
}

impl Workspaces {
    pub fn new(entries: impl IntoIterator<Item = (String, Workspace)>) -> Self {
        Workspaces {
            by_slug: entries.into_iter().collect(),
        }
    }

    pub fn get(&self, slug: &str) -> Option<&Workspace> {
        self.by_slug.get(slug)
    }

    /// May `caller` use `provider_slug` (alias or canonical) and `model`? The workspace must
    /// exist and allow both, and so must the caller's own lists. `model: None` (a request without
    /// one, e.g. a model listing) skips the model checks; for Azure deployments pass the
    /// deployment id. Failure is a 403 naming what is not allowed.
    pub fn authorize(
        &self,
        caller: &Caller,
        provider_slug: &str,
        model: Option<&str>,
    ) -> Result<(), AuthError> {
        let Some(name) = caller.workspace.as_deref() else {
            return Err(AuthError::Forbidden {
                what: "organisation keys manage keyway; send requests with a workspace key".into(),
            });
        };
        let ws = self.get(name).ok_or_else(|| AuthError::Forbidden {
            what: format!("workspace {name} is not configured"),
        })?;
        let provider = Provider::from_slug(provider_slug).map_or(provider_slug, |p| p.as_str());
        let in_ws = || format!("in workspace {name}");
        let for_caller = || format!("for this {}", caller_noun(caller.method));
        check("provider", provider, ws.allowed_providers.as_deref(), in_ws)?;
        check(
            "provider",
            provider,
            caller.allowed_providers.as_deref(),
            for_caller,
        )?;
        if let Some(m) = model {
            check("model", m, ws.allowed_models.as_deref(), in_ws)?;
            check("model", m, caller.allowed_models.as_deref(), for_caller)?;
        }
        Ok(())
    }
}

fn caller_noun(method: AuthMethod) -> &'static str {
    match method {
        AuthMethod::ApiKey => "key",
        AuthMethod::VirtualKey => "virtual key",
        AuthMethod::Jwt => "token",
    }
}

fn check(
    kind: &str,
    value: &str,
    allowed: Option<&[String]>,
    scope: impl FnOnce() -> String,
) -> Result<(), AuthError> {
    match allowed {
        Some(list) if !list.iter().any(|a| a == value) => Err(AuthError::Forbidden {
            what: format!("{kind} {} is not allowed {}", shown(value), scope()),
        }),
        _ => Ok(()),
    }
}

fn shown(value: &str) -> &str {
    match value.char_indices().nth(SHOWN_MODEL_MAX) {
        Some((i, _)) => &value[..i],
        None => value,
    }
}

/// One `[virtual_keys.<id>]`: a provider credential held by the gateway, usable by callers of
/// one workspace. The Azure fields fill in what the request does not say itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualKey {
    pub id: Arc<str>,
    pub workspace: Arc<str>,
    pub provider: Provider,
    /// Name of a `[credentials.*]` section.
    pub credential: String,
    pub resource_name: Option<String>,
    pub deployment_id: Option<String>,
    pub api_version: Option<String>,
    pub allowed_models: Option<Arc<[String]>>,
}

impl VirtualKey {
    /// The virtual key's own model list, checked on top of [`Workspaces::authorize`].
    pub fn authorize_model(&self, model: Option<&str>) -> Result<(), AuthError> {
        match model {
            Some(m) => check("model", m, self.allowed_models.as_deref(), || {
                "for this virtual key".to_owned()
            }),
            None => Ok(()),
        }
    }
}

/// All virtual keys, by id.
#[derive(Debug, Clone, Default)]
pub struct VirtualKeys {
    by_id: HashMap<String, VirtualKey>,
}

/// Outward reason for a virtual key id that does not exist; the id is not echoed.
pub const UNKNOWN_VIRTUAL_KEY: &str = "invalid virtual key";

impl VirtualKeys {
    pub fn new(entries: impl IntoIterator<Item = VirtualKey>) -> Self {
        VirtualKeys {
            by_id: entries.into_iter().map(|v| (v.id.to_string(), v)).collect(),
        }
    }

    pub fn get(&self, id: &str) -> Option<&VirtualKey> {
        self.by_id.get(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &VirtualKey> {
        self.by_id.values()
    }

    /// The virtual key `id` for `caller`: unknown → 401 invalid; another workspace's, or not the
    /// one the caller's gateway key is bound to → 403.
    pub fn virtual_key_for(&self, caller: &Caller, id: &str) -> Result<&VirtualKey, AuthError> {
        let vk = self.get(id).ok_or(AuthError::Invalid {
            reason: UNKNOWN_VIRTUAL_KEY,
        })?;
        if caller.workspace.as_deref() != Some(&*vk.workspace) {
            return Err(AuthError::Forbidden {
                what: match &caller.workspace {
                    Some(w) => format!("the virtual key is not in workspace {w}"),
                    None => "organisation keys cannot use virtual keys".into(),
                },
            });
        }
        match &caller.virtual_key {
            Some(bound) if **bound != *id => Err(AuthError::Forbidden {
                what: "this key is bound to another virtual key".to_owned(),
            }),
            _ => Ok(vk),
        }
    }

    /// A caller for a request that presents only a virtual key (when the deployment lets a
    /// virtual key stand alone): a member of the key's workspace limited to its provider.
    pub fn caller_for(&self, id: &str) -> Result<Caller, AuthError> {
        let vk = self.get(id).ok_or(AuthError::Invalid {
            reason: UNKNOWN_VIRTUAL_KEY,
        })?;
        Ok(Caller {
            workspace: Some(vk.workspace.clone()),
            role: Role::Member,
            method: AuthMethod::VirtualKey,
            allowed_providers: Some(Arc::from(vec![vk.provider.as_str().to_owned()])),
            allowed_models: vk.allowed_models.clone(),
            virtual_key: Some(vk.id.clone()),
            subject: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Option<Arc<[String]>> {
        Some(items.iter().map(|s| (*s).to_owned()).collect())
    }

    fn caller(ws: &str, providers: Option<Arc<[String]>>, models: Option<Arc<[String]>>) -> Caller {
        Caller {
            workspace: Some(ws.into()),
            role: Role::Member,
            method: AuthMethod::ApiKey,
            allowed_providers: providers,
            allowed_models: models,
            virtual_key: None,
            subject: None,
        }
    }

    fn workspaces() -> Workspaces {
        Workspaces::new([
            (
                "team-a".to_owned(),
                Workspace {
                    allowed_providers: list(&["openai", "azure-openai"]),
                    allowed_models: list(&["gpt-4o-mini", "gpt-4o"]),
                },
            ),
            ("open".to_owned(), Workspace::default()),
        ])
    }

    fn denied(r: Result<(), AuthError>) -> String {
        let e = r.unwrap_err();
        assert_eq!(e.outcome(), "forbidden");
        e.to_string()
    }

    #[test]
    fn authorize_matrix() {
        let w = workspaces();
        let free = caller("team-a", None, None);
        assert!(w.authorize(&free, "openai", Some("gpt-4o")).is_ok());
        assert!(w.authorize(&free, "azure-openai", None).is_ok());
        assert_eq!(
            denied(w.authorize(&free, "anthropic", None)),
            "provider anthropic is not allowed in workspace team-a"
        );
        assert_eq!(
            denied(w.authorize(&free, "openai", Some("o3"))),
            "model o3 is not allowed in workspace team-a"
        );
        let narrow = caller("team-a", list(&["openai"]), list(&["gpt-4o-mini"]));
        assert!(w.authorize(&narrow, "openai", Some("gpt-4o-mini")).is_ok());
        assert_eq!(
            denied(w.authorize(&narrow, "azure-openai", None)),
            "provider azure-openai is not allowed for this key"
        );
        assert_eq!(
            denied(w.authorize(&narrow, "openai", Some("gpt-4o"))),
            "model gpt-4o is not allowed for this key"
        );
        let open = caller("open", list(&["openai"]), None);
        assert!(w.authorize(&open, "openai", Some("anything")).is_ok());
        assert!(
            denied(w.authorize(&caller("ghost", None, None), "openai", None))
                .contains("workspace ghost is not configured")
        );
    }

    #[test]
    fn aliases_match_canonical_slugs_and_long_models_are_cut() {
        let w = Workspaces::new([(
            "a".to_owned(),
            Workspace {
                allowed_providers: list(&["mistral-ai"]),
                allowed_models: list(&["m"]),
            },
        )]);
        let c = caller("a", None, None);
        assert!(w.authorize(&c, "mistral", None).is_ok());
        let long = "x".repeat(5000);
        assert!(denied(w.authorize(&c, "mistral-ai", Some(&long))).len() < 200);
    }

    fn vks() -> VirtualKeys {
        VirtualKeys::new([VirtualKey {
            id: "vk-a".into(),
            workspace: "team-a".into(),
            provider: Provider::AzureOpenAi,
            credential: "az".into(),
            resource_name: Some("res".into()),
            deployment_id: None,
            api_version: None,
            allowed_models: list(&["gpt-4o"]),
        }])
    }

    #[test]
    fn virtual_keys_are_confined_to_their_workspace() {
        let v = vks();
        assert_eq!(
            v.virtual_key_for(&caller("team-a", None, None), "vk-a")
                .unwrap()
                .credential,
            "az"
        );
        let other = v
            .virtual_key_for(&caller("team-b", None, None), "vk-a")
            .unwrap_err();
        assert_eq!(other.outcome(), "forbidden");
        let unknown = v
            .virtual_key_for(&caller("team-a", None, None), "vk-zz")
            .unwrap_err();
        assert_eq!(unknown.outcome(), "invalid");
        assert!(!unknown.to_string().contains("vk-zz"));
        let mut bound = caller("team-a", None, None);
        bound.virtual_key = Some("vk-other".into());
        assert_eq!(
            v.virtual_key_for(&bound, "vk-a").unwrap_err().outcome(),
            "forbidden"
        );
        bound.virtual_key = Some("vk-a".into());
        assert!(v.virtual_key_for(&bound, "vk-a").is_ok());
    }

    #[test]
    fn virtual_key_models_and_standalone_callers() {
        let v = vks();
        let vk = v.get("vk-a").unwrap();
        assert!(vk.authorize_model(Some("gpt-4o")).is_ok());
        assert!(vk.authorize_model(None).is_ok());
        assert_eq!(
            vk.authorize_model(Some("o1")).unwrap_err().to_string(),
            "model o1 is not allowed for this virtual key"
        );
        let c = v.caller_for("vk-a").unwrap();
        assert_eq!(c.method, AuthMethod::VirtualKey);
        assert_eq!(
            c.allowed_providers.as_deref(),
            Some(&["azure-openai".to_owned()][..])
        );
        assert_eq!(v.caller_for("nope").unwrap_err().outcome(), "invalid");
    }
}
