//! Routing strategies: attempts by provider, route and outcome, fallbacks and retries by route,
//! and the state of each circuit (stored configs and routes: labels from the configuration).
//! These count only requests with a strategy; a plain request bumps none of them.

use std::sync::Arc;

use pingora_prometheus::prometheus::core::{Collector, Desc};
use pingora_prometheus::prometheus::proto::MetricFamily;
use pingora_prometheus::prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry, Result};

#[derive(Debug)]
pub struct StrategyMetrics {
    attempts: IntCounterVec,
    fallbacks: IntCounterVec,
    retries: IntCounterVec,
}

impl StrategyMetrics {
    pub fn new(registry: &Registry) -> Result<StrategyMetrics> {
        let attempts = IntCounterVec::new(
            Opts::new(
                "keyway_upstream_attempts_total",
                "Attempts of requests with a routing strategy, by provider, route and outcome (2xx, 3xx, 4xx, 5xx, timeout, connect_error, error)",
            ),
            &["provider", "route", "outcome"],
        )?;
        let fallbacks = IntCounterVec::new(
            Opts::new(
                "keyway_fallbacks_total",
                "Times a fallback strategy moved on to its next target, by route",
            ),
            &["route"],
        )?;
        let retries = IntCounterVec::new(
            Opts::new(
                "keyway_retries_total",
                "Retries of a target (its retry setting), by route",
            ),
            &["route"],
        )?;
        registry.register(Box::new(attempts.clone()))?;
        registry.register(Box::new(fallbacks.clone()))?;
        registry.register(Box::new(retries.clone()))?;
        Ok(StrategyMetrics {
            attempts,
            fallbacks,
            retries,
        })
    }

    pub fn attempt(&self, provider: &str, route: &str, outcome: &str) {
        self.attempts
            .with_label_values(&[provider, route, outcome])
            .inc();
    }

    pub fn fallback(&self, route: &str) {
        self.fallbacks.with_label_values(&[route]).inc();
    }

    pub fn retry(&self, route: &str) {
        self.retries.with_label_values(&[route]).inc();
    }
}

/// Lists the circuits when Prometheus scrapes: `(owner, target, open)`.
pub type CircuitSource = Arc<dyn Fn() -> Vec<(Arc<str>, Arc<str>, bool)> + Send + Sync>;

/// `keyway_circuit_open{owner,target}`: 1 while a circuit is open, read at scrape time so a
/// circuit whose cooldown ran out shows closed without a request passing.
pub struct CircuitCollector {
    source: CircuitSource,
    gauge: IntGaugeVec,
}

impl CircuitCollector {
    pub fn new(source: CircuitSource) -> Result<CircuitCollector> {
        let gauge = IntGaugeVec::new(
            Opts::new(
                "keyway_circuit_open",
                "1 while the circuit of a target (owner: config:<slug> or route:<name>) is open",
            ),
            &["owner", "target"],
        )?;
        Ok(CircuitCollector { source, gauge })
    }
}

impl Collector for CircuitCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.gauge.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.gauge.reset();
        for (owner, target, open) in (self.source)() {
            self.gauge
                .with_label_values(&[&*owner, &*target])
                .set(i64::from(open));
        }
        self.gauge.collect()
    }
}
