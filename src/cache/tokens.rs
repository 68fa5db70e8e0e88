//! Upstream tokens for the hot path. One `TokenSlot` per distinct credential holds the current
//! token in an `ArcSwap`: requests `load()` it without locks; the refresher (and a credential's
//! very first use) replaces it. Fetches are single-flight: concurrent misses wait on one fetch.
//! When to renew and how to space failures is the refresh engine's (`renewal`).
//!
//! Slots are keyed by what the credential is (`CredentialKey`: mode, tenant, client, scope,
//! secret digest), so a configuration reload that keeps a credential keeps its slot and token.
//! The active runtime pins the slots its configuration declares (fetched at once, kept warm,
//! named in metrics); slots that came from request headers are created on first use and dropped
//! after `idle` without use, at most `max` of them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::{ArcSwap, ArcSwapOption};
use http::HeaderValue;

use super::renewal::{FailureClass, Renewal, Timing};
use crate::credentials::spec::{CredentialKey, TokenSpec};
use crate::credentials::{AuthMode, CredentialError, CredentialSource, Token};
use crate::metrics::Metrics;
use crate::secret::Secret;

/// A token as the request path uses it: the ready `Authorization` value, the token itself (for
/// callers that send it their own way) and its expiry.
#[derive(Debug)]
pub struct CachedToken {
    pub header: HeaderValue,
    pub token: Secret,
    pub expires_at: SystemTime,
    /// How long it lived when it was stored: the scale `seconds_left` is read against.
    pub lifetime: Duration,
}

impl CachedToken {
    pub fn is_valid(&self, now: SystemTime) -> bool {
        self.expires_at > now
    }
}

/// How a failed token fetch is retried: a rejected credential is not asked again like a
/// timeout.
pub fn failure_class(e: &CredentialError) -> FailureClass {
    match e {
        CredentialError::Unavailable { .. } => FailureClass::Transient,
        CredentialError::Rejected { .. } => FailureClass::Refused,
        CredentialError::Malformed { .. } | CredentialError::Setup { .. } => FailureClass::Broken,
    }
}

#[derive(Debug)]
pub struct TokenSlot {
    pub key: CredentialKey,
    pub mode: AuthMode,
    source: Arc<dyn CredentialSource>,
    current: ArcSwapOption<CachedToken>,
    fetch: tokio::sync::Mutex<()>,
    renewal: Renewal<CredentialError>,
    last_used: AtomicU64,
    /// Set after a 401 so the next request does not reuse the rejected token.
    rejected: AtomicBool,
}

impl TokenSlot {
    fn now_ms(&self) -> u64 {
        self.renewal.now_ms()
    }

    fn wall(&self) -> SystemTime {
        self.renewal.timing().clock.wall()
    }

    /// The current token if it is still valid: lock-free, for the request path.
    pub fn current(&self) -> Option<Arc<CachedToken>> {
        self.last_used.store(self.now_ms(), Ordering::Relaxed);
        let t = self.current.load_full()?;
        (t.is_valid(self.wall()) && !self.rejected.load(Ordering::Relaxed)).then_some(t)
    }

    /// The current token, fetching one (single flight) when there is none. While a failure's
    /// back-off runs, its error is returned without a new fetch, so an identity-provider outage
    /// does not turn every request into a fetch.
    pub async fn get(&self, metrics: &Metrics) -> Result<Arc<CachedToken>, CredentialError> {
        if let Some(t) = self.current() {
            return Ok(t);
        }
        let _guard = self.fetch.lock().await;
        if let Some(t) = self.current() {
            return Ok(t);
        }
        if let Some(e) = self.renewal.backing_off() {
            return Err((*e).clone());
        }
        self.fetch_locked(metrics).await
    }

    /// Claims a due refresh for the refresher, so one refresh runs per slot at a time.
    pub fn claim_due(&self) -> bool {
        self.renewal.claim_due()
    }

    /// Fetches and stores a fresh token now (the refresher's entry point). A failure keeps the
    /// old token, which `current()` serves while it is valid.
    pub async fn refresh(&self, metrics: &Metrics) -> Result<(), CredentialError> {
        let _guard = self.fetch.lock().await;
        // A request's first-use fetch ran while this refresh waited for the lock: it has
        // rescheduled the slot (the claim had unscheduled it), so there is nothing to do.
        if !self.renewal.is_claimed() && self.current().is_some() {
            return Ok(());
        }
        self.fetch_locked(metrics).await.map(|_| ())
    }

