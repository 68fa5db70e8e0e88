//! Upstream tokens for the hot path. One `TokenSlot` per distinct credential holds the current
//! token in an `ArcSwap`: requests `load()` it without locks; the refresher (and a credential's
//! very first use) replaces it. Fetches are single-flight: concurrent misses wait on one fetch.
//!
//! Slots come from the config (pinned, fetched at start-up) or from request headers (created on
//! first use, dropped after `idle` without use; at most `max` of them).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::{ArcSwap, ArcSwapOption};
use http::HeaderValue;

use crate::credentials::spec::{CredentialKey, TokenSpec};
use crate::credentials::{AuthMode, CredentialError, CredentialSource, Token};
use crate::metrics::Metrics;
use crate::refresh::schedule;

/// A token as the request path uses it: the ready `Authorization` value and its expiry.
#[derive(Debug)]
pub struct CachedToken {
    pub header: HeaderValue,
    pub expires_at: SystemTime,
}

impl CachedToken {
    pub fn is_valid(&self, now: SystemTime) -> bool {
        self.expires_at > now
    }
}

#[derive(Debug)]
pub struct TokenSlot {
    /// Config name; `None` for credentials that came from request headers.
    pub name: Option<String>,
    pub mode: AuthMode,
    source: Arc<dyn CredentialSource>,
    current: ArcSwapOption<CachedToken>,
    fetch: tokio::sync::Mutex<()>,
    /// When the refresher should renew (ms since the cache epoch); `u64::MAX` for never.
    refresh_at: AtomicU64,
    failures: AtomicU32,
    last_used: AtomicU64,
    pinned: bool,
    epoch: Instant,
    /// Set after a 401 so the next request does not reuse the rejected token.
    rejected: AtomicBool,
    /// The last fetch error, returned without a new fetch until the back-off has passed, so an
    /// identity-provider outage does not turn every request into a fetch.
    last_error: ArcSwapOption<CredentialError>,
}

impl TokenSlot {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The current token if it is still valid: lock-free, for the request path.
    pub fn current(&self) -> Option<Arc<CachedToken>> {
        self.last_used.store(self.now_ms(), Ordering::Relaxed);
        let t = self.current.load_full()?;
        (t.is_valid(SystemTime::now()) && !self.rejected.load(Ordering::Relaxed)).then_some(t)
    }

    /// The current token, fetching one (single flight) when there is none.
    pub async fn get(&self, metrics: &Metrics) -> Result<Arc<CachedToken>, CredentialError> {
        if let Some(t) = self.current() {
            return Ok(t);
        }
        let _guard = self.fetch.lock().await;
        if let Some(t) = self.current() {
            return Ok(t);
        }
        if let Some(e) = self.last_error.load_full() {
            if !self.due() {
                return Err((*e).clone());
            }
        }
        self.fetch_locked(metrics).await
    }

