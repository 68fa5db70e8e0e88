//! Secret values for the hot path. Every (reference, key) pair the config maps is an entry;
//! values live in a `quick_cache` for `ttl`. A request finds a fresh value without waiting; a
//! cold entry is fetched once however many requests miss together (the cache's placeholder
//! guard); the refresher renews entries in use at ~75% of the TTL, so requests rarely see an
//! expired one. When a manager fails, the last value keeps serving for `max_stale` past its TTL
//! (counted and gauged); a value never fetched is an error naming the reference's slug.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use async_trait::async_trait;

use crate::config::secrets::{SecretUse, SecretsSettings};
use crate::credentials::secrets::{select, Fetcher, ManagerType, SecretError};
use crate::credentials::spec::SecretLookup;
use crate::credentials::{AuthMode, CredentialError};
use crate::metrics::secrets::CacheResult;
use crate::metrics::Metrics;
use crate::refresh::schedule;
use crate::secret::Secret;

/// A fetched value. `version` grows with every fetch, so a 401 can name the value it refused.
#[derive(Debug)]
pub struct Cached {
    pub value: Secret,
    pub version: u64,
    fetched_ms: u64,
}

/// Why a request cannot have its secret. Shown to clients: the slug, the manager and the
/// failure class only; the cause (AWS code, HTTP status) goes to the log.
#[derive(Debug, Clone, thiserror::Error)]
#[error("secret reference '{slug}' is unavailable ({manager}: {})", .cause.outcome())]
pub struct SecretUnavailable {
    pub slug: Arc<str>,
    pub manager: ManagerType,
    pub cause: SecretError,
}

#[derive(Debug)]
struct Entry {
    slug: Arc<str>,
    manager: ManagerType,
    key: Option<String>,
    fetcher: Fetcher,
    allowed: Option<Arc<[Arc<str>]>>,
    /// Serializes renewals of a value that exists (the placeholder guard covers cold ones).
    renewing: tokio::sync::Mutex<()>,
    last_used: AtomicU64,
    /// When the refresher should renew (ms since epoch); `u64::MAX` while claimed or never.
    refresh_at: AtomicU64,
    failures: AtomicU32,
    retry_at: AtomicU64,
    last_error: ArcSwapOption<SecretError>,
    /// The version an upstream refused (0: none).
    rejected: AtomicU64,
}

#[derive(Debug)]
pub struct SecretStore {
    values: quick_cache::sync::Cache<usize, Arc<Cached>>,
    entries: Vec<Entry>,
    ids: HashMap<SecretUse, usize>,
    ttl_ms: u64,
    max_stale_ms: u64,
    fetch_timeout: Duration,
    prefetch: bool,
    metrics: Arc<Metrics>,
    epoch: Instant,
    versions: AtomicU64,
}

