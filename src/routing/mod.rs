//! Which provider, which URL, which credential: turns a client request's path and headers into a
//! `Plan` the proxy executes. Pure (no Pingora, no I/O), so every rule here is unit-tested.
//!
//! Order: a configured front-door route whose prefix (and host) matches wins; otherwise `/v1/*`
//! requests are routed by Portkey headers; anything else is a 404.

pub mod custom_host;
mod plan;
pub mod portkey;
mod portkey_route;
pub mod provider;
pub mod url;

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Uri};

use crate::cache::secrets::{MappedSecret, SecretStore};
use crate::cache::tokens::TokenCache;
use crate::config::secrets::SecretUse;
use crate::config::{Config, Credential};
use crate::credentials::spec::ClientSecret;
use crate::credentials::spec::IdentityContext;
use crate::credentials::{AI_FOUNDRY_SCOPE, COGNITIVE_SCOPE};
use custom_host::TrustedHosts;
pub use plan::{AuthHeader, Plan, RouteError, RouteId, SecretAuth, UpstreamAuth};
use provider::{AuthStyle, Provider, ANTHROPIC_VERSION};
use url::BaseUrl;

pub(crate) const AUTHORIZATION: HeaderName = http::header::AUTHORIZATION;
pub(crate) const API_KEY: HeaderName = HeaderName::from_static("api-key");
pub(crate) const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
pub(crate) const ANTHROPIC_VERSION_HEADER: HeaderName =
    HeaderName::from_static("anthropic-version");

/// A host known at start-up: its `Host` header is built once.
#[derive(Debug, Clone)]
struct FixedHost {
    host: Arc<str>,
    host_header: HeaderValue,
}

impl FixedHost {
    fn of(base: &BaseUrl) -> Option<FixedHost> {
        if base.has_placeholder() {
            return None;
        }
        Some(FixedHost {
            host: Arc::from(&*base.host),
            host_header: HeaderValue::from_str(&base.host_header(&base.host)).ok()?,
        })
    }
}

#[derive(Debug)]
struct ProviderRuntime {
    base: BaseUrl,
    fixed: Option<FixedHost>,
    /// The config file's key, as a ready header; used when the client brings none.
    default_key: Option<crate::secret::Secret>,
    /// The default key from a secret reference.
    mapped_key: Option<MappedKey>,
    api_version: Option<Box<str>>,
    /// The config file overrides the base URL.
    configured: bool,
}

#[derive(Debug)]
struct RouteRuntime {
    path_prefix: String,
    host: Option<String>,
    provider: Provider,
    base: BaseUrl,
    fixed: FixedHost,
    strip_prefix: bool,
    auth: Option<UpstreamAuth>,
    secret_ref: Option<usize>,
}

/// Routing tables built once from the config; shared by every request.
#[derive(Debug)]
pub struct Router {
    providers: Vec<ProviderRuntime>,
    routes: Vec<RouteRuntime>,
    trusted: TrustedHosts,
    route_names: Vec<String>,
    tokens: Arc<TokenCache>,
    identity: IdentityContext,
    identity_defaults: crate::config::WorkloadDefaults,
    ambient_from_headers: bool,
    pub(crate) virtual_keys: crate::auth::workspace::VirtualKeys,
    /// Each virtual key's upstream credential (and the secret behind it), built once.
    vk_auth: std::collections::HashMap<String, (Option<UpstreamAuth>, Option<usize>)>,
}

/// What `Router::new` needs besides the config: the caches credentials live in.
pub struct Caches<'a> {
    pub tokens: Arc<TokenCache>,
    pub secrets: &'a Arc<SecretStore>,
    pub identity: IdentityContext,
}

