//! One immutable runtime: everything derived from the configuration — providers, routes,
//! credentials and their token slots, gateway keys, workspaces, virtual keys, JWT validators,
//! secret references and mappings — in one [`Runtime`] value, built by [`build`] from the
//! validated configuration and published through one `ArcSwap`. A request loads the snapshot
//! once when it starts and keeps it to its end, so a request in flight (a long stream too)
//! finishes on the runtime it began with.
//!
//! What must outlive a runtime lives in [`Warm`]: token slots, secret values, JWKS key sets and
//! verified tokens, each keyed by what it is. Building a runtime only looks them up (or creates
//! them, empty); `Runtime::activate` makes the new runtime's set the one the refresher keeps
//! warm and drops the rest. Building does no I/O; `warm_up` fetches what is new before the
//! runtime goes live.

mod auth;
pub mod circuits;
mod credentials;
mod tables;
mod warm_up;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::auth::gate::Authenticator;
use crate::auth::jwks::JwksCache;
use crate::auth::jwt::JwtValidator;
use crate::cache::dns::Dns;
use crate::cache::renewal::Timing;
use crate::cache::secrets::{Entry, SecretPolicy, SecretStore};
use crate::cache::tokens::{TokenCache, TokenSlot};
use crate::config::{Config, Timeouts};
use crate::credentials::spec::IdentityContext;
use crate::metrics::{Metrics, RouteCounters};
use crate::routing::Router;

pub use warm_up::WarmUp;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{0}")]
    Routing(String),
    #[error("auth.jwt: {0}")]
    Jwt(String),
}

/// A JWT validator's key set, as the refresher keeps it fresh.
#[derive(Debug, Clone)]
pub struct JwksWatch {
    /// The validator's place in the file (`auth.jwt[0]`), for `/readyz` and logs.
    pub name: String,
    pub cache: Arc<JwksCache>,
    pub every: Duration,
}

/// Everything derived from one configuration.
#[derive(Debug)]
pub struct Runtime {
    pub auth: Authenticator,
    pub router: Router,
    pub timeouts: Timeouts,
    /// Request counters of this runtime's routes.
    pub routes: RouteCounters,
    /// The token slots the configuration declares, by credential name.
    pub pinned: Vec<(Arc<str>, Arc<TokenSlot>)>,
    /// The secret entries the configuration maps.
    pub secrets: Vec<Arc<Entry>>,
    pub secret_policy: SecretPolicy,
    /// `[tokens] max_cached` and `idle_timeout_seconds`.
    pub token_limits: (usize, Duration),
    pub jwks: Vec<JwksWatch>,
    /// Hosts the configuration names, resolved before the runtime serves.
    pub fixed_hosts: Vec<Arc<str>>,
    /// SHA-256 of the configuration text (first 16 hex digits), for `keyway_config_info`;
    /// `-v<N>` appended when it includes store version N.
    pub digest: String,
    /// Built without the store's objects (not loaded yet): not ready.
    pub awaits_store: bool,
    /// The circuits of this runtime's stored configs and routes.
    pub circuits: Vec<circuits::Circuit>,
}

/// What outlives a runtime: the caches, keyed by what they hold, and the clients they use.
#[derive(Debug)]
pub struct Warm {
    pub tokens: Arc<TokenCache>,
    pub secrets: Arc<SecretStore>,
    pub dns: Arc<Dns>,
    pub metrics: Arc<Metrics>,
    pub timing: Timing,
    /// The HTTP client of the secret managers.
    pub secret_http: reqwest::Client,
    /// Where Entra, IMDS and STS are, for every token source (fixed for the process: a reload
    /// keeps the endpoints it started with).
    pub identity: IdentityContext,
    /// The active runtime's JWT validators, found again by their settings.
    validators: Mutex<Vec<Arc<JwtValidator>>>,
    /// Why the store's objects are not loaded (for `/readyz`), while they are not.
    store_problem: Mutex<Option<String>>,
    /// Circuit breakers, kept across rebuilds.
    pub circuits: circuits::Circuits,
}

