//! The background service that keeps every cache warm. It is the only writer besides a
//! credential's very first use: tokens are renewed ahead of expiry (`schedule.rs`), failures
//! retried with back-off while the old token serves, idle header credentials dropped, and
//! upstream hosts re-resolved.

pub mod readiness;
pub mod schedule;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::auth::jwks::JwksCache;
use crate::cache::dns::Dns;
use crate::cache::tokens::{TokenCache, TokenSlot};
use crate::metrics::Metrics;

/// How often upstream hosts are re-resolved (getaddrinfo gives no TTL).
const DNS_REFRESH: Duration = Duration::from_secs(30);
/// How often token slots are checked for due refreshes.
const TICK: Duration = Duration::from_millis(250);

pub struct Refresher {
    pub dns: Arc<Dns>,
    pub fixed_hosts: Vec<Arc<str>>,
    pub tokens: Arc<TokenCache>,
    pub secrets: Arc<crate::cache::secrets::SecretStore>,
    /// JWKS documents of the JWT validators, with their config path (`auth.jwt[0]`) and
    /// refresh intervals.
    pub jwks: Vec<(String, Arc<JwksCache>, Duration)>,
    pub metrics: Arc<Metrics>,
    pub ready: Arc<readiness::Readiness>,
}

impl Refresher {
    /// Starts due refreshes in their own tasks (a slow identity provider must not delay the
    /// others) and publishes the token gauges.
    fn refresh_due_tokens(&self) {
        for slot in self.tokens.all() {
            if slot.claim_due() {
                let metrics = self.metrics.clone();
                tokio::spawn(async move { refresh_one(&slot, &metrics).await });
            }
        }
        self.tokens.drop_idle();
        self.metrics.token_cache_size.set(self.tokens.len() as i64);
        for slot in self.tokens.all() {
            if let Some(name) = &slot.name {
                self.metrics
                    .token_expiry
                    .with_label_values(&[name.as_str()])
                    .set(slot.seconds_left());
            }
        }
    }

    /// Ready once every configured credential holds a token, every mapped secret (when
    /// prefetched) a value and every JWT validator its key set; until then `/readyz` names
    /// what is missing.
    fn update_ready(&self) {
        if self.ready.is_ready() {
            return;
        }
        let mut missing: Vec<String> = self
            .tokens
            .all()
            .iter()
            .filter(|s| s.is_pinned() && !s.has_token())
            .map(|s| {
                let name = s.name.as_deref().unwrap_or("?");
                format!("credential '{name}' (no {} token yet)", s.mode)
            })
            .collect();
        missing.sort();
        missing.extend(
            self.secrets
                .missing()
                .iter()
                .map(|slug| format!("secret reference '{slug}' (no value yet)")),
        );
        missing.extend(
            self.jwks
                .iter()
                .filter(|(_, c, _)| !c.is_loaded())
                .map(|(name, c, _)| {
                    format!(
                        "JWT validator {name} (no keys yet from its {})",
                        c.source_label()
                    )
                }),
        );
        if self.ready.update(missing) {
            log::info!(
                "keyway is ready: every configured credential holds a token or secret and every JWT validator its keys"
            );
        }
    }
}

async fn refresh_one(slot: &TokenSlot, metrics: &Metrics) {
    if let Err(e) = slot.refresh(metrics).await {
        metrics.token_refresh_failed(slot.mode);
        let which = slot.name.as_deref().unwrap_or("(from request headers)");
        log::warn!("token refresh failed for credential {which}: {e}; retrying with back-off");
    }
}

/// Loads a JWKS (retrying with back-off until it first succeeds), then refreshes it every
/// `every`; a failed refresh keeps the cached keys.
async fn keep_jwks_fresh(cache: Arc<JwksCache>, every: Duration, metrics: Arc<Metrics>) {
    let mut failures = 0;
    loop {
        let wait = match cache.refresh().await {
            Ok(_) => {
                metrics.jwks_refreshes.with_label_values(&["ok"]).inc();
                failures = 0;
                every
            }
            Err(e) => {
                metrics.jwks_refreshes.with_label_values(&["failed"]).inc();
                failures += 1;
                log::warn!(
                    "jwks refresh from {} failed: {e}; keeping the cached keys",
                    cache.source_label()
                );
                schedule::retry_delay(failures, rand::random::<f64>()).min(every)
            }
        };
        tokio::time::sleep(wait).await;
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
        for (host, e) in self.dns.pin(&self.fixed_hosts).await {
            log::warn!("dns: cannot resolve {host} at start-up ({e}); will retry on first use");
        }
        // The listener opens now; /readyz waits for the configured credentials' first tokens.
        ready.notify_ready();
        for slot in self.tokens.all() {
            let metrics = self.metrics.clone();
            if slot.claim_due() {
                tokio::spawn(async move { refresh_one(&slot, &metrics).await });
            }
        }
        for (_, cache, every) in &self.jwks {
            tokio::spawn(keep_jwks_fresh(cache.clone(), *every, self.metrics.clone()));
        }
        let mut tick = tokio::time::interval(TICK);
        let mut dns_tick = tokio::time::interval(DNS_REFRESH);
        dns_tick.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => {
                    self.refresh_due_tokens();
                    self.secrets.refresh_due();
                    self.update_ready();
                }
                _ = dns_tick.tick() => {
                    let (dns, metrics) = (self.dns.clone(), self.metrics.clone());
                    tokio::spawn(async move {
                        let failed = dns.refresh().await;
                        metrics.dns_refresh_failures.inc_by(failed as u64);
                    });
                }
            }
        }
    }
}