    async fn fetch_locked(&self, metrics: &Metrics) -> Result<Arc<CachedToken>, CredentialError> {
        let started = Instant::now();
        let result = self.source.fetch().await;
        metrics.token_fetched(self.mode, result.as_ref().err(), started.elapsed());
        let now = self.wall();
        let stored = result.and_then(|token| Ok((cache_entry(&token, self.mode, now)?, token)));
        match stored {
            Ok((cached, token)) => {
                let cached = Arc::new(cached);
                self.renewal.succeeded(token.lifetime_left(now));
                self.current.store(Some(cached.clone()));
                self.rejected.store(false, Ordering::Relaxed);
                Ok(cached)
            }
            Err(e) => {
                self.renewal.failed(e.clone(), failure_class(&e));
                Err(e)
            }
        }
    }

    /// Marks `seen` as rejected upstream: the next `get` fetches a fresh token, unless someone
    /// already replaced it.
    pub fn reject(&self, seen: &Arc<CachedToken>) {
        if let Some(cur) = self.current.load_full() {
            if Arc::ptr_eq(&cur, seen) {
                self.rejected.store(true, Ordering::Relaxed);
                self.renewal.retry_now();
            }
        }
    }

    /// Marks the current token as rejected when it is `token` (a secret manager refused it).
    pub fn reject_value(&self, token: &Secret) {
        if let Some(cur) = self.current.load_full() {
            if &cur.token == token {
                self.reject(&cur);
            }
        }
    }

    pub fn due(&self) -> bool {
        self.renewal.is_due()
    }

    pub fn has_token(&self) -> bool {
        self.current.load().is_some()
    }

    /// Seconds until the current token expires (0 without one); for the expiry gauge.
    pub fn seconds_left(&self) -> f64 {
        self.current.load().as_ref().map_or(0.0, |t| {
            t.expires_at
                .duration_since(self.wall())
                .unwrap_or_default()
                .as_secs_f64()
        })
    }

    /// Lifetime of the current token as it was stored (0 without one); for the lifetime gauge.
    pub fn lifetime_seconds(&self) -> f64 {
        self.current
            .load()
            .as_ref()
            .map_or(0.0, |t| t.lifetime.as_secs_f64())
    }

    fn idle_for(&self) -> Duration {
        Duration::from_millis(
            self.now_ms()
                .saturating_sub(self.last_used.load(Ordering::Relaxed)),
        )
    }
}

fn cache_entry(
    token: &Token,
    mode: AuthMode,
    now: SystemTime,
) -> Result<CachedToken, CredentialError> {
    let header =
        crate::vocab::bearer(token.value.expose()).ok_or_else(|| CredentialError::Malformed {
            mode,
            endpoint: "token endpoint".into(),
            detail: "the access token holds characters not allowed in a header".into(),
        })?;
    Ok(CachedToken {
        header,
        token: token.value.clone(),
        expires_at: token.expires_at,
        lifetime: token.lifetime_left(now),
    })
}

type Slots = HashMap<CredentialKey, Arc<TokenSlot>>;

/// Every token slot keyway holds.
#[derive(Debug)]
pub struct TokenCache {
    slots: ArcSwap<Slots>,
    /// The configured slots the active runtime uses, with the name the configuration gives
    /// them (the `credential` metric label).
    pins: ArcSwap<HashMap<CredentialKey, Arc<str>>>,
    /// `[tokens] max_cached` and `idle_timeout_seconds` (ms); reloadable.
    max: AtomicU64,
    idle_ms: AtomicU64,
    timing: Timing,
}

impl TokenCache {
    pub fn new(max: usize, idle: Duration, timing: Timing) -> Self {
        TokenCache {
            slots: ArcSwap::from_pointee(HashMap::new()),
            pins: ArcSwap::from_pointee(HashMap::new()),
            max: AtomicU64::new(max as u64),
            idle_ms: AtomicU64::new(idle.as_millis() as u64),
            timing,
        }
    }

    /// New limits from a reloaded configuration.
    pub fn set_limits(&self, max: usize, idle: Duration) {
        self.max.store(max as u64, Ordering::Relaxed);
        self.idle_ms
            .store(idle.as_millis() as u64, Ordering::Relaxed);
    }

    /// The slot for `spec`, created (without fetching) when new. A `configured` slot is due for
    /// its first fetch at once; a header one is fetched by its first request. `None` when the
    /// cache is full of slots that are all pinned or in use.
    pub fn slot(
        &self,
        spec: &TokenSpec,
        configured: bool,
        make: impl FnOnce() -> Arc<dyn CredentialSource>,
    ) -> Option<Arc<TokenSlot>> {
        let key = spec.key();
        self.get(&key)
            .or_else(|| self.insert(key, spec.mode(), configured, make()))
    }

