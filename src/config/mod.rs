//! Configuration: the TOML file (`schema.rs`, strict) plus the environment, turned into validated
//! runtime types. Every error names the path in the file and what to do about it.

pub mod auth;
pub mod control;
mod identity;
pub mod jwt;
mod limits;
mod listener;
pub mod observe;
pub mod schema;
mod secret_use;
pub mod secrets;
pub mod stored;
pub mod tls;
pub mod tracing;
mod upstreams;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use crate::env::Env;
use crate::routing::custom_host::TrustedHosts;
use crate::secret::Secret;
use crate::vocab::Provider;
pub use identity::{ClientSecretConfig, Identity, TokenCredential, WorkloadDefaults};
use limits::validate_limits;
pub use limits::LimitSettings;
use listener::{validate_listener, validate_upgrade_socket};
pub use listener::{H2Settings, ListenerSettings, DEFAULT_READ_BUFFER, DEFAULT_WRITE_BUFFER};
pub use schema::FileConfig;
use secrets::SecretsSettings;
use upstreams::{validate_credentials, validate_providers, validate_routes, validate_timeouts};
pub use upstreams::{Credential, ProviderSettings, Route, RouteTarget, Timeouts, MAX_ATTEMPTS};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8787";
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9787";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {file}: {path}: {message}")]
    Parse {
        file: String,
        path: String,
        message: String,
    },
    #[error("config: {path}: {message}")]
    Invalid { path: String, message: String },
}

pub(crate) fn invalid(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path: path.into(),
        message: message.into(),
    }
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: String,
    pub metrics_listen: String,
    pub threads: usize,
    pub work_stealing: bool,
    pub grace_period: Duration,
    /// Reload when the file changes (besides SIGHUP).
    pub watch_config: bool,
    pub trusted_custom_hosts: TrustedHosts,
    pub ca_file: Option<String>,
    pub listener: ListenerSettings,
    /// The TLS listener, when `[tls]` turns it on.
    pub tls: Option<tls::TlsSettings>,
    /// Where listeners are handed over during an upgrade (`keyway --upgrade`).
    pub upgrade_socket: String,
    /// Deadlines and sizes of the proxy listener's client connections (`[limits]`).
    pub limits: LimitSettings,
    /// Idle upstream connections kept per proxy thread (Pingora's keep-alive pool).
    pub keepalive_pool: usize,
    pub timeouts: Timeouts,
    pub providers: BTreeMap<Provider, ProviderSettings>,
    pub credentials: BTreeMap<String, Credential>,
    pub routes: Vec<Route>,
    pub identity: Identity,
    /// Client authentication: posture, gateway keys, workspaces, virtual keys.
    pub auth: auth::AuthSettings,
    pub jwt: Vec<crate::auth::jwt::JwtSettings>,
    /// Secret references and the cache policy for their values.
    pub secrets: SecretsSettings,
    /// Routing configs requests name by slug.
    pub configs: BTreeMap<String, control::StoredConfig>,
    /// The control plane's store; `None` when disabled.
    pub store: Option<crate::store::StoreSettings>,
    pub admin: control::AdminSettings,
    /// `[access_log]` and `[usage]` (restart-only).
    pub observe: observe::ObserveSettings,
    /// OpenTelemetry trace export; `None`: off.
    pub tracing: Option<tracing::TracingSettings>,
}

/// Reads and validates a config file; `None` gives the defaults (a drop-in Portkey gateway).
pub fn load(path: Option<&Path>, env: &Env) -> Result<Config, ConfigError> {
    load_with_text(path, env).map(|(c, _)| c)
}

/// `load`, also returning the text it validated (empty without a file), whose digest names the
/// configuration in metrics and tells a reload whether anything changed.
pub fn load_with_text(path: Option<&Path>, env: &Env) -> Result<(Config, String), ConfigError> {
    let (file, text) = match path {
        Some(p) => {
            let text = read(p)?;
            (parse_str(&text, &p.display().to_string())?, text)
        }
        None => (FileConfig::default(), String::new()),
    };
    Ok((validate(file, env)?, text))
}

/// Parses a config file (or the empty configuration without one), returning its text too.
pub fn parse(path: Option<&Path>) -> Result<(FileConfig, String), ConfigError> {
    match path {
        Some(p) => {
            let text = read(p)?;
            Ok((parse_str(&text, &p.display().to_string())?, text))
        }
        None => Ok((FileConfig::default(), String::new())),
    }
}