impl Router {
    pub fn new(config: &Config, caches: Caches<'_>) -> Result<Router, String> {
        let Caches {
            tokens,
            secrets,
            identity,
        } = caches;
        let providers = Provider::ALL
            .iter()
            .map(|&p| {
                let settings = config.providers.get(&p);
                let mapped_key = match settings.and_then(|s| s.key_mapping.as_ref()) {
                    Some(u) => MappedKey::new(p, secret_id(secrets, u)?),
                    None => None,
                };
                let base = settings
                    .and_then(|s| s.base_url.clone())
                    .unwrap_or_else(|| {
                        BaseUrl::parse(p.default_base_url()).expect("built-in base URLs parse")
                    });
                Ok(ProviderRuntime {
                    configured: settings.is_some_and(|s| s.base_url.is_some()),
                    fixed: FixedHost::of(&base),
                    base,
                    default_key: settings.and_then(|s| s.api_key.clone()),
                    mapped_key,
                    api_version: settings.and_then(|s| s.api_version.as_deref().map(Into::into)),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let ctx = AuthContext {
            config,
            tokens: &tokens,
            secrets,
            identity: &identity,
        };
        let mut routes = Vec::with_capacity(config.routes.len());
        for r in &config.routes {
            let (auth, secret_ref) = ctx
                .credential_auth(r.provider, &r.credential, &r.upstream.host)
                .map_err(|e| format!("routes.{}: credential {}: {e}", r.name, r.credential))?;
            routes.push(RouteRuntime {
                path_prefix: r.path_prefix.clone(),
                host: r.host.clone(),
                provider: r.provider,
                fixed: FixedHost::of(&r.upstream).ok_or("route upstream has no fixed host")?,
                base: r.upstream.clone(),
                strip_prefix: r.strip_prefix,
                auth,
                secret_ref,
            });
        }
        let mut vk_auth = std::collections::HashMap::new();
        for vk in config.auth.virtual_keys.iter() {
            let base = config
                .providers
                .get(&vk.provider)
                .and_then(|p| p.base_url.clone())
                .unwrap_or_else(|| {
                    BaseUrl::parse(vk.provider.default_base_url())
                        .expect("built-in base URLs parse")
                });
            let host = base
                .host_with(vk.resource_name.as_deref(), None)
                .into_owned();
            let auth = ctx
                .credential_auth(vk.provider, &vk.credential, &host)
                .map_err(|e| {
                    format!("virtual_keys.{}: credential {}: {e}", vk.id, vk.credential)
                })?;
            vk_auth.insert(vk.id.to_string(), auth);
        }
        let route_names = route_names(config);
        Ok(Router {
            providers,
            routes,
            trusted: config.trusted_custom_hosts.clone(),
            route_names,
            tokens,
            identity,
            identity_defaults: config.identity.workload.clone(),
            ambient_from_headers: config.identity.ambient_from_headers,
            virtual_keys: config.auth.virtual_keys.clone(),
            vk_auth,
        })
    }

    /// Metric labels for `RouteId`s, in index order.
    pub fn route_names(&self) -> &[String] {
        &self.route_names
    }

    /// Hosts the config names (provider overrides, routes): resolved before traffic is accepted.
    /// Built-in provider hosts are resolved on first use instead, so an unused provider never
    /// costs a lookup.
    pub fn fixed_hosts(&self) -> Vec<Arc<str>> {
        let mut hosts: Vec<Arc<str>> = self
            .providers
            .iter()
            .filter(|p| p.configured)
            .filter_map(|p| p.fixed.as_ref().map(|f| f.host.clone()))
            .chain(self.routes.iter().map(|r| r.fixed.host.clone()))
            .collect();
        hosts.sort();
        hosts.dedup();
        hosts
    }

    /// Plans one request. `host` is the request's authority without the port; `caller` is the
    /// authenticated caller in the enforced posture (`None` in the open one).
    pub fn route(
        &self,
        uri: &Uri,
        host: Option<&str>,
        headers: &HeaderMap,
        caller: Option<&crate::auth::Caller>,
    ) -> Result<Plan, RouteError> {
        let path = uri.path();
        if let Some((i, r)) = self.match_route(path, host) {
            return Ok(self.front_door(i, r, uri));
        }
        match path.strip_prefix("/v1/") {
            Some(op) if !op.is_empty() => {
                portkey_route::plan(self, op, uri.query(), headers, caller)
            }
            _ => Err(RouteError::NoRoute),
        }
    }

    /// The precomputed upstream credential of virtual key `id`, and the secret behind it.
    pub(crate) fn vk_auth(&self, id: &str) -> (Option<UpstreamAuth>, Option<usize>) {
        self.vk_auth.get(id).cloned().unwrap_or_default()
    }

    fn match_route(&self, path: &str, host: Option<&str>) -> Option<(usize, &RouteRuntime)> {
        self.routes.iter().enumerate().find(|(_, r)| {
            let host_ok = match (&r.host, host) {
                (None, _) => true,
                (Some(want), Some(got)) => want.eq_ignore_ascii_case(got),
                (Some(_), None) => false,
            };
            host_ok && prefix_matches(path, &r.path_prefix)
        })
    }

    fn front_door(&self, i: usize, r: &RouteRuntime, uri: &Uri) -> Plan {
        let path = uri.path();
        let rest = if r.strip_prefix {
            &path[r.path_prefix.len()..]
        } else {
            path
        };
        let new_path = if !r.strip_prefix && r.base.path.is_empty() {
            None
        } else {
            let mut p = String::with_capacity(r.base.path.len() + rest.len() + 64);
            p.push_str(&r.base.path);
            if !rest.starts_with('/') {
                p.push('/');
            }
            p.push_str(rest);
            push_query(&mut p, uri.query(), None);
            Some(p)
        };
        Plan {
            provider: r.provider,
            route: RouteId(i + 2),
            tls: r.base.tls,
            host: r.fixed.host.clone(),
            port: r.base.port,
            host_header: r.fixed.host_header.clone(),
            path: new_path,
            auth: r.auth.clone(),
            add_anthropic_version: r.provider.auth_style() == AuthStyle::Anthropic,
            check_resolved_ips: false,
            read_timeout: None,
            virtual_key: None,
            secret_ref: r.secret_ref,
        }
    }
}

/// Metric labels for `RouteId`s, in index order: "none", "portkey", then the configured routes.
pub fn route_names(config: &Config) -> Vec<String> {
    let mut names = vec!["none".to_owned(), "portkey".to_owned()];
    names.extend(config.routes.iter().map(|r| r.name.clone()));
    names
}

/// Where configured credentials are turned into upstream auth.
struct AuthContext<'a> {
    config: &'a Config,
    tokens: &'a TokenCache,
    secrets: &'a Arc<SecretStore>,
    identity: &'a IdentityContext,
}

impl AuthContext<'_> {
    /// The upstream credential of a `[credentials.<name>]` used with `provider` at `host` (the
    /// host picks the default Entra scope), and the secret-store entry behind it.
    fn credential_auth(
        &self,
        provider: Provider,
        name: &str,
        host: &str,
    ) -> Result<(Option<UpstreamAuth>, Option<usize>), String> {
        let cred = &self.config.credentials[name];
        let secret_ref = cred
            .secret_uses()
            .map(|u| secret_id(self.secrets, u))
            .transpose()?;
        let auth = match cred {
            Credential::ApiKey(key) => {
                auth_for(provider, key.expose(), true)?.map(UpstreamAuth::Static)
            }
            Credential::MappedKey(_) => secret_ref.and_then(|id| secret_auth(provider, id, true)),
            Credential::Token(t) => {
                let mapped = |_: &SecretUse| match secret_ref {
                    Some(id) => {
                        ClientSecret::Lookup(Arc::new(MappedSecret::new(self.secrets.clone(), id)))
                    }
                    None => unreachable!("a mapped client secret has a store entry"),
                };
                let spec = t.spec(default_scope(host), &mapped);
                let slot = self
                    .tokens
                    .slot(&spec, Some(name), || self.identity.source(&spec))
                    .ok_or(
                        "tokens.max_cached is smaller than the number of configured credentials",
                    )?;
                Some(UpstreamAuth::Token(slot))
            }
        };
        Ok((auth, secret_ref))
    }
}

fn secret_id(secrets: &SecretStore, u: &SecretUse) -> Result<usize, String> {
    secrets
        .id(u)
        .ok_or_else(|| "secret mapping without a store entry".to_owned())
}

/// A provider's default key mapped from a secret: its store entry and its header in both of
/// the provider's styles (see `auth_for`'s `native`).
#[derive(Debug)]
pub(crate) struct MappedKey {
    pub id: usize,
    pub native: UpstreamAuth,
    pub compat: UpstreamAuth,
}

impl MappedKey {
    fn new(provider: Provider, id: usize) -> Option<MappedKey> {
        Some(MappedKey {
            id,
            native: secret_auth(provider, id, true)?,
            compat: secret_auth(provider, id, false)?,
        })
    }
}

/// A mapped key's header for `provider`; `native` as in `auth_for`.
fn secret_auth(provider: Provider, id: usize, native: bool) -> Option<UpstreamAuth> {
    let (name, bearer) = match provider.auth_style() {
        AuthStyle::None => return None,
        AuthStyle::Bearer => (AUTHORIZATION, true),
        AuthStyle::AzureApiKey => (API_KEY, false),
        AuthStyle::Anthropic if native => (X_API_KEY, false),
        AuthStyle::Anthropic => (AUTHORIZATION, true),
    };
    Some(UpstreamAuth::Secret(Arc::new(SecretAuth::new(
        id, name, bearer,
    ))))
}

/// Entra scope for an Azure host: AI Foundry hosts want their own audience.
pub(crate) fn default_scope(host: &str) -> &'static str {
    if host.ends_with(".services.ai.azure.com") {
        AI_FOUNDRY_SCOPE
    } else {
        COGNITIVE_SCOPE
    }
}

/// `/openai/` matches `/openai/x`; `/openai` matches `/openai` and `/openai/x`, not `/openaix`.
fn prefix_matches(path: &str, prefix: &str) -> bool {
    path.starts_with(prefix)
        && (prefix.ends_with('/')
            || path.len() == prefix.len()
            || path.as_bytes()[prefix.len()] == b'/')
}

/// Appends the client's query, without `drop` (a parameter keyway sets itself).
fn push_query(out: &mut String, query: Option<&str>, drop: Option<&str>) {
    let Some(q) = query.filter(|q| !q.is_empty()) else {
        return;
    };
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let name = pair.split('=').next().unwrap_or(pair);
        if drop.is_some_and(|d| d == name) {
            continue;
        }
        out.push(if out.contains('?') { '&' } else { '?' });
        out.push_str(pair);
    }
}

/// The header that carries `key` for `provider`. `native` selects Anthropic's own API (x-api-key)
/// over its OpenAI-compatible one (Bearer).
fn auth_for(provider: Provider, key: &str, native: bool) -> Result<Option<AuthHeader>, String> {
    let (name, value) = match provider.auth_style() {
        AuthStyle::None => return Ok(None),
        AuthStyle::Bearer => (AUTHORIZATION, format!("Bearer {key}")),
        AuthStyle::AzureApiKey => (API_KEY, key.to_owned()),
        AuthStyle::Anthropic if native => (X_API_KEY, key.to_owned()),
        AuthStyle::Anthropic => (AUTHORIZATION, format!("Bearer {key}")),
    };
    let mut value = HeaderValue::from_str(&value)
        .map_err(|_| "the key holds characters not allowed in a header")?;
    value.set_sensitive(true);
    Ok(Some(AuthHeader { name, value }))
}

/// The `anthropic-version` value sent when the client sends none.
pub fn anthropic_version() -> HeaderValue {
    HeaderValue::from_static(ANTHROPIC_VERSION)
}

#[cfg(test)]
mod tests;
