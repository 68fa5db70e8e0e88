//! Configuration: the TOML file (`schema.rs`, strict) plus the environment, turned into validated
//! runtime types. Every error names the path in the file and what to do about it.

pub mod auth;
mod identity;
pub mod jwt;
mod schema;
pub mod secrets;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use crate::env::Env;
use crate::routing::custom_host::TrustedHosts;
use crate::routing::provider::Provider;
use crate::routing::url::BaseUrl;
use crate::secret::Secret;
pub use identity::{ClientSecretConfig, Identity, TokenCredential, WorkloadDefaults};
use schema::FileConfig;
use secrets::{Entity, SecretUse, SecretsSettings};

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
    pub trusted_custom_hosts: TrustedHosts,
    pub ca_file: Option<String>,
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
}

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub total_connect: Duration,
    pub read: Duration,
    pub idle: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct ProviderSettings {
    pub base_url: Option<BaseUrl>,
    pub api_key: Option<Secret>,
    /// The default key from a secret reference instead of `api_key`.
    pub key_mapping: Option<SecretUse>,
    pub api_version: Option<String>,
}

/// Where an upstream credential comes from.
#[derive(Debug, Clone)]
pub enum Credential {
    ApiKey(Secret),
    /// An API key read from a secret reference.
    MappedKey(SecretUse),
    Token(TokenCredential),
}