/// Validates a parsed file together with objects from the control plane's store. Store objects
/// whose name the file already uses are left out (the file's win; `skipped` names them).
pub fn validate_merged(
    file: &FileConfig,
    extra: Sections,
    env: &Env,
) -> Result<(Config, Vec<String>), ConfigError> {
    let mut f = file.clone();
    let skipped = merge(&mut f, extra);
    Ok((validate(f, env)?, skipped))
}

/// Objects the control plane's store adds to a file's, in the file's shapes.
#[derive(Debug, Default, Clone)]
pub struct Sections {
    pub workspaces: BTreeMap<String, schema::auth::WorkspaceSection>,
    pub api_keys: Vec<schema::auth::ApiKeySection>,
    pub secret_references: Vec<schema::secrets::SecretReferenceSection>,
    pub credentials: BTreeMap<String, schema::CredentialSection>,
    pub virtual_keys: BTreeMap<String, schema::auth::VirtualKeySection>,
    pub configs: BTreeMap<String, schema::ConfigSection>,
}

fn merge(f: &mut FileConfig, extra: Sections) -> Vec<String> {
    let mut skipped = Vec::new();
    fn add<V>(
        into: &mut BTreeMap<String, V>,
        from: BTreeMap<String, V>,
        kind: &str,
        skipped: &mut Vec<String>,
    ) {
        for (k, v) in from {
            match into.contains_key(&k) {
                true => skipped.push(format!("{kind} {k}")),
                false => {
                    into.insert(k, v);
                }
            }
        }
    }
    add(
        &mut f.workspaces,
        extra.workspaces,
        "workspace",
        &mut skipped,
    );
    add(
        &mut f.credentials,
        extra.credentials,
        "integration",
        &mut skipped,
    );
    add(
        &mut f.virtual_keys,
        extra.virtual_keys,
        "virtual key",
        &mut skipped,
    );
    add(&mut f.configs, extra.configs, "config", &mut skipped);
    for r in extra.secret_references {
        let slug = r.slug.clone().unwrap_or_default();
        let taken = f.secret_references.iter().any(|o| {
            o.slug.as_deref() == Some(slug.as_str()) || secrets::slug_from_name(&o.name) == slug
        });
        match taken {
            true => skipped.push(format!("secret reference {slug}")),
            false => f.secret_references.push(r),
        }
    }
    for k in extra.api_keys {
        match f
            .api_keys
            .iter()
            .any(|o| o.hash == k.hash || o.name == k.name)
        {
            true => skipped.push(format!("api key {}", k.name)),
            false => f.api_keys.push(k),
        }
    }
    skipped
}

/// The file's text.
pub fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn parse_str(text: &str, file: &str) -> Result<FileConfig, ConfigError> {
    let de = toml::Deserializer::parse(text).map_err(|e| ConfigError::Parse {
        file: file.into(),
        path: "(document)".into(),
        message: e.message().to_owned(),
    })?;
    serde_path_to_error::deserialize(de).map_err(|e| ConfigError::Parse {
        file: file.into(),
        path: e.path().to_string(),
        message: e.inner().message().to_owned(),
    })
}

/// Parses and validates TOML text against an environment.
pub fn from_str(text: &str, env: &Env) -> Result<Config, ConfigError> {
    validate(parse_str(text, "(inline)")?, env)
}

