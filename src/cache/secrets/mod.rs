//! Secret values for the hot path. Every (reference, key) pair the configuration maps is an
//! [`Entry`], keyed by what it is (`SecretKey`); values live in a `quick_cache` for `ttl`. A
//! request finds a fresh value without waiting; a cold entry is fetched once however many
//! requests miss together (the cache's placeholder guard); the refresher renews entries in use
//! at ~75% of the TTL (the refresh engine, `renewal`), so requests rarely see an expired one.
//! When a manager fails, the last value keeps serving for `max_stale` past its TTL (counted and
//! gauged); a value never fetched is an error naming the reference's slug.
//!
//! The active runtime names the entries it uses (`activate`); a reload keeps the entries (and
//! values) it still maps and drops the rest from the refresher.

mod entry;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

pub use entry::{Entry, EntrySpec, MappedSecret, SecretKey};

use super::renewal::{FailureClass, Timing};
use crate::credentials::secrets::{select, Fetcher, ManagerType, SecretError};
use crate::metrics::secrets::CacheResult;
use crate::metrics::Metrics;
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

/// The cache policy of `[secrets]`; reloadable.
#[derive(Debug, Clone)]
pub struct SecretPolicy {
    pub ttl: Duration,
    pub max_stale: Duration,
    pub prefetch: bool,
    pub fetch_timeout: Duration,
}

/// How a failed secret fetch is retried: a refusal is not asked again like a timeout.
pub fn failure_class(e: &SecretError) -> FailureClass {
    match e {
        SecretError::Unavailable { .. } => FailureClass::Transient,
        SecretError::Credential { source, .. } => super::tokens::failure_class(source),
        SecretError::Rejected { .. } | SecretError::NotFound { .. } => FailureClass::Refused,
        SecretError::Malformed { .. } => FailureClass::Broken,
    }
}

type Values = quick_cache::sync::Cache<SecretKey, Arc<Cached>>;

/// Room in the value cache per entry: every entry must fit in its shard (the cache splits its
/// capacity across shards), or a value would be evicted and lose its stale fallback.
const ROOM_PER_ENTRY: usize = 4;
const MIN_ROOM: usize = 256;

#[derive(Debug)]
pub struct SecretStore {
    values: ArcSwap<Values>,
    /// Every entry a runtime built, by key: a rebuild finds the warm ones here.
    entries: ArcSwap<HashMap<SecretKey, Arc<Entry>>>,
    /// The active runtime's entries: renewed, prefetched, gating readiness.
    active: ArcSwap<Vec<Arc<Entry>>>,
    policy: ArcSwap<SecretPolicy>,
    metrics: Arc<Metrics>,
    timing: Timing,
    versions: AtomicU64,
}

impl SecretStore {
    pub fn new(policy: SecretPolicy, metrics: Arc<Metrics>, timing: Timing) -> SecretStore {
        SecretStore {
            values: ArcSwap::from_pointee(Values::new(MIN_ROOM)),
            entries: ArcSwap::from_pointee(HashMap::new()),
            active: ArcSwap::from_pointee(Vec::new()),
            policy: ArcSwap::from_pointee(policy),
            metrics,
            timing,
            versions: AtomicU64::new(1),
        }
    }

    pub fn set_policy(&self, policy: SecretPolicy) {
        self.policy.store(Arc::new(policy));
    }

    pub fn policy(&self) -> Arc<SecretPolicy> {
        self.policy.load_full()
    }

    fn now_ms(&self) -> u64 {
        self.timing.now_ms()
    }

