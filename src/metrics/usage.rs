//! LLM usage: tokens by provider, route, workspace and model; time to first token; request and
//! response sizes; the access log's dropped lines.
//!
//! Token children are made on first use: every label is bounded by the configuration and the
//! store (provider from the enum, route from the runtime's routes, workspace from the
//! authenticated caller, model from `[usage] models` or `other`), and creating them all up front
//! would print thousands of zero series. No label is formatted per request, and a label set
//! seen before finds its series in one cache lookup, not one registry lookup per kind.

use std::sync::{Arc, OnceLock};

use pingora_prometheus::prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry, Result,
};
use quick_cache::Equivalent;

use super::{provider_labels, provider_slot};
use crate::vocab::Provider;

const TTFT_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0,
];
const SIZE_BUCKETS: &[f64] = &[
    256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0,
];

/// Labels of one request's token series.
pub struct UsageLabels<'a> {
    pub provider: Option<Provider>,
    pub route: &'a str,
    pub workspace: &'a str,
    pub model: &'a str,
}

/// Label sets whose series are kept at hand. One more only costs a registry lookup per kind
/// (the series themselves stay registered).
const TOKEN_SERIES_CACHED: usize = 4096;

/// The kinds of a token series, in the order [`UsageMetrics::tokens`] takes their counts.
const TOKEN_KINDS: [&str; 3] = ["prompt", "completion", "total"];

/// One label set's series, each made when its kind is first counted.
type TokenSeries = Arc<[OnceLock<IntCounter>; 3]>;

#[derive(Debug, Hash, PartialEq, Eq)]
struct TokenKey {
    provider: &'static str,
    route: Box<str>,
    workspace: Box<str>,
    model: Box<str>,
}

/// A [`TokenKey`] borrowed from the request (hashes the same).
#[derive(Hash)]
struct TokenKeyRef<'a> {
    provider: &'static str,
    route: &'a str,
    workspace: &'a str,
    model: &'a str,
}

impl Equivalent<TokenKey> for TokenKeyRef<'_> {
    fn equivalent(&self, k: &TokenKey) -> bool {
        self.provider == k.provider
            && self.route == &*k.route
            && self.workspace == &*k.workspace
            && self.model == &*k.model
    }
}

#[derive(Debug)]
pub struct UsageMetrics {
    tokens: IntCounterVec,
    token_series: quick_cache::sync::Cache<TokenKey, TokenSeries>,
    ttft: Vec<Histogram>,
    request_size: Vec<Histogram>,
    response_size: Vec<Histogram>,
    pub access_log_dropped: IntCounter,
}

impl UsageMetrics {
    pub fn new(registry: &Registry) -> Result<UsageMetrics> {
        let tokens = IntCounterVec::new(
            Opts::new(
                "keyway_llm_tokens_total",
                "Tokens the providers' answers reported, by provider, route, workspace, model and kind (prompt, completion, total)",
            ),
            &["provider", "route", "workspace", "model", "kind"],
        )?;
        let ttft = HistogramVec::new(
            HistogramOpts::new(
                "keyway_llm_time_to_first_token_seconds",
                "Streamed answers: time from request start to the first event carrying content, by provider",
            )
            .buckets(TTFT_BUCKETS.to_vec()),
            &["provider"],
        )?;
        let request_size = HistogramVec::new(
            HistogramOpts::new(
                "keyway_request_body_bytes",
                "Request body bytes read from the client, by provider",
            )
            .buckets(SIZE_BUCKETS.to_vec()),
            &["provider"],
        )?;
        let response_size = HistogramVec::new(
            HistogramOpts::new(
                "keyway_response_body_bytes",
                "Response body bytes sent to the client, by provider",
            )
            .buckets(SIZE_BUCKETS.to_vec()),
            &["provider"],
        )?;
        let access_log_dropped = IntCounter::new(
            "keyway_access_log_dropped_total",
            "Access-log lines dropped because the writer was behind (its queue was full)",
        )?;
        registry.register(Box::new(tokens.clone()))?;
        registry.register(Box::new(ttft.clone()))?;
        registry.register(Box::new(request_size.clone()))?;
        registry.register(Box::new(response_size.clone()))?;
        registry.register(Box::new(access_log_dropped.clone()))?;
        let per_provider = |v: &HistogramVec| {
            provider_labels()
                .map(|p| v.with_label_values(&[p]))
                .collect::<Vec<_>>()
        };
        Ok(UsageMetrics {
            ttft: per_provider(&ttft),
            request_size: per_provider(&request_size),
            response_size: per_provider(&response_size),
            tokens,
            token_series: quick_cache::sync::Cache::new(TOKEN_SERIES_CACHED),
            access_log_dropped,
        })
    }

