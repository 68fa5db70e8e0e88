//! Configuration reloads: how they ended, when the last one succeeded, and which configuration
//! is active (its digest, as a one-series info metric).

use pingora_prometheus::prometheus::{
    Gauge, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, Result,
};

/// How a reload ended; `as_str()` is the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The new configuration is live.
    Ok,
    /// The file could not be read, or failed validation: the old one keeps serving.
    Invalid,
    /// The file's content is the active one: nothing to do.
    Unchanged,
}

impl ReloadOutcome {
    pub const ALL: [ReloadOutcome; 3] = [
        ReloadOutcome::Ok,
        ReloadOutcome::Invalid,
        ReloadOutcome::Unchanged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReloadOutcome::Ok => "ok",
            ReloadOutcome::Invalid => "invalid",
            ReloadOutcome::Unchanged => "unchanged",
        }
    }
}

#[derive(Debug)]
pub struct ReloadMetrics {
    reloads: IntCounterVec,
    pub last_success: Gauge,
    /// 1 while the file on disk is the configuration that runs (start-up, `ok`, `unchanged`),
    /// 0 after a refused reload until the next good one.
    pub last_successful: IntGauge,
    info: IntGaugeVec,
}

impl ReloadMetrics {
    pub fn new(registry: &Registry) -> Result<ReloadMetrics> {
        let reloads = IntCounterVec::new(
            Opts::new(
                "keyway_config_reloads_total",
                "Configuration reloads (SIGHUP or a change of the file), by outcome",
            ),
            &["outcome"],
        )?;
        let last_success = Gauge::new(
            "keyway_config_last_reload_success_timestamp_seconds",
            "Unix time the active configuration went live (start-up or the last successful reload)",
        )?;
        let info = IntGaugeVec::new(
            Opts::new(
                "keyway_config_info",
                "The active configuration: 1 for its SHA-256 digest (first 16 hex digits)",
            ),
            &["digest"],
        )?;
        let last_successful = IntGauge::new(
            "keyway_config_last_reload_successful",
            "1 when the last configuration reload (or the start-up) succeeded or found the file \
             unchanged, 0 when it was refused and the previous configuration still runs",
        )?;
        last_successful.set(1);
        registry.register(Box::new(reloads.clone()))?;
        registry.register(Box::new(last_success.clone()))?;
        registry.register(Box::new(last_successful.clone()))?;
        registry.register(Box::new(info.clone()))?;
        for o in ReloadOutcome::ALL {
            reloads.with_label_values(&[o.as_str()]);
        }
        Ok(ReloadMetrics {
            reloads,
            last_success,
            last_successful,
            info,
        })
    }

    pub fn counted(&self, outcome: ReloadOutcome) {
        self.reloads.with_label_values(&[outcome.as_str()]).inc();
        let good = outcome != ReloadOutcome::Invalid;
        self.last_successful.set(i64::from(good));
    }

    /// A configuration went live: its digest becomes the only `keyway_config_info` series.
    pub fn live(&self, digest: &str, unix_seconds: f64) {
        self.info.reset();
        self.info.with_label_values(&[digest]).set(1);
        self.last_success.set(unix_seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_reload_clears_the_success_gauge_until_the_next_good_or_unchanged_one() {
        let m = ReloadMetrics::new(&Registry::new()).unwrap();
        assert_eq!(m.last_successful.get(), 1, "start-up");
        m.counted(ReloadOutcome::Invalid);
        assert_eq!(m.last_successful.get(), 0);
        m.counted(ReloadOutcome::Invalid);
        assert_eq!(m.last_successful.get(), 0);
        m.counted(ReloadOutcome::Unchanged);
        assert_eq!(
            m.last_successful.get(),
            1,
            "the file is the running one again"
        );
        m.counted(ReloadOutcome::Invalid);
        m.counted(ReloadOutcome::Ok);
        assert_eq!(m.last_successful.get(), 1);
    }
}
