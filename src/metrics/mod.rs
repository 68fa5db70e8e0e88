//! One `Metrics` struct, registered once. Every label value comes from an enum or the config
//! (provider slugs, route names, status classes), and every child is created at start-up so the
//! request path only bumps atomics: no label formatting, no map lookups.

use pingora_prometheus::prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

pub mod control;
pub mod freshness;
pub mod limits;
pub mod reload;
mod routes;
pub mod secrets;
pub mod strategy;
pub mod tls;
pub mod trace;
pub mod usage;

pub use routes::RouteCounters;

use crate::credentials::{AuthMode, CredentialError};
use crate::vocab::{AuthMethod, Outcome, Provider, RouteId};

/// Status-class labels; index 5 means no response reached the client.
const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0,
];

#[derive(Debug)]
pub struct Metrics {
    /// Children per route come with each runtime ([`RouteCounters`]): routes change on reload.
    requests: IntCounterVec,
    duration: Vec<Histogram>,
    connect_errors: Vec<IntCounter>,
    pub in_flight: IntGauge,
    pub dns_refresh_failures: IntCounter,
    /// Indexed `[mode][outcome]`.
    token_fetches: Vec<IntCounter>,
    token_fetch_duration: Vec<Histogram>,
    token_refresh_failures: Vec<IntCounter>,
    /// Seconds until expiry, per configured credential name.
    pub token_expiry: pingora_prometheus::prometheus::GaugeVec,
    pub token_cache_size: IntGauge,
    pub upstream_401_retries: IntCounter,
    /// Indexed `[method][outcome]`.
    auth: Vec<IntCounter>,
    pub jwks_refreshes: IntCounterVec,
    pub secrets: secrets::SecretMetrics,
    pub reload: reload::ReloadMetrics,
    pub control: control::ControlMetrics,
    pub freshness: freshness::FreshnessMetrics,
    pub strategy: strategy::StrategyMetrics,
    pub usage: usage::UsageMetrics,
    pub trace: trace::TraceMetrics,
    pub limits: limits::LimitMetrics,
}

/// Label order follows `AuthMethod` (then "none") and `Outcome` (after "ok").
const AUTH_METHODS: [&str; 4] = ["api_key", "virtual_key", "jwt", "none"];
const AUTH_OUTCOMES: [&str; 5] = ["ok", "missing", "invalid", "expired", "forbidden"];

/// Token fetch outcomes, in label order.
const OUTCOMES: [&str; 5] = ["ok", "rejected", "unavailable", "malformed", "setup"];

fn outcome_index(e: Option<&CredentialError>) -> usize {
    match e {
        None => 0,
        Some(CredentialError::Rejected { .. }) => 1,
        Some(CredentialError::Unavailable { .. }) => 2,
        Some(CredentialError::Malformed { .. }) => 3,
        Some(CredentialError::Setup { .. }) => 4,
    }
}

fn provider_labels() -> impl Iterator<Item = &'static str> {
    std::iter::once("none").chain(Provider::ALL.iter().map(|p| p.as_str()))
}

fn provider_slot(p: Option<Provider>) -> usize {
    p.map_or(0, |p| p.index() + 1)
}