    /// Counts the tokens of one answer; absent counts add nothing.
    pub fn tokens(
        &self,
        l: &UsageLabels,
        prompt: Option<u64>,
        completion: Option<u64>,
        total: Option<u64>,
    ) {
        let counts = [prompt, completion, total];
        if counts.iter().all(Option::is_none) {
            return;
        }
        let key = TokenKeyRef {
            provider: l.provider.map_or("none", |p| p.as_str()),
            route: l.route,
            workspace: l.workspace,
            model: l.model,
        };
        let series = match self.token_series.get(&key) {
            Some(s) => s,
            None => {
                let s = TokenSeries::default();
                let owned = TokenKey {
                    provider: key.provider,
                    route: key.route.into(),
                    workspace: key.workspace.into(),
                    model: key.model.into(),
                };
                self.token_series.insert(owned, s.clone());
                s
            }
        };
        for ((counter, n), kind) in series.iter().zip(counts).zip(TOKEN_KINDS) {
            if let Some(n) = n {
                counter
                    .get_or_init(|| {
                        self.tokens.with_label_values(&[
                            key.provider,
                            key.route,
                            key.workspace,
                            key.model,
                            kind,
                        ])
                    })
                    .inc_by(n);
            }
        }
    }

    pub fn time_to_first_token(&self, provider: Option<Provider>, seconds: f64) {
        self.ttft[provider_slot(provider)].observe(seconds);
    }

    pub fn sizes(&self, provider: Option<Provider>, request: u64, response: u64) {
        let p = provider_slot(provider);
        self.request_size[p].observe(request as f64);
        self.response_size[p].observe(response as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora_prometheus::prometheus::Encoder;

    fn exposition(r: &Registry) -> String {
        let mut out = Vec::new();
        pingora_prometheus::prometheus::TextEncoder::new()
            .encode(&r.gather(), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn token_counts_add_up_per_label_set_and_absent_kinds_print_no_series() {
        let r = Registry::new();
        let m = UsageMetrics::new(&r).unwrap();
        let labels = |workspace| UsageLabels {
            provider: Some(Provider::OpenAi),
            route: "portkey",
            workspace,
            model: "gpt-4o",
        };
        m.tokens(&labels("a"), Some(10), Some(5), Some(15));
        m.tokens(&labels("a"), Some(1), Some(2), Some(3));
        m.tokens(&labels("b"), None, Some(7), None);
        let text = exposition(&r);
        let series = |ws: &str, kind: &str| {
            format!(
                "keyway_llm_tokens_total{{kind=\"{kind}\",model=\"gpt-4o\",provider=\"openai\",route=\"portkey\",workspace=\"{ws}\"}}"
            )
        };
        for (ws, kind, n) in [
            ("a", "prompt", 11),
            ("a", "completion", 7),
            ("a", "total", 18),
            ("b", "completion", 7),
        ] {
            assert!(
                text.contains(&format!("{} {n}\n", series(ws, kind))),
                "{ws} {kind}: {text}"
            );
        }
        assert!(!text.contains(&series("b", "prompt")), "{text}");
        assert!(!text.contains(&series("b", "total")), "{text}");
    }

    #[test]
    fn a_label_set_dropped_from_the_series_cache_keeps_counting_where_it_was() {
        let r = Registry::new();
        let m = UsageMetrics::new(&r).unwrap();
        let labels = |workspace| UsageLabels {
            provider: None,
            route: "r",
            workspace,
            model: "other",
        };
        let names: Vec<String> = (0..TOKEN_SERIES_CACHED + 64)
            .map(|i| format!("w{i}"))
            .collect();
        for (i, ws) in names.iter().enumerate() {
            m.tokens(&labels(ws), Some(i as u64 + 1), None, None);
        }
        for ws in &names[..3] {
            m.tokens(&labels(ws), Some(100), None, Some(5));
        }
        m.tokens(&labels("w0"), None, None, None);
        let text = exposition(&r);
        let line = |ws: &str, kind: &str, n: u64| {
            format!("keyway_llm_tokens_total{{kind=\"{kind}\",model=\"other\",provider=\"none\",route=\"r\",workspace=\"{ws}\"}} {n}\n")
        };
        for (i, ws) in names[..3].iter().enumerate() {
            assert!(text.contains(&line(ws, "prompt", i as u64 + 101)), "{ws}");
            assert!(text.contains(&line(ws, "total", 5)), "{ws}");
        }
        let last = names.len() - 1;
        assert!(text.contains(&line(&names[last], "prompt", last as u64 + 1)));
        assert_eq!(
            text.matches("kind=\"prompt\"").count(),
            names.len(),
            "one series per label set"
        );
        assert_eq!(text.matches("kind=\"total\"").count(), 3);
        assert!(!text.contains("kind=\"completion\""));
    }
}
