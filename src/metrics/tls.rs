//! The TLS listener's certificate: how its reloads ended and when the served one expires.

use pingora_prometheus::prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry, Result};

/// How a certificate reload ended; `as_str()` is the `outcome` label (as for config reloads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsReloadOutcome {
    /// The new pair serves the next handshakes.
    Ok,
    /// The files could not be read or parsed, or the key does not match: the old pair serves on.
    Invalid,
    /// The files hold the pair already served.
    Unchanged,
}

impl TlsReloadOutcome {
    const ALL: [TlsReloadOutcome; 3] = [Self::Ok, Self::Invalid, Self::Unchanged];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Invalid => "invalid",
            Self::Unchanged => "unchanged",
        }
    }
}

#[derive(Debug)]
pub struct TlsMetrics {
    reloads: Vec<IntCounter>,
    /// Unix time the served leaf certificate stops being valid (its notAfter).
    pub expiry: IntGauge,
}

impl TlsMetrics {
    pub fn new(registry: &Registry) -> Result<TlsMetrics> {
        let vec = IntCounterVec::new(
            Opts::new(
                "keyway_tls_reloads_total",
                "Reloads of the TLS listener's certificate and key (file change or SIGHUP), by outcome",
            ),
            &["outcome"],
        )?;
        let expiry = IntGauge::new(
            "keyway_tls_cert_expiry_timestamp_seconds",
            "Unix time the TLS listener's served leaf certificate expires (notAfter)",
        )?;
        registry.register(Box::new(vec.clone()))?;
        registry.register(Box::new(expiry.clone()))?;
        let reloads = TlsReloadOutcome::ALL
            .iter()
            .map(|o| vec.with_label_values(&[o.as_str()]))
            .collect();
        Ok(TlsMetrics { reloads, expiry })
    }

    pub fn reload(&self, outcome: TlsReloadOutcome) {
        self.reloads[outcome as usize].inc();
    }
}