impl Credential {
    /// The secret references this credential reads.
    pub fn secret_uses(&self) -> Option<&SecretUse> {
        match self {
            Credential::MappedKey(u)
            | Credential::Token(TokenCredential::Entra {
                secret: ClientSecretConfig::Mapped(u),
                ..
            }) => Some(u),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub path_prefix: String,
    pub host: Option<String>,
    pub provider: Provider,
    pub upstream: BaseUrl,
    pub strip_prefix: bool,
    pub credential: String,
}

/// Reads and validates a config file; `None` gives the defaults (a drop-in Portkey gateway).
pub fn load(path: Option<&Path>, env: &Env) -> Result<Config, ConfigError> {
    let file = match path {
        Some(p) => parse_file(p)?,
        None => FileConfig::default(),
    };
    validate(file, env)
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

fn parse_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: shown.clone(),
        source,
    })?;
    parse_str(&text, &shown)
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
    let auth = auth::validate(
        &f.auth,
        f.workspaces,
        f.api_keys,
        f.virtual_keys,
        &mut credentials,
        &secrets,
    )?;
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
        trusted_custom_hosts,
        ca_file: f.ca_file,
        timeouts: validate_timeouts(&f.upstream)?,
        providers,
        credentials,
        routes,
        identity,
        auth,
        jwt,
        secrets,
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

fn check_addr(path: &str, addr: &str) -> Result<(), ConfigError> {
    addr.parse::<std::net::SocketAddr>()
        .map(|_| ())
        .map_err(|_| invalid(path, format!("'{addr}' is not an IP:port address")))
}

fn validate_timeouts(u: &schema::UpstreamSection) -> Result<Timeouts, ConfigError> {
    let ms = |path: &str, v: Option<u64>, default: u64| match v.unwrap_or(default) {
        0 => Err(invalid(
            format!("upstream.{path}"),
            "must be greater than 0",
        )),
        n => Ok(Duration::from_millis(n)),
    };
    Ok(Timeouts {
        connect: ms("connect_timeout_ms", u.connect_timeout_ms, 5_000)?,
        total_connect: ms(
            "total_connect_timeout_ms",
            u.total_connect_timeout_ms,
            10_000,
        )?,
        read: ms("read_timeout_ms", u.read_timeout_ms, 300_000)?,
        idle: ms("idle_timeout_ms", u.idle_timeout_ms, 60_000)?,
    })
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

fn validate_providers(
    raw: BTreeMap<String, schema::ProviderSection>,
    secrets: &SecretsSettings,
    env: &Env,
) -> Result<BTreeMap<Provider, ProviderSettings>, ConfigError> {
    let mut out = BTreeMap::new();
    for (slug, p) in raw {
        let path = format!("providers.{slug}");
        let provider = Provider::from_slug(&slug)
            .ok_or_else(|| invalid(&path, format!("unknown provider '{slug}'")))?;
        let base_url = p
            .base_url
            .as_deref()
            .map(|u| BaseUrl::parse(u).map_err(|m| invalid(format!("{path}.base_url"), m)))
            .transpose()?;
        if p.api_version.is_some() && !provider.is_azure() {
            return Err(invalid(
                format!("{path}.api_version"),
                "only azure-openai and azure-ai take an api_version",
            ));
        }
        let api_key = secret_from(&format!("{path}.api_key"), p.api_key, p.api_key_env, env)?;
        let mut maps =
            secrets::mappings(&path, Entity::Integration, p.secret_mappings, secrets, None)?;
        let key_mapping = secrets::take(&mut maps, &["key"]);
        secrets::none_left(&path, &maps, "a provider", "key")?;
        if api_key.is_some() && key_mapping.is_some() {
            return Err(invalid(
                format!("{path}.api_key"),
                "give api_key or a secret mapping for key, not both",
            ));
        }
        let settings = ProviderSettings {
            base_url,
            api_key,
            key_mapping,
            api_version: p.api_version,
        };
        if out.insert(provider, settings).is_some() {
            return Err(invalid(&path, "configured twice (an alias and its slug)"));
        }
    }
    Ok(out)
}

fn validate_credentials(
    raw: BTreeMap<String, schema::CredentialSection>,
    secrets: &SecretsSettings,
    identity: &Identity,
    env: &Env,
) -> Result<BTreeMap<String, Credential>, ConfigError> {
    let mut out = BTreeMap::new();
    for (name, mut c) in raw {
        let path = format!("credentials.{name}");
        let raw_maps = std::mem::take(&mut c.secret_mappings);
        let mut maps = secrets::mappings(&path, Entity::Integration, raw_maps, secrets, None)?;
        let cred = match c.kind.as_str() {
            "api_key" => {
                let mapped = secrets::take(&mut maps, &["key"]);
                secrets::none_left(&path, &maps, "type api_key", "key")?;
                match (
                    secret_from(&format!("{path}.key"), c.key, c.key_env, env)?,
                    mapped,
                ) {
                    (Some(_), Some(_)) => {
                        return Err(invalid(
                            format!("{path}.key"),
                            "give key or a secret mapping for key, not both",
                        ))
                    }
                    (Some(k), None) => Credential::ApiKey(k),
                    (None, Some(u)) => Credential::MappedKey(u),
                    (None, None) => {
                        return Err(invalid(
                            &path,
                            "type api_key needs key, key_env or a secret mapping for key",
                        ))
                    }
                }
            }
            kind => {
                let mapped = secrets::take(
                    &mut maps,
                    &[
                        "configurations.azure_entra_client_secret",
                        "configurations.client_secret",
                    ],
                );
                let allowed = match kind {
                    "entra" => "configurations.azure_entra_client_secret",
                    _ => "nothing for this type",
                };
                secrets::none_left(&path, &maps, &format!("type {kind}"), allowed)?;
                if mapped.is_some() && kind != "entra" {
                    return Err(invalid(
                        format!("{path}.secret_mappings"),
                        format!("type {kind} has no client secret to map"),
                    ));
                }
                Credential::Token(identity::token_credential(&path, c, mapped, identity, env)?)
            }
        };
        out.insert(name, cred);
    }
    Ok(out)
}

fn validate_routes(
    raw: Vec<schema::RouteSection>,
    credentials: &BTreeMap<String, Credential>,
) -> Result<Vec<Route>, ConfigError> {
    let mut out: Vec<Route> = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let path = format!("routes[{i}]");
        if r.name.is_empty() || out.iter().any(|o| o.name == r.name) {
            return Err(invalid(
                format!("{path}.name"),
                "must be non-empty and unique",
            ));
        }
        if !r.path_prefix.starts_with('/') {
            return Err(invalid(
                format!("{path}.path_prefix"),
                "must start with '/'",
            ));
        }
        let provider = Provider::from_slug(&r.provider).ok_or_else(|| {
            invalid(
                format!("{path}.provider"),
                format!("unknown provider '{}'", r.provider),
            )
        })?;
        let upstream =
            BaseUrl::parse(&r.upstream).map_err(|m| invalid(format!("{path}.upstream"), m))?;
        if upstream.has_placeholder() {
            return Err(invalid(
                format!("{path}.upstream"),
                "must name a concrete host (no {resource}/{region})",
            ));
        }
        if !credentials.contains_key(&r.credential) {
            return Err(invalid(
                format!("{path}.credential"),
                format!("no [credentials.{}] section", r.credential),
            ));
        }
        out.push(Route {
            name: r.name,
            path_prefix: r.path_prefix,
            host: r.host.map(|h| h.to_ascii_lowercase()),
            provider,
            upstream,
            strip_prefix: r.strip_prefix,
            credential: r.credential,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        Env::from_pairs([
            ("AZ_KEY", "from-env"),
            ("TRUSTED_CUSTOM_HOSTS", "10.0.0.5, x.internal"),
        ])
    }

    #[test]
    fn no_file_gives_defaults() {
        let c = load(None, &Env::default()).unwrap();
        assert_eq!(c.listen, DEFAULT_LISTEN);
        assert_eq!(c.metrics_listen, DEFAULT_METRICS_LISTEN);
        assert!(c.routes.is_empty());
    }

    #[test]
    fn full_example_validates() {
        let c = from_str(
            r#"
            threads = 2
            trusted_custom_hosts = ["127.0.0.1"]
            [upstream]
            read_timeout_ms = 1000
            [providers.openai]
            base_url = "http://127.0.0.1:9/v1"
            api_key = "sk-x"
            [providers.mistral]
            api_key_env = "AZ_KEY"
            [providers.azure-openai]
            api_version = "2025-01-01"
            [credentials.az]
            type = "api_key"
            key_env = "AZ_KEY"
            [[routes]]
            name = "azure"
            path_prefix = "/openai/"
            provider = "azure-openai"
            upstream = "https://r.openai.azure.com"
            credential = "az"
            "#,
            &env(),
        )
        .unwrap();
        assert_eq!(c.threads, 2);
        assert_eq!(c.timeouts.read, Duration::from_millis(1000));
        assert!(c.trusted_custom_hosts.allows("10.0.0.5", 1));
        assert!(c.trusted_custom_hosts.allows("127.0.0.1", 1));
        assert_eq!(
            c.providers[&Provider::Mistral]
                .api_key
                .as_ref()
                .unwrap()
                .expose(),
            "from-env"
        );
        assert_eq!(c.routes[0].provider, Provider::AzureOpenAi);
    }

    fn err(text: &str) -> String {
        from_str(text, &env()).unwrap_err().to_string()
    }

    #[test]
    fn unknown_keys_name_their_path() {
        let e = err("[providers.openai]\nbse_url = \"x\"\n");
        assert!(
            e.contains("providers.openai") && e.contains("bse_url"),
            "{e}"
        );
        let e = err("[[routes]]\nname=\"a\"\npath_prefix=\"/a\"\nprovider=\"openai\"\nupstream=\"https://a\"\ncredential=\"c\"\nextra=1\n");
        assert!(e.contains("routes[0]") && e.contains("extra"), "{e}");
        let e = err("lisen = \"x\"\n");
        assert!(e.contains("lisen"), "{e}");
    }

    #[test]
    fn invalid_values_name_their_path() {
        assert!(err("[providers.nope]\n").contains("providers.nope"));
        assert!(err("[providers.openai]\nbase_url = \"ftp://x\"\n")
            .contains("providers.openai.base_url"));
        assert!(err("[providers.openai]\napi_key_env = \"MISSING\"\n").contains("MISSING"));
        assert!(err("[providers.openai]\napi_version = \"1\"\n").contains("api_version"));
        assert!(err("listen = \"nope\"\n").contains("listen"));
        assert!(err("[upstream]\nread_timeout_ms = 0\n").contains("upstream.read_timeout_ms"));
        assert!(err("[credentials.c]\ntype = \"magic\"\n").contains("credentials.c.type"));
        let e = err("[[routes]]\nname=\"a\"\npath_prefix=\"/a\"\nprovider=\"openai\"\nupstream=\"https://a\"\ncredential=\"missing\"\n");
        assert!(e.contains("routes[0].credential"), "{e}");
    }

    #[test]
    fn secrets_do_not_appear_in_debug_output() {
        let c = from_str("[providers.openai]\napi_key = \"sk-hidden-123\"\n", &env()).unwrap();
        assert!(!format!("{c:?}").contains("sk-hidden-123"));
    }
}
