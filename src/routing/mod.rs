//! Which provider, which URL, which credential: turns a client request's path and headers into a
//! `Plan` the proxy executes. Pure (no Pingora, no I/O), so every rule here is unit-tested.
//!
//! Order: a configured front-door route whose prefix (and host) matches wins; otherwise `/v1/*`
//! requests are routed by Portkey headers; anything else is a 404. Routing takes the caller as
//! auth resolved it (`Access`: the posture and the virtual key the caller may use) and never
//! decides who may do what. The tables (`RouterParts`) are built by the runtime builder from
//! the configuration; nothing here reads the configuration itself.

mod credentials;
pub mod custom_host;
mod plan;
pub mod portkey;
mod portkey_route;
pub mod strategy;
mod tables;
pub mod url;

use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Uri};

pub use credentials::{auth_for, default_scope, secret_auth, ConfiguredKey, MappedKey};
use custom_host::TrustedHosts;
pub use plan::{AuthHeader, Plan, RouteError, SecretAuth, UpstreamAuth};
pub use portkey_route::Parsed;
pub use tables::{
    FixedHost, FrontDoor, FrontDoorTarget, HeaderCredentials, ProviderRoute, VirtualKeyRoute,
};

use crate::vocab::{self, AuthStyle, RouteId, ANTHROPIC_VERSION};

pub(crate) const AUTHORIZATION: HeaderName = http::header::AUTHORIZATION;
pub(crate) const API_KEY: HeaderName = HeaderName::from_static("api-key");
pub(crate) const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
pub(crate) const ANTHROPIC_VERSION_HEADER: HeaderName =
    HeaderName::from_static("anthropic-version");

/// What auth decided about the caller, as far as routing goes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Access<'a> {
    /// The enforced posture: the caller's headers hold a gateway credential, never a provider
    /// key, so only keyway's own credentials serve.
    pub enforced: bool,
    /// The virtual key the caller named (or is bound to), already authorized.
    pub virtual_key: Option<&'a str>,
    /// The caller's workspace (a stored config of a workspace serves only its callers).
    pub workspace: Option<&'a str>,
}

/// A routing config stored under a slug, which `x-portkey-config` may name instead of carrying
/// the JSON.
#[derive(Debug, Clone)]
pub struct StoredConfig {
    /// Its strategy tree, parsed once (with its circuits attached).
    pub tree: Arc<strategy::Tree<portkey::PortkeyConfig>>,
    /// `None`: every caller may name it.
    pub workspace: Option<Arc<str>>,
}

/// What a request's strategy needs from the proxy before its first attempt.
#[derive(Debug, Clone, Copy)]
pub struct Needs {
    /// Most attempts the walk can make: above 1, the body is kept for replay.
    pub attempts: u32,
    /// Some condition reads the body's params.
    pub reads_params: bool,
    /// Some target overrides params in the body.
    pub overrides: bool,
}

/// Everything the router holds, built by the runtime builder.
#[derive(Debug)]
pub struct RouterParts {
    /// One row per provider, indexed by `Provider::index()`.
    pub providers: Vec<ProviderRoute>,
    pub routes: Vec<FrontDoor>,
    pub trusted: TrustedHosts,
    pub virtual_keys: HashMap<String, VirtualKeyRoute>,
    pub headers: HeaderCredentials,
    pub configs: HashMap<String, StoredConfig>,
}

/// Routing tables of one runtime; shared by every request on it.
#[derive(Debug)]
pub struct Router {
    providers: Vec<ProviderRoute>,
    routes: Vec<FrontDoor>,
    trusted: TrustedHosts,
    virtual_keys: HashMap<String, VirtualKeyRoute>,
    headers: HeaderCredentials,
    configs: HashMap<String, StoredConfig>,
    /// Inline `x-portkey-config` values already parsed, by their text.
    inline: quick_cache::sync::Cache<String, Arc<strategy::Tree<portkey::PortkeyConfig>>>,
}

/// Distinct inline configs kept parsed per runtime.
const INLINE_CONFIGS: usize = 256;

impl Router {
    pub fn new(p: RouterParts) -> Router {
        Router {
            providers: p.providers,
            routes: p.routes,
            trusted: p.trusted,
            virtual_keys: p.virtual_keys,
            headers: p.headers,
            configs: p.configs,
            inline: quick_cache::sync::Cache::new(INLINE_CONFIGS),
        }
    }

    /// Metric labels for `RouteId`s, in index order: "none", "portkey", then the routes.
    pub fn route_names(&self) -> Vec<String> {
        let mut names = vec!["none".to_owned(), "portkey".to_owned()];
        names.extend(self.routes.iter().map(|r| r.name.clone()));
        names
    }

    /// Hosts the configuration names (provider overrides, routes): resolved before traffic is
    /// accepted. Built-in provider hosts are resolved on first use instead, so an unused
    /// provider never costs a lookup.
    pub fn fixed_hosts(&self) -> Vec<Arc<str>> {
        let mut hosts: Vec<Arc<str>> = self
            .providers
            .iter()
            .filter(|p| p.configured)
            .filter_map(|p| p.fixed.as_ref().map(|f| f.host.clone()))
            .chain(self.routes.iter().flat_map(|r| {
                r.targets
                    .leaves()
                    .iter()
                    .map(|l| l.target.fixed.host.clone())
            }))
            .collect();
        hosts.sort();
        hosts.dedup();
        hosts
    }