fn validate(f: FileConfig, env: &Env) -> Result<Config, ConfigError> {
    let threads = f.threads.unwrap_or_else(default_threads);
    if threads == 0 || threads > 1024 {
        return Err(invalid("threads", "must be between 1 and 1024"));
    }
    let listen = f.listen.unwrap_or_else(|| DEFAULT_LISTEN.into());
    check_addr("listen", &listen)?;
    let metrics_listen = f
        .metrics_listen
        .unwrap_or_else(|| DEFAULT_METRICS_LISTEN.into());
    check_addr("metrics_listen", &metrics_listen)?;

    let mut trusted: Vec<String> = f.trusted_custom_hosts;
    if let Some(list) = env.get("TRUSTED_CUSTOM_HOSTS") {
        trusted.extend(list.split(',').map(str::to_owned));
    }
    let trusted_custom_hosts = TrustedHosts::parse(trusted.iter().map(String::as_str))
        .map_err(|m| invalid("trusted_custom_hosts (or TRUSTED_CUSTOM_HOSTS)", m))?;

    if let Some(ca) = &f.ca_file {
        if !Path::new(ca).is_file() {
            return Err(invalid("ca_file", format!("'{ca}' is not a readable file")));
        }
    }

    let identity = identity::validate_identity(f.azure, f.aws, f.tokens, env)?;
    let workspace_names: BTreeSet<String> = f.workspaces.keys().cloned().collect();
    let secrets = secrets::validate(
        f.secrets,
        f.secret_references,
        &workspace_names.iter().map(String::as_str).collect(),
        &identity,
        env,
    )?;
    let providers = validate_providers(f.providers, &secrets, env)?;
    let mut credentials = validate_credentials(f.credentials, &secrets, &identity, env)?;
    let routes = validate_routes(f.routes, &credentials)?;
    let vk_workspaces: BTreeMap<String, String> = f
        .virtual_keys
        .iter()
        .map(|(k, v)| (k.clone(), v.workspace.clone()))
        .collect();
    let auth = auth::validate(
        &f.auth,
        f.workspaces,
        f.api_keys,
        f.virtual_keys,
        &mut credentials,
        &secrets,
    )?;
    let configs = control::validate_configs(
        &f.configs,
        &workspace_names.iter().map(String::as_str).collect(),
        &vk_workspaces,
    )?;
    let store = control::validate_store(&f.store, env)?;
    let admin = control::validate_admin(&f.admin)?;
    let observe = observe::validate_observe(&f.access_log, &f.usage)?;
    let tracing = tracing::validate(f.tracing.as_ref(), env)?;
    let jwt = f
        .auth
        .jwt
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            jwt::validate(s, &format!("auth.jwt[{i}]"), &identity.authority)
                .map_err(|m| invalid(format!("auth.jwt[{i}]"), m))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Config {
        listen,
        metrics_listen,
        threads,
        work_stealing: f.work_stealing.unwrap_or(false),
        grace_period: Duration::from_secs(f.grace_period_seconds.unwrap_or(30)),
        watch_config: f.watch_config.unwrap_or(true),
        trusted_custom_hosts,
        ca_file: f.ca_file,
        listener: validate_listener(&f.listener)?,
        tls: tls::validate_tls(&f.tls)?,
        upgrade_socket: validate_upgrade_socket(&f.listener)?,
        limits: validate_limits(&f.limits)?,
        keepalive_pool: match f.upstream.keepalive_pool_size.unwrap_or(128) {
            n @ 1..=65_536 => n,
            _ => {
                return Err(invalid(
                    "upstream.keepalive_pool_size",
                    "must be from 1 to 65536",
                ))
            }
        },
        timeouts: validate_timeouts(&f.upstream)?,
        providers,
        credentials,
        routes,
        identity,
        auth,
        jwt,
        secrets,
        configs,
        store,
        admin,
        observe,
        tracing,
    })
}

/// Re-checks the fields command-line flags may have overridden.
pub fn check_overrides(c: &Config) -> Result<(), ConfigError> {
    check_addr("--listen", &c.listen)?;
    check_addr("--metrics-listen", &c.metrics_listen)?;
    if c.threads == 0 || c.threads > 1024 {
        return Err(invalid("--threads", "must be between 1 and 1024"));
    }
    Ok(())
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

pub(crate) fn check_addr(path: &str, addr: &str) -> Result<(), ConfigError> {
    addr.parse::<std::net::SocketAddr>()
        .map(|_| ())
        .map_err(|_| invalid(path, format!("'{addr}' is not an IP:port address")))
}

/// A secret given inline or through an environment variable, never both.
pub(crate) fn secret_from(
    path: &str,
    inline: Option<String>,
    env_name: Option<String>,
    env: &Env,
) -> Result<Option<Secret>, ConfigError> {
    match (inline, env_name) {
        (Some(_), Some(_)) => Err(invalid(
            path,
            "give the value or its _env variable, not both",
        )),
        (Some(v), None) if v.is_empty() => Err(invalid(path, "is empty")),
        (Some(v), None) => Ok(Some(Secret::new(v))),
        (None, Some(name)) => match env.get(&name) {
            Some(v) => Ok(Some(Secret::new(v))),
            None => Err(invalid(
                format!("{path}_env"),
                format!("environment variable {name} is not set or empty"),
            )),
        },
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests;