    /// Claims a due refresh for the refresher, so one refresh runs per slot at a time.
    pub fn claim_due(&self) -> bool {
        let at = self.refresh_at.load(Ordering::Relaxed);
        self.now_ms() >= at
            && self
                .refresh_at
                .compare_exchange(at, u64::MAX, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    /// Fetches and stores a fresh token now (the refresher's entry point). A failure keeps the
    /// old token, which `current()` serves while it is valid.
    pub async fn refresh(&self, metrics: &Metrics) -> Result<(), CredentialError> {
        let _guard = self.fetch.lock().await;
        // A request's first-use fetch ran while this refresh waited for the lock: it has
        // rescheduled the slot (the claim had set `u64::MAX`), so there is nothing to do.
        if self.refresh_at.load(Ordering::Relaxed) != u64::MAX && self.current().is_some() {
            return Ok(());
        }
        self.fetch_locked(metrics).await.map(|_| ())
    }

    async fn fetch_locked(&self, metrics: &Metrics) -> Result<Arc<CachedToken>, CredentialError> {
        let started = Instant::now();
        let result = self.source.fetch().await;
        metrics.token_fetched(self.mode, result.as_ref().err(), started.elapsed());
        match result {
            Ok(token) => {
                let cached = Arc::new(cache_entry(&token, self.mode)?);
                let lifetime = token.lifetime_left(SystemTime::now());
                let delay = schedule::refresh_delay(lifetime, rand::random::<f64>());
                self.refresh_at
                    .store(self.now_ms() + delay.as_millis() as u64, Ordering::Relaxed);
                self.failures.store(0, Ordering::Relaxed);
                self.last_error.store(None);
                self.current.store(Some(cached.clone()));
                self.rejected.store(false, Ordering::Relaxed);
                Ok(cached)
            }
            Err(e) => {
                let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                let wait = schedule::retry_delay(n, rand::random::<f64>());
                self.refresh_at
                    .store(self.now_ms() + wait.as_millis() as u64, Ordering::Relaxed);
                self.last_error.store(Some(Arc::new(e.clone())));
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
            }
        }
    }

    pub fn due(&self) -> bool {
        self.now_ms() >= self.refresh_at.load(Ordering::Relaxed)
    }

    pub fn is_pinned(&self) -> bool {
        self.pinned
    }

    pub fn has_token(&self) -> bool {
        self.current.load().is_some()
    }

    /// Seconds until the current token expires (0 without one); for the expiry gauge.
    pub fn seconds_left(&self) -> f64 {
        self.current.load().as_ref().map_or(0.0, |t| {
            t.expires_at
                .duration_since(SystemTime::now())
                .unwrap_or_default()
                .as_secs_f64()
        })
    }

    fn idle_for(&self) -> Duration {
        Duration::from_millis(
            self.now_ms()
                .saturating_sub(self.last_used.load(Ordering::Relaxed)),
        )
    }
}

fn cache_entry(token: &Token, mode: AuthMode) -> Result<CachedToken, CredentialError> {
    let mut header =
        HeaderValue::try_from(format!("Bearer {}", token.value.expose())).map_err(|_| {
            CredentialError::Malformed {
                mode,
                endpoint: "token endpoint".into(),
                detail: "the access token holds characters not allowed in a header".into(),
            }
        })?;
    header.set_sensitive(true);
    Ok(CachedToken {
        header,
        expires_at: token.expires_at,
    })
}

/// Every token slot keyway holds.
#[derive(Debug)]
pub struct TokenCache {
    slots: ArcSwap<HashMap<CredentialKey, Arc<TokenSlot>>>,
    max: usize,
    idle: Duration,
    epoch: Instant,
}

impl TokenCache {
    pub fn new(max: usize, idle: Duration) -> Self {
        TokenCache {
            slots: ArcSwap::from_pointee(HashMap::new()),
            max,
            idle,
            epoch: Instant::now(),
        }
    }

    /// The slot for `spec`, created (without fetching) when new. `None` when the cache is full
    /// of header credentials that are all in use.
    pub fn slot(
        &self,
        spec: &TokenSpec,
        name: Option<&str>,
        make: impl FnOnce() -> Arc<dyn CredentialSource>,
    ) -> Option<Arc<TokenSlot>> {
        let key = spec.key();
        self.get(&key)
            .or_else(|| self.insert(key, spec.mode(), name, make()))
    }

    /// The slot for `key` if it exists: lock-free and allocation-free.
    pub fn get(&self, key: &CredentialKey) -> Option<Arc<TokenSlot>> {
        self.slots.load().get(key).cloned()
    }

    fn insert(
        &self,
        key: CredentialKey,
        mode: AuthMode,
        name: Option<&str>,
        source: Arc<dyn CredentialSource>,
    ) -> Option<Arc<TokenSlot>> {
        let slot = Arc::new(TokenSlot {
            name: name.map(str::to_owned),
            mode,
            source,
            current: ArcSwapOption::empty(),
            fetch: tokio::sync::Mutex::new(()),
            // Configured credentials are due at once; header ones are fetched by their first request.
            refresh_at: AtomicU64::new(if name.is_some() { 0 } else { u64::MAX }),
            failures: AtomicU32::new(0),
            last_used: AtomicU64::new(self.epoch.elapsed().as_millis() as u64),
            pinned: name.is_some(),
            epoch: self.epoch,
            rejected: AtomicBool::new(false),
            last_error: ArcSwapOption::empty(),
        });
        let mut result = None;
        self.slots.rcu(|m| {
            if let Some(existing) = m.get(&key) {
                result = Some(existing.clone());
                return HashMap::clone(m);
            }
            let mut m = HashMap::clone(m);
            if m.len() >= self.max {
                let victim = m
                    .iter()
                    .filter(|(_, s)| !s.pinned)
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
        let idle = self.idle;
        let before = self.len();
        self.slots.rcu(|m| {
            m.iter()
                .filter(|(_, s)| s.pinned || s.idle_for() <= idle)
                .map(|(k, s)| (*k, s.clone()))
                .collect::<HashMap<_, _>>()
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
    async fn bearer(&self) -> Result<crate::secret::Secret, CredentialError> {
        let t = self.slot.get(&self.metrics).await?;
        let v = t.header.to_str().unwrap_or_default();
        Ok(crate::secret::Secret::new(
            v.strip_prefix("Bearer ").unwrap_or(v),
        ))
    }

    fn reject(&self, token: &crate::secret::Secret) {
        if let Some(cur) = self.slot.current.load_full() {
            let v = cur.header.to_str().unwrap_or_default();
            if v.strip_prefix("Bearer ") == Some(token.expose()) {
                self.slot.reject(&cur);
            }
        }
    }
}
