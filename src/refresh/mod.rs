//! The background service that keeps every cache of the active runtime warm. It is the only
//! writer besides a credential's very first use: tokens are renewed ahead of expiry, secrets
//! within their TTL and JWT key sets on their period (all scheduled by the refresh engine,
//! `cache::renewal`); failures are retried with back-off while the old value serves, idle
//! header credentials are dropped and upstream hosts re-resolved. It reads the runtime afresh
//! at every tick, so a reload changes what it refreshes at once.

pub mod readiness;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::cache::renewal::FailureClass;
use crate::cache::tokens::TokenSlot;
use crate::metrics::Metrics;
use crate::runtime::{JwksWatch, Runtime, Warm};

/// How often upstream hosts are re-resolved (getaddrinfo gives no TTL).
const DNS_REFRESH: Duration = Duration::from_secs(30);
/// How often the caches are checked for due refreshes.
const TICK: Duration = Duration::from_millis(250);

pub struct Refresher {
    pub runtime: Arc<ArcSwap<Runtime>>,
    pub warm: Arc<Warm>,
    pub ready: Arc<readiness::Readiness>,
}

impl Refresher {
    /// Starts due refreshes in their own tasks (a slow identity provider must not delay the
    /// others) and publishes the token gauges.
    fn refresh_due_tokens(&self) {
        let tokens = &self.warm.tokens;
        for slot in tokens.all() {
            if slot.claim_due() {
                let metrics = self.warm.metrics.clone();
                let name = tokens.name_of(&slot.key);
                tokio::spawn(async move { refresh_one(&slot, name.as_deref(), &metrics).await });
            }
        }
        tokens.drop_idle();
        let m = &self.warm.metrics;
        m.token_cache_size.set(tokens.len() as i64);
        for (name, slot) in tokens.pinned() {
            m.token_expiry
                .with_label_values(&[&*name])
                .set(slot.seconds_left());
            m.freshness
                .token_lifetime
                .with_label_values(&[&*name])
                .set(slot.lifetime_seconds());
        }
    }

    /// Starts due key-set refreshes and publishes each remote set's age.
    fn refresh_due_jwks(&self, rt: &Runtime) {
        for j in &rt.jwks {
            if j.cache.renewal().claim_due() {
                tokio::spawn(refresh_jwks(j.clone(), self.warm.metrics.clone()));
            }
        }
        let ages = rt.jwks.iter().filter_map(|j| {
            let age = j.cache.age()?;
            Some((j.name.as_str(), age.as_secs_f64()))
        });
        self.warm.metrics.freshness.jwks_ages(ages);
    }

    /// Ready once every configured credential holds a token, every mapped secret (when
    /// prefetched) a value and every JWT validator its key set; until then `/readyz` names
    /// what is missing.
    fn update_ready(&self, rt: &Runtime) {
        if !self.ready.is_ready() && self.ready.update(rt.missing(&self.warm)) {
            log::info!(
                "keyway is ready: every configured credential holds a token or secret and every JWT validator its keys"
            );
        }
        let ready = self.ready.is_ready();
        self.warm.metrics.freshness.ready.set(i64::from(ready));
    }
}

async fn refresh_one(slot: &TokenSlot, name: Option<&str>, metrics: &Metrics) {
    if let Err(e) = slot.refresh(metrics).await {
        metrics.token_refresh_failed(slot.mode);
        let which = name.unwrap_or("(from request headers)");
        log::warn!("token refresh failed for credential {which}: {e}; retrying with back-off");
    }
}

/// Fetches a key set; a failure keeps the cached keys and backs off.
async fn refresh_jwks(j: JwksWatch, metrics: Arc<Metrics>) {
    let renewal = j.cache.renewal();
    match j.cache.refresh().await {
        Ok(_) => {
            metrics.jwks_refreshes.with_label_values(&["ok"]).inc();
            renewal.succeeded_in(j.every);
        }
        Err(e) => {
            metrics.jwks_refreshes.with_label_values(&["failed"]).inc();
            log::warn!(
                "jwks refresh for {} from its {} failed: {e}; keeping the cached keys",
                j.name,
                j.cache.source_label()
            );
            let class = match e.is_transient() {
                true => FailureClass::Transient,
                false => FailureClass::Broken,
            };
            renewal.failed(e.to_string(), class);
        }
    }
}

#[async_trait]
impl BackgroundService for Refresher {
    async fn start_with_ready_notifier(
        &self,
        mut shutdown: ShutdownWatch,
        ready: pingora::services::ServiceReadyNotifier,
    ) {
        // Unresolvable hosts do not block start-up: they are resolved on first use instead,
        // and a 502 names them if they still fail then.
        let rt = self.runtime.load_full();
        for (host, e) in self.warm.dns.pin(&rt.fixed_hosts).await {
            log::warn!("dns: cannot resolve {host} at start-up ({e}); will retry on first use");
        }
        // The listener opens now; /readyz waits for the configured credentials' first tokens.
        ready.notify_ready();
        let mut tick = tokio::time::interval(TICK);
        let mut dns_tick = tokio::time::interval(DNS_REFRESH);
        dns_tick.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => {
                    let rt = self.runtime.load_full();
                    self.refresh_due_tokens();
                    self.warm.secrets.refresh_due();
                    self.refresh_due_jwks(&rt);
                    self.update_ready(&rt);
                }
                _ = dns_tick.tick() => {
                    let warm = self.warm.clone();
                    tokio::spawn(async move {
                        let failed = warm.dns.refresh().await;
                        warm.metrics.dns_refresh_failures.inc_by(failed as u64);
                    });
                }
            }
        }
    }
}
