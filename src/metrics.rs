//! One `Metrics` struct, registered once. Every label value comes from an enum or the config
//! (provider slugs, route names, status classes), and every child is created at start-up so the
//! request path only bumps atomics: no label formatting, no map lookups.

use pingora_prometheus::prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

use crate::routing::provider::Provider;
use crate::routing::RouteId;

/// Status-class labels; index 5 means no response reached the client.
const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0,
];

#[derive(Debug)]
pub struct Metrics {
    routes: usize,
    /// Indexed `[provider][route][class]`, provider 0 being "none".
    requests: Vec<IntCounter>,
    duration: Vec<Histogram>,
    connect_errors: Vec<IntCounter>,
    pub in_flight: IntGauge,
    pub dns_refresh_failures: IntCounter,
}

fn provider_labels() -> impl Iterator<Item = &'static str> {
    std::iter::once("none").chain(Provider::ALL.iter().map(|p| p.as_str()))
}

fn provider_slot(p: Option<Provider>) -> usize {
    p.map_or(0, |p| p.index() + 1)
}

impl Metrics {
    pub fn new(
        registry: &Registry,
        route_names: &[String],
    ) -> pingora_prometheus::prometheus::Result<Metrics> {
        let requests_vec = IntCounterVec::new(
            Opts::new(
                "keyway_requests_total",
                "Requests handled, by provider, route and status class",
            ),
            &["provider", "route", "status_class"],
        )?;
        let duration_vec = HistogramVec::new(
            HistogramOpts::new(
                "keyway_request_duration_seconds",
                "Time from request start to the end of the response, by provider",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["provider"],
        )?;
        let connect_vec = IntCounterVec::new(
            Opts::new(
                "keyway_upstream_connect_errors_total",
                "Failed upstream connection attempts, by provider",
            ),
            &["provider"],
        )?;
        let in_flight = IntGauge::new("keyway_requests_in_flight", "Requests being handled now")?;
        let dns_refresh_failures = IntCounter::new(
            "keyway_dns_refresh_failures_total",
            "Background re-resolutions of upstream hosts that failed (old addresses kept)",
        )?;
        registry.register(Box::new(requests_vec.clone()))?;
        registry.register(Box::new(duration_vec.clone()))?;
        registry.register(Box::new(connect_vec.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(dns_refresh_failures.clone()))?;

        let mut requests = Vec::new();
        let mut duration = Vec::new();
        let mut connect_errors = Vec::new();
        for p in provider_labels() {
            for r in route_names {
                for c in CLASSES {
                    requests.push(requests_vec.with_label_values(&[p, r.as_str(), c]));
                }
            }
            duration.push(duration_vec.with_label_values(&[p]));
            connect_errors.push(connect_vec.with_label_values(&[p]));
        }
        Ok(Metrics {
            routes: route_names.len(),
            requests,
            duration,
            connect_errors,
            in_flight,
            dns_refresh_failures,
        })
    }

    /// Counts one finished request; `status` 0 means none was sent.
    pub fn finished(&self, provider: Option<Provider>, route: RouteId, status: u16, seconds: f64) {
        let class = match status {
            100..=599 => usize::from(status / 100 - 1),
            _ => 5,
        };
        let p = provider_slot(provider);
        let r = route.0.min(self.routes - 1);
        self.requests[(p * self.routes + r) * CLASSES.len() + class].inc();
        self.duration[p].observe(seconds);
    }

    pub fn connect_error(&self, provider: Option<Provider>) {
        self.connect_errors[provider_slot(provider)].inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora_prometheus::prometheus::{Encoder, TextEncoder};

    #[test]
    fn counts_land_on_the_right_labels() {
        let reg = Registry::new();
        let names = vec!["none".to_owned(), "portkey".to_owned(), "azure".to_owned()];
        let m = Metrics::new(&reg, &names).unwrap();
        m.finished(Some(Provider::AzureOpenAi), RouteId(2), 201, 0.01);
        m.finished(None, RouteId::NONE, 400, 0.001);
        m.finished(Some(Provider::OpenAi), RouteId::PORTKEY, 0, 0.5);
        m.connect_error(Some(Provider::OpenAi));
        let mut out = Vec::new();
        TextEncoder::new().encode(&reg.gather(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let has = |line: &str| text.lines().any(|l| l == line);
        assert!(
            has(
                r#"keyway_requests_total{provider="azure-openai",route="azure",status_class="2xx"} 1"#
            ),
            "{text}"
        );
        assert!(has(
            r#"keyway_requests_total{provider="none",route="none",status_class="4xx"} 1"#
        ));
        assert!(has(
            r#"keyway_requests_total{provider="openai",route="portkey",status_class="none"} 1"#
        ));
        assert!(has(
            r#"keyway_upstream_connect_errors_total{provider="openai"} 1"#
        ));
        assert!(has(
            r#"keyway_request_duration_seconds_count{provider="azure-openai"} 1"#
        ));
    }
}