    /// The entry `spec` describes: the existing one (warm) or a new one from `make()`.
    pub fn entry(&self, spec: EntrySpec, make: impl FnOnce() -> Fetcher) -> Arc<Entry> {
        if let Some(e) = self.entries.load().get(&spec.key) {
            return e.clone();
        }
        let prefetch = self.policy.load().prefetch;
        let e = Arc::new(Entry::new(spec, make(), self.timing.clone(), prefetch));
        self.entries.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.entry(e.spec.key).or_insert_with(|| e.clone());
            m
        });
        self.entries.load().get(&e.spec.key).cloned().unwrap_or(e)
    }

    /// Makes `entries` the active set. Entries no runtime uses any more are forgotten with
    /// their values; requests that still hold one finish with it.
    pub fn activate(&self, entries: &[Arc<Entry>]) {
        let keep: HashMap<SecretKey, Arc<Entry>> =
            entries.iter().map(|e| (e.spec.key, e.clone())).collect();
        let old = self.entries.swap(Arc::new(keep.clone()));
        let values = self.values.load_full();
        for k in old.keys().filter(|k| !keep.contains_key(*k)) {
            values.remove(k);
        }
        let room = (keep.len() * ROOM_PER_ENTRY).max(MIN_ROOM);
        if room as u64 > values.capacity() {
            let bigger = Values::new(room);
            for k in keep.keys() {
                if let Some(v) = values.get(k) {
                    bigger.insert(*k, v);
                }
            }
            self.values.store(Arc::new(bigger));
        }
        self.active.store(Arc::new(entries.to_vec()));
    }

    /// The cached value of `e`, fresh or not.
    pub fn value(&self, e: &Entry) -> Option<Arc<Cached>> {
        self.values.load().get(&e.spec.key)
    }

    fn fresh(&self, e: &Entry, c: &Cached, now: u64) -> bool {
        now.saturating_sub(c.fetched_ms) < self.policy.load().ttl.as_millis() as u64
            && e.rejected.load(Relaxed) != c.version
    }

    /// The value for a request when the cache holds it fresh (counted as a hit), without
    /// awaiting: the request path's way in, before the `get` that may fetch.
    pub fn fresh_hit(&self, e: &Entry) -> Option<Arc<Cached>> {
        let now = self.now_ms();
        let c = self.value(e).filter(|c| self.fresh(e, c, now))?;
        e.mark_used(now);
        self.metrics.secrets.cache(CacheResult::Hit);
        Some(c)
    }

    /// The value for a request: fresh from the cache, fetched once for a cold entry, renewed
    /// for an expired one, or stale while its manager fails.
    pub async fn get(&self, e: &Entry) -> Result<Arc<Cached>, SecretUnavailable> {
        let now = self.now_ms();
        e.mark_used(now);
        let m = &self.metrics.secrets;
        match self.value(e) {
            Some(c) if self.fresh(e, &c, now) => {
                m.cache(CacheResult::Hit);
                Ok(c)
            }
            Some(old) => {
                // An expired value that may still serve does not wait behind a renewal already
                // under way (a hanging manager would hold every request for fetch_timeout); a
                // value an upstream refused does, since serving it again would fail again.
                let refused = e.rejected.load(Relaxed) == old.version;
                let renewed = match refused {
                    true => self.renew(e, Some(old.version)).await,
                    false => match e.renewing.try_lock() {
                        Ok(one) => self.renew_locked(e, Some(old.version), one).await,
                        Err(_) => return self.stale_or(e, old, self.busy(e)),
                    },
                };
                match renewed {
                    Ok(c) => {
                        m.cache(CacheResult::Miss);
                        Ok(c)
                    }
                    Err(cause) => self.stale_or(e, old, cause),
                }
            }
            None => {
                m.cache(CacheResult::Miss);
                self.cold(e).await
            }
        }
    }

    /// Serves `old` if it is within `max_stale` past its TTL; otherwise drops it and fails.
    fn stale_or(
        &self,
        e: &Entry,
        old: Arc<Cached>,
        cause: SecretError,
    ) -> Result<Arc<Cached>, SecretUnavailable> {
        let p = self.policy.load();
        let age = self.now_ms().saturating_sub(old.fetched_ms);
        if age < (p.ttl + p.max_stale).as_millis() as u64 {
            self.metrics.secrets.cache(CacheResult::Stale);
            return Ok(old);
        }
        self.values.load().remove(&e.spec.key);
        Err(unavailable(e, cause))
    }

    /// A cold entry: the first caller fetches, concurrent callers wait for its result.
    async fn cold(&self, e: &Entry) -> Result<Arc<Cached>, SecretUnavailable> {
        let values = self.values.load_full();
        let found = values.get_value_or_guard_async(&e.spec.key).await;
        match found {
            Ok(c) => Ok(c),
            Err(guard) => {
                if let Some(err) = e.renewal.backing_off() {
                    return Err(unavailable(e, (*err).clone()));
                }
                let c = self.fetch(e).await.map_err(|err| unavailable(e, err))?;
                let _ = guard.insert(c.clone());
                Ok(c)
            }
        }
    }

    /// Fetches a new value for an entry that has one, unless someone already replaced version
    /// `seen` (or a failure is still backing off).
    async fn renew(&self, e: &Entry, seen: Option<u64>) -> Result<Arc<Cached>, SecretError> {
        let one = e.renewing.lock().await;
        self.renew_locked(e, seen, one).await
    }

    async fn renew_locked(
        &self,
        e: &Entry,
        seen: Option<u64>,
        _one: tokio::sync::MutexGuard<'_, ()>,
    ) -> Result<Arc<Cached>, SecretError> {
        if let Some(c) = self.value(e) {
            if Some(c.version) != seen && self.fresh(e, &c, self.now_ms()) {
                return Ok(c);
            }
        }
        if let Some(err) = e.renewal.backing_off() {
            return Err((*err).clone());
        }
        let c = self.fetch(e).await?;
        self.values.load().insert(e.spec.key, c.clone());
        Ok(c)
    }

    /// The error a request reports when it cannot wait for a renewal in progress: the last
    /// failure, or (first renewal) that the manager is slow to answer.
    fn busy(&self, e: &Entry) -> SecretError {
        match e.renewal.last_error() {
            Some(err) => (*err).clone(),
            None => SecretError::Unavailable {
                manager: e.spec.manager,
                reason: "a renewal is under way".into(),
            },
        }
    }

    /// One fetch, bounded by `fetch_timeout`, with its bookkeeping; the caller stores the value.
    async fn fetch(&self, e: &Entry) -> Result<Arc<Cached>, SecretError> {
        let p = self.policy.load_full();
        let started = Instant::now();
        let result = match tokio::time::timeout(p.fetch_timeout, e.fetcher.fetch()).await {
            Ok(r) => r.and_then(|doc| select(e.spec.manager, &doc, e.spec.secret_key.as_deref())),
            Err(_) => Err(SecretError::Unavailable {
                manager: e.spec.manager,
                reason: format!("no answer within {} ms", p.fetch_timeout.as_millis()),
            }),
        };
        self.metrics
            .secrets
            .fetched(e.spec.manager, result.as_ref().err(), started.elapsed());
        match result {
            Ok(value) => {
                e.renewal.succeeded(p.ttl);
                e.fetched_ok_ms.store(self.now_ms() + 1, Relaxed);
                log::info!(
                    "secret reference '{}': fetched from {}",
                    e.spec.slug,
                    e.spec.manager
                );
                Ok(Arc::new(Cached {
                    value,
                    version: self.versions.fetch_add(1, Relaxed),
                    fetched_ms: self.now_ms(),
                }))
            }
            Err(err) => {
                e.renewal.failed(err.clone(), failure_class(&err));
                log::warn!("secret reference '{}': fetch failed: {err}", e.spec.slug);
                Err(err)
            }
        }
    }

    /// An upstream refused `version`: the next request refetches (once; see `renew`).
    pub fn reject(&self, e: &Entry, version: u64) {
        e.rejected.store(version, Relaxed);
        // A refusal is news, not a repeat failure: let the refetch happen now.
        e.renewal.retry_now();
    }

    /// The refresher's tick: starts a renewal for every due entry that is in use (or
    /// prefetched), and updates the staleness gauge.
    pub fn refresh_due(self: &Arc<Self>) {
        let now = self.now_ms();
        let p = self.policy.load_full();
        let ttl = p.ttl.as_millis() as u64;
        let mut stale = [0u64; 3];
        let mut age = [0u64; 3];
        for e in self.active.load().iter() {
            let current = self.value(e);
            if let Some(a) = in_use_age(e, current.as_deref(), p.prefetch, now) {
                let slot = manager_slot(e.spec.manager);
                age[slot] = age[slot].max(a);
            }
            if let Some(c) = &current {
                let over = now.saturating_sub(c.fetched_ms).saturating_sub(ttl);
                let slot = manager_slot(e.spec.manager);
                stale[slot] = stale[slot].max(over);
            }
            let in_use = match &current {
                Some(c) => p.prefetch || e.last_used.load(Relaxed) > c.fetched_ms,
                None => p.prefetch,
            };
            if !in_use || !e.renewal.claim_due() {
                continue;
            }
            let (store, e) = (self.clone(), e.clone());
            let seen = current.map(|c| c.version);
            tokio::spawn(async move {
                let ok = match seen {
                    Some(v) => store.renew(&e, Some(v)).await.is_ok(),
                    None => store.cold(&e).await.is_ok(),
                };
                if !ok {
                    // Backing off: `fetch` did not run, so nothing rescheduled this entry.
                    e.renewal.release_claim(Duration::from_secs(1));
                }
            });
        }
        let fresh = &self.metrics.freshness;
        for (i, m) in ManagerType::ALL.iter().enumerate() {
            self.metrics.secrets.staleness(*m, stale[i] as f64 / 1000.0);
            fresh.secret_age(*m, age[i] as f64 / 1000.0);
        }
        fresh
            .secret_max_age
            .set((p.ttl + p.max_stale).as_secs_f64());
    }

    /// The slugs of active, prefetched references that hold no value yet (each once).
    pub fn missing(&self) -> Vec<Arc<str>> {
        if !self.policy.load().prefetch {
            return Vec::new();
        }
        let mut out: Vec<Arc<str>> = self
            .active
            .load()
            .iter()
            .filter(|e| self.value(e).is_none())
            .map(|e| e.spec.slug.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Ready when prefetching is off or every active entry holds a value.
    pub fn ready(&self) -> bool {
        self.missing().is_empty()
    }
}

fn manager_slot(m: ManagerType) -> usize {
    ManagerType::ALL.iter().position(|x| *x == m).unwrap_or(0)
}

/// Milliseconds since the last successful fetch of an entry requests need (prefetched, or used
/// since that fetch): its value's age, or, once the value was dropped past its bound, the age
/// it would have. `None` for entries never fetched or not in use.
fn in_use_age(e: &Entry, current: Option<&Cached>, prefetch: bool, now: u64) -> Option<u64> {
    let fetched = match current {
        Some(c) => c.fetched_ms,
        None => e.fetched_ok_ms.load(Relaxed).checked_sub(1)?,
    };
    let wanted = prefetch || e.last_used.load(Relaxed) > fetched;
    wanted.then(|| now.saturating_sub(fetched))
}

fn unavailable(e: &Entry, cause: SecretError) -> SecretUnavailable {
    SecretUnavailable {
        slug: e.spec.slug.clone(),
        manager: e.spec.manager,
        cause,
    }
}

#[cfg(test)]
mod tests;