impl Warm {
    pub fn new(config: &Config, metrics: Arc<Metrics>, timing: Timing) -> Warm {
        let id = &config.identity;
        Warm {
            tokens: Arc::new(TokenCache::new(id.token_max, id.token_idle, timing.clone())),
            secrets: Arc::new(SecretStore::new(
                policy(config),
                metrics.clone(),
                timing.clone(),
            )),
            dns: Arc::new(Dns::default()),
            metrics,
            timing,
            secret_http: crate::credentials::secrets::http_client(),
            identity: IdentityContext::new(
                id.authority.clone(),
                id.imds_endpoint.clone(),
                id.app_service.clone(),
                id.aws_region.clone(),
                id.sts_endpoint.clone(),
            ),
            validators: Mutex::new(Vec::new()),
            store_problem: Mutex::new(None),
            circuits: circuits::Circuits::default(),
        }
    }

    /// Records why the store cannot be read (`None`: it can).
    pub fn set_store_problem(&self, problem: Option<String>) {
        *self.store_problem.lock().unwrap_or_else(|p| p.into_inner()) = problem;
    }

    pub fn store_problem(&self) -> Option<String> {
        self.store_problem
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

fn policy(config: &Config) -> SecretPolicy {
    let s = &config.secrets;
    SecretPolicy {
        ttl: s.ttl,
        max_stale: s.max_stale,
        prefetch: s.prefetch,
        fetch_timeout: s.fetch_timeout,
    }
}

/// SHA-256 of a configuration's text, first 16 hex digits.
pub fn digest_of(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

/// Builds the runtime of `config` (whose text digests to `digest`). Pure but for the caches it
/// looks entries up in (or adds empty ones to): nothing is fetched, nothing goes live.
pub fn build(config: &Config, digest: String, warm: &Warm) -> Result<Runtime, BuildError> {
    let identity = warm.identity.clone();
    let mut creds = credentials::Builder::new(config, warm, identity.clone());
    let mut circuits = Vec::new();
    let router = tables::router(config, &mut creds, identity, &warm.circuits, &mut circuits)?;
    let (auth, jwks) = auth::authenticator(config, warm)?;
    let credentials::Built {
        pinned,
        secrets,
        unmapped,
    } = creds.finish();
    for slug in unmapped {
        log::warn!("secret reference '{slug}' is not mapped anywhere; it is never fetched");
    }
    Ok(Runtime {
        auth,
        routes: warm.metrics.route_counters(&router.route_names()),
        fixed_hosts: router.fixed_hosts(),
        router,
        timeouts: config.timeouts,
        pinned,
        secrets,
        secret_policy: policy(config),
        token_limits: (config.identity.token_max, config.identity.token_idle),
        jwks,
        digest,
        awaits_store: false,
        circuits,
    })
}

impl Runtime {
    /// Makes this runtime's credentials the ones the refresher keeps warm (after it has been
    /// published): slots and entries the previous runtime alone used are dropped, so are the
    /// metric series of routes it alone had.
    pub fn activate(&self, warm: &Warm, previous: Option<&Runtime>) {
        warm.tokens
            .set_limits(self.token_limits.0, self.token_limits.1);
        warm.tokens.pin(&self.pinned);
        warm.secrets.set_policy(self.secret_policy.clone());
        warm.secrets.activate(&self.secrets);
        warm.circuits.retain(&self.circuits);
        if let Some(p) = previous {
            warm.metrics.retire_routes(&p.routes, &self.routes);
            for (name, _) in &p.pinned {
                if !self.pinned.iter().any(|(n, _)| n == name) {
                    let _ = warm.metrics.token_expiry.remove_label_values(&[name]);
                    let _ = (warm.metrics.freshness.token_lifetime).remove_label_values(&[name]);
                }
            }
        }
        *warm.validators.lock().unwrap_or_else(|p| p.into_inner()) = self.auth.jwt.clone();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        warm.metrics.reload.live(&self.digest, now);
    }
}
