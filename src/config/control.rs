//! The control plane in the config file: `[store]` (where admin-API objects live and the key
//! that seals their credentials), `[admin]` (the admin API's listener) and `[configs.<slug>]`
//! (routing configs a request names by slug).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::schema::{AdminSection, ConfigSection, StoreSection};
use super::{check_addr, invalid, ConfigError};
use crate::env::Env;
use crate::routing::portkey::{self, PortkeyConfig};
use crate::routing::strategy::Tree;
use crate::store::{Engine, KeySource, StoreSettings};

pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8788";
pub const DEFAULT_KEY_ENV: &str = "KEYWAY_STORE_KEY";
pub const DEFAULT_DATA_DIR: &str = "keyway-data";

/// `[admin]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    pub listen: String,
    pub on_proxy_listener: bool,
}

/// A `[configs.<slug>]` entry, parsed.
#[derive(Debug, Clone)]
pub struct StoredConfig {
    pub config: Tree<PortkeyConfig>,
    /// `None`: any caller may name it.
    pub workspace: Option<Arc<str>>,
}

pub fn validate_admin(a: &AdminSection) -> Result<AdminSettings, ConfigError> {
    let listen = a
        .listen
        .clone()
        .unwrap_or_else(|| DEFAULT_ADMIN_LISTEN.to_owned());
    check_addr("admin.listen", &listen)?;
    Ok(AdminSettings {
        listen,
        on_proxy_listener: a.on_proxy_listener.unwrap_or(false),
    })
}

/// The store's settings; `None` when `enabled = false`.
pub fn validate_store(s: &StoreSection, env: &Env) -> Result<Option<StoreSettings>, ConfigError> {
    if s.enabled == Some(false) {
        return Ok(None);
    }
    let data_dir = PathBuf::from(
        s.data_dir
            .clone()
            .or_else(|| env.get("KEYWAY_DATA_DIR").map(str::to_owned))
            .unwrap_or_else(|| DEFAULT_DATA_DIR.to_owned()),
    );
    let url = match (&s.url, &s.url_env) {
        (Some(_), Some(_)) => {
            return Err(invalid("store.url", "give url or url_env, not both"));
        }
        (Some(u), None) => u.clone(),
        (None, Some(name)) => env.get(name).map(str::to_owned).ok_or_else(|| {
            invalid(
                "store.url_env",
                format!("environment variable {name} is not set or empty"),
            )
        })?,
        (None, None) => format!("sqlite://{}?mode=rwc", data_dir.join("keyway.db").display()),
    };
    let engine = Engine::of(&url).ok_or_else(|| {
        invalid(
            "store.url",
            "must start with sqlite: or postgres:// (postgresql:// also works)",
        )
    })?;
    let key_env = s
        .key_env
        .clone()
        .unwrap_or_else(|| DEFAULT_KEY_ENV.to_owned());
    let key = match (&s.key_file, env.get(&key_env)) {
        (Some(f), _) => KeySource::File(PathBuf::from(f)),
        (None, Some(v)) => KeySource::Env {
            name: key_env,
            value: Some(v.to_owned()),
        },
        (None, None) if engine == Engine::Sqlite => {
            KeySource::Generated(data_dir.join("store.key"))
        }
        (None, None) => {
            return Err(invalid(
                "store.key_file",
                format!(
                    "a PostgreSQL store needs a sealing key every instance shares: set {key_env} (32 bytes, base64) or store.key_file"
                ),
            ))
        }
    };
    let poll = match s.poll_interval_ms.unwrap_or(500) {
        0 => return Err(invalid("store.poll_interval_ms", "must be greater than 0")),
        n => Duration::from_millis(n),
    };
    Ok(Some(StoreSettings { url, key, poll }))
}

/// `[configs.*]`: each parses as a request's `x-portkey-config` would, names existing
/// workspaces, and only virtual keys that exist (of its own workspace, when it has one).
/// `virtual_keys` maps each virtual key to its workspace.
pub fn validate_configs(
    raw: &BTreeMap<String, ConfigSection>,
    workspaces: &BTreeSet<&str>,
    virtual_keys: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, StoredConfig>, ConfigError> {
    let mut out = BTreeMap::new();
    for (slug, c) in raw {
        let path = format!("configs.{slug}");
        if slug.is_empty()
            || !slug
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b))
        {
            return Err(invalid(&path, "the slug must match ^[a-zA-Z0-9_-]+$"));
        }
        let config =
            portkey::parse_stored(&c.config).map_err(|m| invalid(format!("{path}.config"), m))?;
        let workspace = match &c.workspace {
            Some(w) if !workspaces.contains(w.as_str()) => {
                return Err(invalid(
                    format!("{path}.workspace"),
                    format!("no [workspaces.{w}] section"),
                ))
            }
            other => other.as_deref().map(Arc::from),
        };
        for vk in portkey::virtual_keys(&config) {
            match virtual_keys.get(vk) {
                None => {
                    return Err(invalid(
                        format!("{path}.config"),
                        format!("names virtual key '{vk}', which does not exist"),
                    ))
                }
                Some(w) if workspace.as_deref().is_some_and(|cw| cw != w) => {
                    return Err(invalid(
                        format!("{path}.config"),
                        format!("names virtual key '{vk}' of another workspace"),
                    ))
                }
                Some(_) => {}
            }
        }
        out.insert(slug.clone(), StoredConfig { config, workspace });
    }
    Ok(out)
}
