//! Metrics after a fallback and a retry: attempts by provider, route and outcome; fallbacks
//! and retries by route.

use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;

use super::common::{secret, FakeUpstream, Keyway, Reply};
use super::{expect_metric, openai, send, toml, BODY, ERR_503, OK_A, OK_B};

const ATTEMPTS: &str = "keyway_upstream_attempts_total";

fn attempts(outcome: &'static str) -> [(&'static str, &'static str); 3] {
    [
        ("provider", "openai"),
        ("route", "portkey"),
        ("outcome", outcome),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn fallbacks_retries_and_attempts_are_counted() {
    let (ka, kb) = (secret("sk-strat-metrics-a"), secret("sk-strat-metrics-b"));
    let a = FakeUpstream::with(|_| Reply::status(503, ERR_503)).await;
    let b = FakeUpstream::with(|_| Reply::ok_json(OK_B)).await;
    let n = AtomicUsize::new(0);
    let c = FakeUpstream::with(move |_| {
        if n.fetch_add(1, Ordering::SeqCst) == 0 {
            Reply::Json {
                status: 429,
                body: r#"{"error":{"message":"slow down"}}"#.into(),
                headers: vec![("retry-after-ms", "10")],
            }
        } else {
            Reply::ok_json(OK_A)
        }
    })
    .await;
    let kw = Keyway::start(&toml("", "")).await;

    let cfg =
        json!({"strategy": {"mode": "fallback"}, "targets": [openai(&a, &ka), openai(&b, &kb)]});
    let r = send(&kw, &cfg.to_string(), BODY, &[]).await;
    assert_eq!(r.status, 200);
    expect_metric(&kw, ATTEMPTS, &attempts("5xx"), 1.0).await;
    expect_metric(&kw, ATTEMPTS, &attempts("2xx"), 1.0).await;
    expect_metric(&kw, "keyway_fallbacks_total", &[("route", "portkey")], 1.0).await;
    expect_metric(&kw, "keyway_retries_total", &[("route", "portkey")], 0.0).await;

    let r = send(
        &kw,
        &openai(&c, &ka).to_string(),
        BODY,
        &[("x-portkey-retry-count", "1")],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(c.requests().len(), 2);
    expect_metric(&kw, "keyway_retries_total", &[("route", "portkey")], 1.0).await;
    expect_metric(&kw, ATTEMPTS, &attempts("4xx"), 1.0).await;
    expect_metric(&kw, ATTEMPTS, &attempts("2xx"), 2.0).await;
    expect_metric(&kw, ATTEMPTS, &attempts("5xx"), 1.0).await;
    expect_metric(&kw, "keyway_fallbacks_total", &[("route", "portkey")], 1.0).await;
}
