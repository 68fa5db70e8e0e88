//! The control plane's metrics: admin requests by route and outcome, store errors, and how
//! current this instance's snapshot of the store is.

use pingora_prometheus::prometheus::{Gauge, IntCounterVec, IntGauge, Opts, Registry, Result};

/// Admin request outcomes, by status.
pub fn outcome(status: u16) -> &'static str {
    match status {
        200..=299 => "ok",
        400 | 405 | 413 | 422 => "invalid",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        409 => "conflict",
        503 => "unavailable",
        _ => "error",
    }
}

const OUTCOMES: [&str; 8] = [
    "ok",
    "invalid",
    "unauthorized",
    "forbidden",
    "not_found",
    "conflict",
    "unavailable",
    "error",
];
const ROUTES: [&str; 8] = [
    "secret-references",
    "integrations",
    "virtual-keys",
    "api-keys",
    "workspaces",
    "configs",
    "audit-logs",
    "other",
];
/// `apply`: a store version that does not fit the config file (the running snapshot stays).
const STORE_OPS: [&str; 6] = ["connect", "poll", "snapshot", "apply", "write", "audit"];

#[derive(Debug)]
pub struct ControlMetrics {
    requests: IntCounterVec,
    store_errors: IntCounterVec,
    pub snapshot_version: IntGauge,
    /// Unix time of the last successful read of the store's version (or snapshot).
    pub snapshot_checked: Gauge,
    pub notification_lag: Gauge,
}

impl ControlMetrics {
    pub fn new(registry: &Registry) -> Result<ControlMetrics> {
        let requests = IntCounterVec::new(
            Opts::new(
                "keyway_admin_requests_total",
                "Admin API requests, by route and outcome",
            ),
            &["route", "outcome"],
        )?;
        let store_errors = IntCounterVec::new(
            Opts::new(
                "keyway_store_errors_total",
                "Failed store operations (the last snapshot keeps serving), by operation",
            ),
            &["op"],
        )?;
        let snapshot_version = IntGauge::new(
            "keyway_store_snapshot_version",
            "The store version this instance serves",
        )?;
        let snapshot_checked = Gauge::new(
            "keyway_store_snapshot_checked_timestamp_seconds",
            "Unix time this instance last confirmed its snapshot is the store's current one",
        )?;
        let notification_lag = Gauge::new(
            "keyway_store_change_lag_seconds",
            "From the last store change's commit (by the writer's clock) to live on this instance",
        )?;
        for m in [&requests, &store_errors] {
            registry.register(Box::new(m.clone()))?;
        }
        registry.register(Box::new(snapshot_version.clone()))?;
        registry.register(Box::new(snapshot_checked.clone()))?;
        registry.register(Box::new(notification_lag.clone()))?;
        for r in ROUTES {
            for o in OUTCOMES {
                requests.with_label_values(&[r, o]);
            }
        }
        for op in STORE_OPS {
            store_errors.with_label_values(&[op]);
        }
        Ok(ControlMetrics {
            requests,
            store_errors,
            snapshot_version,
            snapshot_checked,
            notification_lag,
        })
    }

    pub fn request(&self, route: &str, status: u16) {
        self.requests
            .with_label_values(&[route, outcome(status)])
            .inc();
    }

    /// The store's version was just read.
    pub fn checked_now(&self) {
        self.snapshot_checked.set(unix_now());
    }

    /// Store version `version`, committed at `changed_at` (RFC 3339), is live.
    pub fn live(&self, version: i64, changed_at: &str) {
        self.snapshot_version.set(version);
        let format = time::format_description::well_known::Rfc3339;
        if let Ok(t) = time::OffsetDateTime::parse(changed_at, &format) {
            let at = t.unix_timestamp_nanos() as f64 / 1e9;
            self.notification_lag.set((unix_now() - at).max(0.0));
        }
    }

    pub fn store_error(&self, op: &str) {
        self.store_errors.with_label_values(&[op]).inc();
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