    /// The slot for `key` if it exists: lock-free and allocation-free.
    pub fn get(&self, key: &CredentialKey) -> Option<Arc<TokenSlot>> {
        self.slots.load().get(key).cloned()
    }

    fn insert(
        &self,
        key: CredentialKey,
        mode: AuthMode,
        configured: bool,
        source: Arc<dyn CredentialSource>,
    ) -> Option<Arc<TokenSlot>> {
        let slot = Arc::new(TokenSlot {
            key,
            mode,
            source,
            current: ArcSwapOption::empty(),
            fetch: tokio::sync::Mutex::new(()),
            renewal: Renewal::new(self.timing.clone(), configured),
            last_used: AtomicU64::new(self.timing.now_ms()),
            rejected: AtomicBool::new(false),
        });
        let pins = self.pins.load();
        let mut result = None;
        self.slots.rcu(|m| {
            if let Some(existing) = m.get(&key) {
                result = Some(existing.clone());
                return HashMap::clone(m);
            }
            let mut m = HashMap::clone(m);
            if m.len() as u64 >= self.max.load(Ordering::Relaxed) {
                let victim = m
                    .iter()
                    .filter(|(k, _)| !pins.contains_key(*k))
                    .max_by_key(|(_, s)| s.idle_for())
                    .map(|(k, _)| *k);
                match victim {
                    Some(k) => {
                        m.remove(&k);
                    }
                    None => {
                        result = None;
                        return m;
                    }
                }
            }
            m.insert(key, slot.clone());
            result = Some(slot.clone());
            m
        });
        result
    }

    /// Makes `pins` the configured slots (name, slot) of the active runtime. Slots pinned
    /// before and not now are dropped: the refresher stops renewing them (requests that still
    /// hold one finish with it).
    pub fn pin(&self, pins: &[(Arc<str>, Arc<TokenSlot>)]) {
        let new: HashMap<CredentialKey, Arc<str>> =
            pins.iter().map(|(n, s)| (s.key, n.clone())).collect();
        let old = self.pins.swap(Arc::new(new.clone()));
        self.slots.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.retain(|k, _| new.contains_key(k) || !old.contains_key(k));
            for (_, s) in pins {
                m.entry(s.key).or_insert_with(|| s.clone());
            }
            m
        });
    }

    /// The pinned slots and their names.
    pub fn pinned(&self) -> Vec<(Arc<str>, Arc<TokenSlot>)> {
        let pins = self.pins.load();
        let slots = self.slots.load();
        let mut out: Vec<_> = pins
            .iter()
            .filter_map(|(k, n)| slots.get(k).map(|s| (n.clone(), s.clone())))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The configuration's name of a pinned slot.
    pub fn name_of(&self, key: &CredentialKey) -> Option<Arc<str>> {
        self.pins.load().get(key).cloned()
    }

    /// Whether the slot with `key` is declared in the active configuration (so its failures are
    /// keyway's, not the caller's).
    pub fn is_pinned(&self, key: &CredentialKey) -> bool {
        self.pins.load().contains_key(key)
    }

    pub fn all(&self) -> Vec<Arc<TokenSlot>> {
        self.slots.load().values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.slots.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets header credentials unused for longer than the idle time.
    pub fn drop_idle(&self) -> usize {
        let idle = Duration::from_millis(self.idle_ms.load(Ordering::Relaxed));
        let before = self.len();
        let pins = self.pins.load();
        self.slots.rcu(|m| {
            m.iter()
                .filter(|(k, s)| pins.contains_key(*k) || s.idle_for() <= idle)
                .map(|(k, s)| (*k, s.clone()))
                .collect::<Slots>()
        });
        before.saturating_sub(self.len())
    }
}

/// A token slot as a secret manager's bearer source (Key Vault's Entra token).
#[derive(Debug)]
pub struct SlotBearer {
    pub slot: Arc<TokenSlot>,
    pub metrics: Arc<Metrics>,
}

#[async_trait::async_trait]
impl crate::credentials::secrets::BearerSource for SlotBearer {
    async fn bearer(&self) -> Result<Secret, CredentialError> {
        Ok(self.slot.get(&self.metrics).await?.token.clone())
    }

    fn reject(&self, token: &Secret) {
        self.slot.reject_value(token);
    }
}

#[cfg(test)]
mod tests;