impl Metrics {
    pub fn new(registry: &Registry) -> pingora_prometheus::prometheus::Result<Metrics> {
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
        let fetch_vec = IntCounterVec::new(
            Opts::new(
                "keyway_token_fetches_total",
                "Upstream token fetches, by auth mode and outcome",
            ),
            &["mode", "outcome"],
        )?;
        let fetch_duration_vec = HistogramVec::new(
            HistogramOpts::new(
                "keyway_token_fetch_duration_seconds",
                "Time to fetch an upstream token, by auth mode",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["mode"],
        )?;
        let refresh_fail_vec = IntCounterVec::new(
            Opts::new("keyway_token_refresh_failures_total", "Background token refreshes that failed (the old token keeps serving while valid), by auth mode"),
            &["mode"],
        )?;
        let token_expiry = pingora_prometheus::prometheus::GaugeVec::new(
            Opts::new(
                "keyway_token_expiry_seconds",
                "Seconds until the current token of a configured credential expires (0: none)",
            ),
            &["credential"],
        )?;
        let token_cache_size = IntGauge::new(
            "keyway_token_cache_size",
            "Credentials held in the token cache",
        )?;
        let upstream_401_retries = IntCounter::new(
            "keyway_upstream_401_retries_total",
            "Requests retried with a fresh token after the upstream answered 401",
        )?;
        registry.register(Box::new(fetch_vec.clone()))?;
        registry.register(Box::new(fetch_duration_vec.clone()))?;
        registry.register(Box::new(refresh_fail_vec.clone()))?;
        registry.register(Box::new(token_expiry.clone()))?;
        registry.register(Box::new(token_cache_size.clone()))?;
        registry.register(Box::new(upstream_401_retries.clone()))?;
        let mut token_fetches = Vec::new();
        let mut token_fetch_duration = Vec::new();
        let mut token_refresh_failures = Vec::new();
        for mode in AuthMode::ALL {
            for outcome in OUTCOMES {
                token_fetches.push(fetch_vec.with_label_values(&[mode.label(), outcome]));
            }
            token_fetch_duration.push(fetch_duration_vec.with_label_values(&[mode.label()]));
            token_refresh_failures.push(refresh_fail_vec.with_label_values(&[mode.label()]));
        }
        let auth_vec = IntCounterVec::new(
            Opts::new(
                "keyway_auth_total",
                "Client authentications and authorizations, by method and outcome",
            ),
            &["method", "outcome"],
        )?;
        let jwks_refreshes = IntCounterVec::new(
            Opts::new(
                "keyway_jwks_refreshes_total",
                "JWKS fetches (background and unknown-kid), by outcome",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(auth_vec.clone()))?;
        registry.register(Box::new(jwks_refreshes.clone()))?;
        let mut auth = Vec::new();
        for m in AUTH_METHODS {
            for o in AUTH_OUTCOMES {
                auth.push(auth_vec.with_label_values(&[m, o]));
            }
        }
        for o in ["ok", "failed"] {
            jwks_refreshes.with_label_values(&[o]);
        }
        registry.register(Box::new(requests_vec.clone()))?;
        registry.register(Box::new(duration_vec.clone()))?;
        registry.register(Box::new(connect_vec.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(dns_refresh_failures.clone()))?;

        let mut duration = Vec::new();
        let mut connect_errors = Vec::new();
        for p in provider_labels() {
            duration.push(duration_vec.with_label_values(&[p]));
            connect_errors.push(connect_vec.with_label_values(&[p]));
        }
        Ok(Metrics {
            requests: requests_vec,
            duration,
            connect_errors,
            in_flight,
            dns_refresh_failures,
            token_fetches,
            token_fetch_duration,
            token_refresh_failures,
            token_expiry,
            token_cache_size,
            upstream_401_retries,
            auth,
            jwks_refreshes,
            secrets: secrets::SecretMetrics::new(registry)?,
            reload: reload::ReloadMetrics::new(registry)?,
            trace: trace::TraceMetrics::new(registry)?,
            control: control::ControlMetrics::new(registry)?,
            freshness: freshness::FreshnessMetrics::new(registry)?,
            strategy: strategy::StrategyMetrics::new(registry)?,
            usage: usage::UsageMetrics::new(registry)?,
            limits: limits::LimitMetrics::new(registry)?,
        })
    }

    /// The request counters of a runtime's routes (`names` in `RouteId` order), created now so
    /// the request path only bumps atomics.
    pub fn route_counters(&self, names: &[String]) -> RouteCounters {
        RouteCounters::new(&self.requests, names, provider_labels(), &CLASSES)
    }

    /// Counts an admin API request.
    pub fn admin_request(&self, route: &str, status: u16) {
        self.control.request(route, status);
    }

    /// Counts a failed store operation.
    pub fn store_error(&self, op: &str) {
        self.control.store_error(op);
    }

    /// Removes the series of routes `old` had and `new` has not (a reload dropped them).
    pub fn retire_routes(&self, old: &RouteCounters, new: &RouteCounters) {
        old.retire(&self.requests, new, provider_labels(), &CLASSES);
    }

    /// Counts one finished request; `status` 0 means none was sent.
    pub fn finished(
        &self,
        routes: &RouteCounters,
        provider: Option<Provider>,
        route: RouteId,
        status: u16,
        seconds: f64,
    ) {
        let class = match status {
            100..=599 => usize::from(status / 100 - 1),
            _ => 5,
        };
        let p = provider_slot(provider);
        routes.inc(p, route.0, class);
        self.duration[p].observe(seconds);
    }

    pub fn token_fetched(
        &self,
        mode: AuthMode,
        error: Option<&CredentialError>,
        took: std::time::Duration,
    ) {
        let m = mode as usize;
        self.token_fetches[m * OUTCOMES.len() + outcome_index(error)].inc();
        self.token_fetch_duration[m].observe(took.as_secs_f64());
    }

    pub fn token_refresh_failed(&self, mode: AuthMode) {
        self.token_refresh_failures[mode as usize].inc();
    }

    /// Counts an authentication step: `method` `None` when no credential was presented,
    /// `outcome` `None` for success.
    pub fn auth(&self, method: Option<AuthMethod>, outcome: Option<Outcome>) {
        let m = method.map_or(3, |m| m as usize);
        let o = outcome.map_or(0, |o| o as usize + 1);
        self.auth[m * AUTH_OUTCOMES.len() + o].inc();
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
        let m = Metrics::new(&reg).unwrap();
        let rc = m.route_counters(&names);
        m.finished(&rc, Some(Provider::AzureOpenAi), RouteId(2), 201, 0.01);
        m.finished(&rc, None, RouteId::NONE, 400, 0.001);
        m.finished(&rc, Some(Provider::OpenAi), RouteId::PORTKEY, 0, 0.5);
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

        // A reload renames the route: the old series go, the new ones start at zero.
        let renamed = m.route_counters(&["none".into(), "portkey".into(), "azure-eu".into()]);
        m.retire_routes(&rc, &renamed);
        let mut out = Vec::new();
        TextEncoder::new().encode(&reg.gather(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains(r#"route="azure""#), "{text}");
        assert!(text.contains(r#"keyway_requests_total{provider="azure-openai",route="azure-eu",status_class="2xx"} 0"#));
        assert!(
            text.contains(r#"route="portkey",status_class="none"} 1"#),
            "kept: {text}"
        );
    }
}
