//! `strategy.mode = "loadbalance"`: one weighted random pick per request; weight 0 is never
//! chosen.

use futures_util::StreamExt;
use serde_json::json;

use super::common::{secret, FakeUpstream, Keyway, Reply};
use super::{assert_attempt, openai, send, toml, with, BODY, LAST_USED, OK_A, OK_B};

#[tokio::test(flavor = "multi_thread")]
async fn weights_split_the_traffic() {
    let (ka, kb, kc) = (
        secret("sk-strat-lb-a"),
        secret("sk-strat-lb-b"),
        secret("sk-strat-lb-c"),
    );
    let a = FakeUpstream::with(|_| Reply::ok_json(OK_A)).await;
    let b = FakeUpstream::with(|_| Reply::ok_json(OK_B)).await;
    let c = FakeUpstream::start().await;
    let kw = Keyway::start(&toml("", "")).await;
    let cfg = json!({
        "strategy": {"mode": "loadbalance"},
        "targets": [
            with(openai(&a, &ka), json!({"weight": 3})),
            with(openai(&b, &kb), json!({"weight": 1})),
            with(openai(&c, &kc), json!({"weight": 0})),
        ],
    })
    .to_string();

    const N: usize = 400;
    let answers: Vec<_> = futures_util::stream::iter(0..N)
        .map(|_| send(&kw, &cfg, BODY, &[]))
        .buffer_unordered(8)
        .collect()
        .await;
    let mut by_header = [0usize; 2];
    for r in &answers {
        assert_eq!(r.status, 200, "{}", r.text());
        match (r.header(LAST_USED), r.text()) {
            (Some("config.targets[0]"), OK_A) => by_header[0] += 1,
            (Some("config.targets[1]"), OK_B) => by_header[1] += 1,
            other => panic!("answer from an unexpected target: {other:?}"),
        }
    }
    let (ra, rb) = (a.requests(), b.requests());
    assert_eq!(ra.len() + rb.len(), N, "one attempt per request");
    assert_eq!([ra.len(), rb.len()], by_header);
    // Binomial(400, 0.75): mean 300, sd 8.7; ±45 is over five sd.
    assert!(
        (255..=345).contains(&ra.len()),
        "3:1 weights gave {} : {}",
        ra.len(),
        rb.len()
    );
    assert!(c.requests().is_empty(), "weight 0 was chosen");
    for q in &ra {
        assert_attempt(q, &ka, BODY.as_bytes());
    }
    for q in &rb {
        assert_attempt(q, &kb, BODY.as_bytes());
    }
}
