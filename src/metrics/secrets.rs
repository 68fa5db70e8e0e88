//! Secret-manager metrics: fetches by manager and outcome, fetch time, cache results on the
//! request path, and how stale the values being served are. Labels are manager types and fixed
//! outcomes, never slugs or paths.

use pingora_prometheus::prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry, Result,
};

use crate::credentials::secrets::{ManagerType, SecretError};

const OUTCOMES: [&str; 6] = [
    "ok",
    "rejected",
    "not_found",
    "unavailable",
    "malformed",
    "credential",
];

/// Where a request found its secret.
#[derive(Debug, Clone, Copy)]
pub enum CacheResult {
    /// A value within its TTL.
    Hit = 0,
    /// No value: the request waited for a fetch.
    Miss = 1,
    /// A value past its TTL, served because its manager is failing.
    Stale = 2,
}

#[derive(Debug)]
pub struct SecretMetrics {
    fetches: IntCounterVec,
    fetch_duration: HistogramVec,
    cache: [IntCounter; 3],
    staleness: GaugeVec,
}

impl SecretMetrics {
    pub fn new(registry: &Registry) -> Result<SecretMetrics> {
        let fetches = IntCounterVec::new(
            Opts::new(
                "keyway_secret_fetches_total",
                "Fetches from secret managers, by manager type and outcome",
            ),
            &["manager", "outcome"],
        )?;
        let fetch_duration = HistogramVec::new(
            HistogramOpts::new(
                "keyway_secret_fetch_duration_seconds",
                "Time to fetch a secret (login included), by manager type",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["manager"],
        )?;
        let cache_vec = IntCounterVec::new(
            Opts::new(
                "keyway_secret_cache_total",
                "Secret lookups on the request path: hit (fresh), miss (fetched), stale (past its TTL while the manager fails)",
            ),
            &["result"],
        )?;
        let staleness = GaugeVec::new(
            Opts::new(
                "keyway_secret_staleness_seconds",
                "How far past its TTL the oldest value being served is, by manager type (0: none)",
            ),
            &["manager"],
        )?;
        registry.register(Box::new(fetches.clone()))?;
        registry.register(Box::new(fetch_duration.clone()))?;
        registry.register(Box::new(cache_vec.clone()))?;
        registry.register(Box::new(staleness.clone()))?;
        for m in ManagerType::ALL {
            for o in OUTCOMES {
                fetches.with_label_values(&[m.as_str(), o]);
            }
            fetch_duration.with_label_values(&[m.as_str()]);
            staleness.with_label_values(&[m.as_str()]).set(0.0);
        }
        let cache = ["hit", "miss", "stale"].map(|r| cache_vec.with_label_values(&[r]));
        Ok(SecretMetrics {
            fetches,
            fetch_duration,
            cache,
            staleness,
        })
    }

    pub fn fetched(&self, m: ManagerType, error: Option<&SecretError>, took: std::time::Duration) {
        let outcome = error.map_or("ok", SecretError::outcome);
        self.fetches.with_label_values(&[m.as_str(), outcome]).inc();
        self.fetch_duration
            .with_label_values(&[m.as_str()])
            .observe(took.as_secs_f64());
    }

    pub fn cache(&self, r: CacheResult) {
        self.cache[r as usize].inc();
    }

    pub fn staleness(&self, m: ManagerType, seconds: f64) {
        self.staleness.with_label_values(&[m.as_str()]).set(seconds);
    }
}