    /// Reads what the request asks for: a front-door route, or the Portkey headers (the config
    /// JSON parsed once). `host` is the request's authority without the port.
    pub fn parse<'r>(
        &self,
        uri: &'r Uri,
        host: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<Parsed<'r>, RouteError> {
        let path = uri.path();
        if let Some(i) = self.match_route(path, host) {
            return Ok(Parsed::FrontDoor(i));
        }
        match path.strip_prefix("/v1/") {
            Some(op) if !op.is_empty() => portkey_route::parse(self, op, uri.query(), headers),
            _ => Err(RouteError::NoRoute),
        }
    }

    /// How many targets `parsed` has: each is planned (and its virtual key granted) before
    /// anything is sent.
    pub fn targets(&self, parsed: &Parsed<'_>) -> usize {
        match parsed {
            Parsed::FrontDoor(i) => self.routes[*i].targets.leaves().len(),
            Parsed::Portkey(p) => p.leaf_count(),
        }
    }

    /// Plans target `leaf` of a parsed request for a caller with `access`.
    pub fn plan(
        &self,
        parsed: &Parsed<'_>,
        leaf: usize,
        uri: &Uri,
        headers: &HeaderMap,
        access: Access<'_>,
    ) -> Result<Plan, RouteError> {
        match parsed {
            Parsed::FrontDoor(i) => Ok(self.front_door(*i, leaf, uri)),
            Parsed::Portkey(p) => portkey_route::plan(self, p, leaf, headers, access),
        }
    }

    /// What the request's strategy needs from the proxy; `None` when the request is a single
    /// attempt at its one target (no retry, no override): the proxy's plain path.
    pub fn needs(&self, parsed: &Parsed<'_>) -> Option<Needs> {
        fn of<L>(t: &strategy::Tree<L>) -> Option<Needs> {
            (!t.is_plain()).then(|| Needs {
                attempts: t.max_attempts(),
                reads_params: t.reads_params(),
                overrides: t.has_overrides(),
            })
        }
        match parsed {
            Parsed::FrontDoor(i) => of(&self.routes[*i].targets),
            Parsed::Portkey(p) => of(p.tree.as_ref()?),
        }
    }

    /// The strategy's shape to walk (its targets are planned one by one as the walk reaches
    /// them); `None` on the plain path (see `needs`).
    pub fn shape(&self, parsed: &Parsed<'_>) -> Option<strategy::Tree<()>> {
        fn of<L>(t: &strategy::Tree<L>) -> Option<strategy::Tree<()>> {
            (!t.is_plain()).then(|| t.with_targets(vec![(); t.leaves().len()]))
        }
        match parsed {
            Parsed::FrontDoor(i) => of(&self.routes[*i].targets),
            Parsed::Portkey(p) => of(p.tree.as_ref()?),
        }
    }

    /// The provider target `leaf` goes to (its virtual key's, else its own), for the
    /// allow-lists checked before anything is planned.
    pub fn provider(
        &self,
        parsed: &Parsed<'_>,
        leaf: usize,
        headers: &HeaderMap,
        virtual_key: Option<&str>,
    ) -> Result<vocab::Provider, RouteError> {
        match parsed {
            Parsed::FrontDoor(i) => Ok(self.routes[*i].targets.leaves()[leaf].target.provider),
            Parsed::Portkey(p) => portkey_route::provider(self, p, leaf, headers, virtual_key),
        }
    }

    /// `parse` then `plan` of the first target, for callers that need no authorization step
    /// in between.
    pub fn route(
        &self,
        uri: &Uri,
        host: Option<&str>,
        headers: &HeaderMap,
        access: Access<'_>,
    ) -> Result<Plan, RouteError> {
        let parsed = self.parse(uri, host, headers)?;
        self.plan(&parsed, 0, uri, headers, access)
    }

    fn match_route(&self, path: &str, host: Option<&str>) -> Option<usize> {
        self.routes.iter().position(|r| {
            let host_ok = match (&r.host, host) {
                (None, _) => true,
                (Some(want), Some(got)) => want.eq_ignore_ascii_case(got),
                (Some(_), None) => false,
            };
            host_ok && prefix_matches(path, &r.path_prefix)
        })
    }

    fn front_door(&self, i: usize, leaf: usize, uri: &Uri) -> Plan {
        let r = &self.routes[i];
        let l = &r.targets.leaves()[leaf];
        let t = &l.target;
        let path = uri.path();
        let rest = if r.strip_prefix {
            &path[r.path_prefix.len()..]
        } else {
            path
        };
        let new_path = if !r.strip_prefix && t.base.path.is_empty() {
            None
        } else {
            let mut p = String::with_capacity(t.base.path.len() + rest.len() + 64);
            p.push_str(&t.base.path);
            if !rest.starts_with('/') {
                p.push('/');
            }
            p.push_str(rest);
            push_query(&mut p, uri.query(), None);
            Some(p)
        };
        Plan {
            provider: t.provider,
            route: RouteId(i + 2),
            tls: t.base.tls,
            host: t.fixed.host.clone(),
            port: t.base.port,
            host_header: t.fixed.host_header.clone(),
            path: new_path,
            auth: t.auth.clone(),
            add_anthropic_version: t.provider.auth_style() == AuthStyle::Anthropic,
            check_resolved_ips: false,
            read_timeout: l.timeout,
            virtual_key: None,
            secret: t.secret.clone(),
        }
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

/// The `anthropic-version` value sent when the client sends none.
pub fn anthropic_version() -> HeaderValue {
    HeaderValue::from_static(ANTHROPIC_VERSION)
}

#[cfg(test)]
mod tests;