impl SecretStore {
    /// One entry per distinct use; `fetchers[i]` serves `settings.references[i]`.
    pub fn new(
        settings: &SecretsSettings,
        uses: impl IntoIterator<Item = SecretUse>,
        fetchers: &[Option<Fetcher>],
        metrics: Arc<Metrics>,
    ) -> SecretStore {
        let mut ids = HashMap::new();
        let mut entries = Vec::new();
        for u in uses {
            if ids.contains_key(&u) {
                continue;
            }
            let r = &settings.references[u.reference];
            ids.insert(u.clone(), entries.len());
            entries.push(Entry {
                slug: r.slug.clone(),
                manager: r.manager,
                key: u.key.clone(),
                fetcher: fetchers[u.reference]
                    .clone()
                    .expect("every mapped reference has a fetcher"),
                allowed: r.allowed_workspaces.clone(),
                renewing: tokio::sync::Mutex::new(()),
                last_used: AtomicU64::new(0),
                refresh_at: AtomicU64::new(if settings.prefetch { 0 } else { u64::MAX }),
                failures: AtomicU32::new(0),
                retry_at: AtomicU64::new(0),
                last_error: ArcSwapOption::empty(),
                rejected: AtomicU64::new(0),
            });
        }
        SecretStore {
            // Every entry must fit in its shard (the cache splits capacity across shards), so
            // leave ample room: an evicted value would be refetched and lose its stale fallback.
            values: quick_cache::sync::Cache::new((entries.len() * 4).max(64)),
            entries,
            ids,
            ttl_ms: settings.ttl.as_millis() as u64,
            max_stale_ms: settings.max_stale.as_millis() as u64,
            fetch_timeout: settings.fetch_timeout,
            prefetch: settings.prefetch,
            metrics,
            epoch: Instant::now(),
            versions: AtomicU64::new(1),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The entry id of a mapped use.
    pub fn id(&self, u: &SecretUse) -> Option<usize> {
        self.ids.get(u).copied()
    }

    pub fn slug(&self, id: usize) -> &Arc<str> {
        &self.entries[id].slug
    }

    /// Whether a request in `workspace` may use entry `id`; `None` (open posture) may use only
    /// references open to every workspace.
    pub fn allows(&self, id: usize, workspace: Option<&str>) -> bool {
        match (&self.entries[id].allowed, workspace) {
            (None, _) => true,
            (Some(list), Some(w)) => list.iter().any(|a| &**a == w),
            (Some(_), None) => false,
        }
    }

    fn fresh(&self, id: usize, c: &Cached, now: u64) -> bool {
        now.saturating_sub(c.fetched_ms) < self.ttl_ms
            && self.entries[id].rejected.load(Relaxed) != c.version
    }

    /// The value for a request: fresh from the cache, fetched once for a cold entry, renewed
    /// for an expired one, or stale while its manager fails.
    pub async fn get(&self, id: usize) -> Result<Arc<Cached>, SecretUnavailable> {
        let now = self.now_ms();
        self.entries[id].last_used.store(now, Relaxed);
        let m = &self.metrics.secrets;
        match self.values.get(&id) {
            Some(c) if self.fresh(id, &c, now) => {
                m.cache(CacheResult::Hit);
                Ok(c)
            }
            Some(old) => {
                // An expired value that may still serve does not wait behind a renewal already
                // under way (a hanging manager would hold every request for fetch_timeout); a
                // value an upstream refused does, since serving it again would fail again.
                let refused = self.entries[id].rejected.load(Relaxed) == old.version;
                let renewed = match refused {
                    true => self.renew(id, Some(old.version)).await,
                    false => match self.entries[id].renewing.try_lock() {
                        Ok(one) => self.renew_locked(id, Some(old.version), one).await,
                        Err(_) => return self.stale_or(id, old, self.busy(id)),
                    },
                };
                match renewed {
                    Ok(c) => {
                        m.cache(CacheResult::Miss);
                        Ok(c)
                    }
                    Err(cause) => self.stale_or(id, old, cause),
                }
            }
            None => {
                m.cache(CacheResult::Miss);
                self.cold(id).await
            }
        }
    }

    /// Serves `old` if it is within `max_stale` past its TTL; otherwise drops it and fails.
    fn stale_or(
        &self,
        id: usize,
        old: Arc<Cached>,
        cause: SecretError,
    ) -> Result<Arc<Cached>, SecretUnavailable> {
        let age = self.now_ms().saturating_sub(old.fetched_ms);
        if age < self.ttl_ms + self.max_stale_ms {
            self.metrics.secrets.cache(CacheResult::Stale);
            return Ok(old);
        }
        self.values.remove(&id);
        Err(self.unavailable(id, cause))
    }

    fn unavailable(&self, id: usize, cause: SecretError) -> SecretUnavailable {
        let e = &self.entries[id];
        SecretUnavailable {
            slug: e.slug.clone(),
            manager: e.manager,
            cause,
        }
    }

    /// A cold entry: the first caller fetches, concurrent callers wait for its result.
    async fn cold(&self, id: usize) -> Result<Arc<Cached>, SecretUnavailable> {
        match self.values.get_value_or_guard_async(&id).await {
            Ok(c) => Ok(c),
            Err(guard) => {
                if let Some(e) = self.backing_off(id) {
                    return Err(self.unavailable(id, e));
                }
                let c = self.fetch(id).await.map_err(|e| self.unavailable(id, e))?;
                let _ = guard.insert(c.clone());
                Ok(c)
            }
        }
    }

    /// Fetches a new value for an entry that has one, unless someone already replaced version
    /// `seen` (or a failure is still backing off).
    async fn renew(&self, id: usize, seen: Option<u64>) -> Result<Arc<Cached>, SecretError> {
        let one = self.entries[id].renewing.lock().await;
        self.renew_locked(id, seen, one).await
    }

    async fn renew_locked(
        &self,
        id: usize,
        seen: Option<u64>,
        _one: tokio::sync::MutexGuard<'_, ()>,
    ) -> Result<Arc<Cached>, SecretError> {
        if let Some(c) = self.values.get(&id) {
            if Some(c.version) != seen && self.fresh(id, &c, self.now_ms()) {
                return Ok(c);
            }
        }
        if let Some(e) = self.backing_off(id) {
            return Err(e);
        }
        let c = self.fetch(id).await?;
        self.values.insert(id, c.clone());
        Ok(c)
    }

    /// The error a request reports when it cannot wait for a renewal in progress: the last
    /// failure, or (first renewal) that the manager is slow to answer.
    fn busy(&self, id: usize) -> SecretError {
        let e = &self.entries[id];
        match e.last_error.load_full() {
            Some(err) => (*err).clone(),
            None => SecretError::Unavailable {
                manager: e.manager,
                reason: "a renewal is under way".into(),
            },
        }
    }

    fn backing_off(&self, id: usize) -> Option<SecretError> {
        let e = &self.entries[id];
        let err = e.last_error.load_full()?;
        (self.now_ms() < e.retry_at.load(Relaxed)).then(|| (*err).clone())
    }

    /// One fetch, bounded by `fetch_timeout`, with its bookkeeping; the caller stores the value.
    async fn fetch(&self, id: usize) -> Result<Arc<Cached>, SecretError> {
        let e = &self.entries[id];
        let started = Instant::now();
        let result = match tokio::time::timeout(self.fetch_timeout, e.fetcher.fetch()).await {
            Ok(r) => r.and_then(|doc| select(e.manager, &doc, e.key.as_deref())),
            Err(_) => Err(SecretError::Unavailable {
                manager: e.manager,
                reason: format!("no answer within {} ms", self.fetch_timeout.as_millis()),
            }),
        };
        self.metrics
            .secrets
            .fetched(e.manager, result.as_ref().err(), started.elapsed());
        let now = self.now_ms();
        match result {
            Ok(value) => {
                let delay =
                    schedule::refresh_delay(Duration::from_millis(self.ttl_ms), rand::random());
                e.refresh_at.store(now + delay.as_millis() as u64, Relaxed);
                e.failures.store(0, Relaxed);
                e.last_error.store(None);
                log::info!("secret reference '{}': fetched from {}", e.slug, e.manager);
                Ok(Arc::new(Cached {
                    value,
                    version: self.versions.fetch_add(1, Relaxed),
                    fetched_ms: now,
                }))
            }
            Err(err) => {
                let n = e.failures.fetch_add(1, Relaxed) + 1;
                let wait = schedule::retry_delay(n, rand::random()).as_millis() as u64;
                e.retry_at.store(now + wait, Relaxed);
                e.refresh_at.store(now + wait, Relaxed);
                e.last_error.store(Some(Arc::new(err.clone())));
                log::warn!("secret reference '{}': fetch failed: {err}", e.slug);
                Err(err)
            }
        }
    }

    /// An upstream refused `version`: the next request refetches (once; see `renew`).
    pub fn reject(&self, id: usize, version: u64) {
        let e = &self.entries[id];
        e.rejected.store(version, Relaxed);
        // A refusal is news, not a repeat failure: let the refetch happen now.
        e.retry_at.store(0, Relaxed);
    }

    /// The refresher's tick: starts a renewal for every due entry that is in use (or
    /// prefetched), and updates the staleness gauge.
    pub fn refresh_due(self: &Arc<Self>) {
        let now = self.now_ms();
        let mut stale = [0u64; 3];
        for id in 0..self.entries.len() {
            let e = &self.entries[id];
            let current = self.values.get(&id);
            if let Some(c) = &current {
                let over = now.saturating_sub(c.fetched_ms).saturating_sub(self.ttl_ms);
                let slot = ManagerType::ALL
                    .iter()
                    .position(|m| *m == e.manager)
                    .unwrap_or(0);
                stale[slot] = stale[slot].max(over);
            }
            let in_use = match &current {
                Some(c) => self.prefetch || e.last_used.load(Relaxed) > c.fetched_ms,
                None => self.prefetch,
            };
            let at = e.refresh_at.load(Relaxed);
            if !in_use || now < at {
                continue;
            }
            if e.refresh_at
                .compare_exchange(at, u64::MAX, Relaxed, Relaxed)
                .is_err()
            {
                continue;
            }
            let store = self.clone();
            let seen = current.map(|c| c.version);
            tokio::spawn(async move {
                let ok = match seen {
                    Some(v) => store.renew(id, Some(v)).await.is_ok(),
                    None => store.cold(id).await.is_ok(),
                };
                let e = &store.entries[id];
                if !ok && e.refresh_at.load(Relaxed) == u64::MAX {
                    // Backing off: `fetch` did not run, so nothing rescheduled this entry.
                    e.refresh_at
                        .store(e.retry_at.load(Relaxed).max(store.now_ms() + 1000), Relaxed);
                }
            });
        }
        for (i, m) in ManagerType::ALL.iter().enumerate() {
            self.metrics.secrets.staleness(*m, stale[i] as f64 / 1000.0);
        }
    }

    /// Ready when prefetching is off or every entry holds a value.
    pub fn ready(&self) -> bool {
        self.missing().is_empty()
    }

    /// The slugs of prefetched references that hold no value yet (each once).
    pub fn missing(&self) -> Vec<Arc<str>> {
        if !self.prefetch {
            return Vec::new();
        }
        let mut out: Vec<Arc<str>> = (0..self.entries.len())
            .filter(|id| self.values.get(id).is_none())
            .map(|id| self.entries[id].slug.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// A mapped Entra client secret, as the token source reads it.
#[derive(Debug)]
pub struct MappedSecret {
    pub store: Arc<SecretStore>,
    pub id: usize,
    label: String,
}

impl MappedSecret {
    pub fn new(store: Arc<SecretStore>, id: usize) -> MappedSecret {
        let e = &store.entries[id];
        let label = format!(
            "\0secret-reference\0{}\0{}",
            e.slug,
            e.key.as_deref().unwrap_or("")
        );
        MappedSecret { store, id, label }
    }
}

#[async_trait]
impl SecretLookup for MappedSecret {
    fn label(&self) -> &str {
        &self.label
    }

    async fn current(&self) -> Result<Secret, CredentialError> {
        self.store
            .get(self.id)
            .await
            .map(|c| c.value.clone())
            .map_err(|e| {
                let transient = e.cause.is_transient();
                let message = format!("client secret: {e}");
                match transient {
                    true => CredentialError::Unavailable {
                        mode: AuthMode::Entra,
                        endpoint: format!("secret reference '{}'", e.slug),
                        reason: e.cause.outcome().into(),
                    },
                    false => CredentialError::Setup {
                        mode: AuthMode::Entra,
                        message,
                    },
                }
            })
    }

    fn refused(&self, value: &Secret) {
        if let Some(c) = self.store.values.get(&self.id) {
            if &c.value == value {
                self.store.reject(self.id, c.version);
            }
        }
    }
}

#[cfg(test)]
mod tests;
