//! How fresh what keyway holds is, for alerts: readiness as a gauge, each configured token's
//! lifetime (so "seconds left" can be read as a fraction of it), the age of every remote JWT
//! key set, and the age of the secrets in use against the bound past which they are no longer
//! served. The refresher publishes them every tick; series of validators a reload removed go
//! with them.

use std::collections::BTreeSet;
use std::sync::Mutex;

use pingora_prometheus::prometheus::{Gauge, GaugeVec, IntGauge, Opts, Registry, Result};

use crate::credentials::secrets::ManagerType;

#[derive(Debug)]
pub struct FreshnessMetrics {
    /// 1 once `/readyz` answers 200 (it stays so), 0 before.
    pub ready: IntGauge,
    /// Lifetime of each configured credential's current token as issued (0: none yet).
    pub token_lifetime: GaugeVec,
    jwks_age: GaugeVec,
    /// Validator names with a published `keyway_jwks_age_seconds` series.
    jwks_named: Mutex<BTreeSet<String>>,
    secret_age: GaugeVec,
    /// `ttl + max_stale`: values older than this are not served.
    pub secret_max_age: Gauge,
}

impl FreshnessMetrics {
    pub fn new(registry: &Registry) -> Result<FreshnessMetrics> {
        let ready = IntGauge::new(
            "keyway_ready",
            "1 once the instance is ready (/readyz answers 200; it stays ready), 0 before",
        )?;
        let token_lifetime = GaugeVec::new(
            Opts::new(
                "keyway_token_lifetime_seconds",
                "Lifetime of the current token of a configured credential as issued (0: none); \
                 compare keyway_token_expiry_seconds with it",
            ),
            &["credential"],
        )?;
        let jwks_age = GaugeVec::new(
            Opts::new(
                "keyway_jwks_age_seconds",
                "Seconds since the key set of a JWT validator with a remote source was last \
                 fetched (since start-up or its reload when it never was)",
            ),
            &["validator"],
        )?;
        let secret_age = GaugeVec::new(
            Opts::new(
                "keyway_secret_age_seconds",
                "Age of the oldest secret value in use (since its last successful fetch, also \
                 once dropped past its bound), by manager type (0: none)",
            ),
            &["manager"],
        )?;
        let secret_max_age = Gauge::new(
            "keyway_secret_max_age_seconds",
            "Oldest a secret value may be and still serve: [secrets] ttl_seconds + max_stale_seconds",
        )?;
        registry.register(Box::new(ready.clone()))?;
        registry.register(Box::new(token_lifetime.clone()))?;
        registry.register(Box::new(jwks_age.clone()))?;
        registry.register(Box::new(secret_age.clone()))?;
        registry.register(Box::new(secret_max_age.clone()))?;
        for m in ManagerType::ALL {
            secret_age.with_label_values(&[m.as_str()]).set(0.0);
        }
        Ok(FreshnessMetrics {
            ready,
            token_lifetime,
            jwks_age,
            jwks_named: Mutex::new(BTreeSet::new()),
            secret_age,
            secret_max_age,
        })
    }

    /// Publishes the age of every remote key set of the active runtime; the series of
    /// validators not in `ages` any more are removed.
    pub fn jwks_ages<'a>(&self, ages: impl IntoIterator<Item = (&'a str, f64)>) {
        let mut named = self.jwks_named.lock().unwrap_or_else(|p| p.into_inner());
        let mut now = BTreeSet::new();
        for (name, age) in ages {
            self.jwks_age.with_label_values(&[name]).set(age);
            now.insert(name.to_owned());
        }
        for gone in named.difference(&now) {
            let _ = self.jwks_age.remove_label_values(&[gone]);
        }
        *named = now;
    }

    pub fn secret_age(&self, m: ManagerType, seconds: f64) {
        self.secret_age
            .with_label_values(&[m.as_str()])
            .set(seconds);
    }

    /// The published age of `m`'s oldest secret in use.
    pub fn secret_age_of(&self, m: ManagerType) -> f64 {
        self.secret_age.with_label_values(&[m.as_str()]).get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora_prometheus::prometheus::{Encoder, TextEncoder};

    fn text(reg: &Registry) -> String {
        let mut out = Vec::new();
        TextEncoder::new().encode(&reg.gather(), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn jwks_ages_follow_the_validators_of_the_active_runtime() {
        let reg = Registry::new();
        let m = FreshnessMetrics::new(&reg).unwrap();
        m.jwks_ages([("auth.jwt[0]", 12.5), ("auth.jwt[1]", 3.0)]);
        let t = text(&reg);
        assert!(
            t.contains(r#"keyway_jwks_age_seconds{validator="auth.jwt[0]"} 12.5"#),
            "{t}"
        );
        assert!(t.contains(r#"keyway_jwks_age_seconds{validator="auth.jwt[1]"} 3"#));
        // A reload removed the second validator: its series goes.
        m.jwks_ages([("auth.jwt[0]", 13.0)]);
        let t = text(&reg);
        assert!(t.contains(r#"keyway_jwks_age_seconds{validator="auth.jwt[0]"} 13"#));
        assert!(!t.contains(r#"validator="auth.jwt[1]""#), "{t}");
        assert!(t.contains(r#"keyway_secret_age_seconds{manager="aws_sm"} 0"#));
        assert!(t.contains("keyway_ready 0"));
    }
}
