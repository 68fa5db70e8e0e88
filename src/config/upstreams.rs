//! Where requests go and with which credential: `[upstream]` timeouts, `[providers.<slug>]`
//! overrides, `[credentials.<name>]` and `[[routes]]`, validated into runtime types.

use std::collections::BTreeMap;
use std::time::Duration;

use super::identity::{self, ClientSecretConfig, Identity, TokenCredential};
use super::schema;
use super::secrets::{self, Entity, SecretUse, SecretsSettings};
use super::{invalid, secret_from, ConfigError};
use crate::env::Env;
use crate::routing::strategy::{self, ParseOptions, Tree};
use crate::routing::url::BaseUrl;
use crate::secret::Secret;
use crate::vocab::Provider;

/// `[upstream]`: timeouts, and how requests are retried and replayed.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub total_connect: Duration,
    pub read: Duration,
    pub idle: Duration,
    /// Bodies up to this size are kept and sent again on each attempt of a strategy.
    pub replay_limit: usize,
    /// The base of the exponential back-off between retries.
    pub backoff: Duration,
    /// Attempts per request, all targets and retries together.
    pub max_attempts: u32,
}

/// Pingora's own bound on the attempts of one request (`ServerConf::max_retries`).
pub const MAX_ATTEMPTS: u32 = 16;

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
    pub strip_prefix: bool,
    /// One target, or several with the route's strategy.
    pub targets: Tree<RouteTarget>,
}

/// Where one target of a route sends requests, with which credential.
#[derive(Debug, Clone)]
pub struct RouteTarget {
    pub provider: Provider,
    pub upstream: BaseUrl,
    pub credential: String,
}

pub(super) fn validate_timeouts(u: &schema::UpstreamSection) -> Result<Timeouts, ConfigError> {
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
        replay_limit: match u.replay_body_limit_bytes.unwrap_or(1 << 20) {
            n if n > 64 << 20 => {
                return Err(invalid(
                    "upstream.replay_body_limit_bytes",
                    "must be at most 67108864 (64 MiB)",
                ))
            }
            n => n as usize,
        },
        backoff: match u.retry_backoff_ms.unwrap_or(1_000) {
            n if n > 60_000 => {
                return Err(invalid(
                    "upstream.retry_backoff_ms",
                    "must be at most 60000",
                ))
            }
            n => Duration::from_millis(n),
        },
        max_attempts: match u.max_attempts.unwrap_or(MAX_ATTEMPTS) {
            n @ 1..=MAX_ATTEMPTS => n,
            _ => return Err(invalid("upstream.max_attempts", "must be from 1 to 16")),
        },
    })
}

pub(super) fn validate_providers(
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

pub(super) fn validate_credentials(
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

pub(super) fn validate_routes(
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
        let targets = route_targets(&r, &path, credentials)?;
        out.push(Route {
            name: r.name,
            path_prefix: r.path_prefix,
            host: r.host.map(|h| h.to_ascii_lowercase()),
            strip_prefix: r.strip_prefix,
            targets,
        });
    }
    Ok(out)
}

/// Unset optional fields serialize as `null`; the strategy parser reads them as absent.
fn drop_nulls(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(o) => {
            // An empty `targets` (the default) means none: the node is a target itself.
            let empty_targets = |k: &str, x: &serde_json::Value| {
                k == "targets" && x.as_array().is_some_and(|a| a.is_empty())
            };
            o.retain(|k, x| !x.is_null() && !empty_targets(k, x));
            o.values_mut().for_each(drop_nulls);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// A route's targets as a strategy tree: the route itself is the root, so a route without
/// `targets` is a one-leaf tree.
fn route_targets(
    r: &schema::RouteSection,
    path: &str,
    credentials: &BTreeMap<String, Credential>,
) -> Result<Tree<RouteTarget>, ConfigError> {
    #[derive(serde::Deserialize)]
    struct Leaf {
        provider: Option<String>,
        upstream: Option<String>,
        credential: Option<String>,
    }
    let mut value = serde_json::to_value(r).map_err(|e| invalid(path, e.to_string()))?;
    drop_nulls(&mut value);
    if let Some(o) = value.as_object_mut() {
        for k in ["name", "path_prefix", "host", "strip_prefix"] {
            o.remove(k);
        }
    }
    // "route.targets[1]" in the tree is "routes[i].targets[1]" in the file.
    let in_file = |p: &str| format!("{path}{}", p.strip_prefix("route").unwrap_or(p));
    let opts = ParseOptions {
        root_path: "route",
        default_retry: None,
        default_timeout: None,
    };
    let tree = strategy::parse(&value, &opts, |_, merged| {
        serde_json::from_value::<Leaf>(serde_json::Value::Object(merged.clone()))
            .map_err(|_| "provider, upstream and credential must be strings".to_owned())
    })
    .map_err(|e| invalid(in_file(&e.path), e.problem))?;
    tree.try_map(|leaf_path, l| {
        let at = |field: &str| format!("{}.{field}", in_file(leaf_path));
        let slug = l.provider.as_deref().unwrap_or(&r.provider);
        let provider = Provider::from_slug(slug)
            .ok_or_else(|| invalid(at("provider"), format!("unknown provider '{slug}'")))?;
        let raw = l
            .upstream
            .ok_or_else(|| invalid(at("upstream"), "is required (on the target or the route)"))?;
        let upstream = BaseUrl::parse(&raw).map_err(|m| invalid(at("upstream"), m))?;
        if upstream.has_placeholder() {
            return Err(invalid(
                at("upstream"),
                "must name a concrete host (no {resource}/{region})",
            ));
        }
        let credential = l
            .credential
            .ok_or_else(|| invalid(at("credential"), "is required (on the target or the route)"))?;
        if !credentials.contains_key(&credential) {
            return Err(invalid(
                at("credential"),
                format!("no [credentials.{credential}] section"),
            ));
        }
        Ok(RouteTarget {
            provider,
            upstream,
            credential,
        })
    })
}
