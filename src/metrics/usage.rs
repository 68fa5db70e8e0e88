//! LLM usage: tokens by provider, route, workspace and model; time to first token; request and
//! response sizes; the access log's dropped lines.
//!
//! Token children are made on first use: every label is bounded by the configuration and the
//! store (provider from the enum, route from the runtime's routes, workspace from the
//! authenticated caller, model from `[usage] models` or `other`), and creating them all up front
//! would print thousands of zero series. No label is formatted per request.

use pingora_prometheus::prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry, Result,
};

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

#[derive(Debug)]
pub struct UsageMetrics {
    tokens: IntCounterVec,
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
        let provider = l.provider.map_or("none", |p| p.as_str());
        for (kind, n) in [
            ("prompt", prompt),
            ("completion", completion),
            ("total", total),
        ] {
            if let Some(n) = n {
                self.tokens
                    .with_label_values(&[provider, l.route, l.workspace, l.model, kind])
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
}
