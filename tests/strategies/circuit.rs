//! `strategy.cb_config` on a stored config: a target's circuit opens after
//! `failure_threshold` failed chains, fallback skips it while open, and it closes after
//! `cooldown_interval`. An inline header config's `cb_config` has no effect.

use std::time::Duration;

use serde_json::{json, Value};

use super::common::{secret, FakeUpstream, Keyway, Reply};
use super::{
    assert_attempt, expect_metric, metric, openai, send, toml, BODY, ERR_503, LAST_USED, OK_B,
};

const OPEN: &str = "keyway_circuit_open";

fn pool(a: &FakeUpstream, b: &FakeUpstream, ka: &str, kb: &str) -> Value {
    json!({
        "strategy": {
            "mode": "fallback",
            "cb_config": {"failure_threshold": 2, "cooldown_interval": 1000},
        },
        "targets": [openai(a, ka), openai(b, kb)],
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_circuit_is_skipped_until_its_cooldown_ends() {
    let (ka, kb) = (secret("sk-strat-cb-a"), secret("sk-strat-cb-b"));
    let a = FakeUpstream::with(|_| Reply::status(503, ERR_503)).await;
    let b = FakeUpstream::with(|_| Reply::ok_json(OK_B)).await;
    let stored = pool(&a, &b, &ka, &kb);
    let kw = Keyway::start(&toml(
        "",
        &format!("[configs.cb-pool]\nconfig = '''{stored}'''\n"),
    ))
    .await;
    let labels = [("owner", "config:cb-pool"), ("target", "config.targets[0]")];

    // Two failed chains on target 0 (each rescued by target 1) open its circuit.
    let mut last_failure = None;
    for i in 0..2 {
        let r = send(&kw, "cb-pool", BODY, &[]).await;
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        assert_eq!(r.header(LAST_USED), Some("config.targets[1]"));
        let ra = a.only();
        assert_attempt(&ra, &ka, BODY.as_bytes());
        assert_attempt(&b.only(), &kb, BODY.as_bytes());
        last_failure = Some(ra.at);
    }
    let last_failure = last_failure.unwrap();
    expect_metric(&kw, OPEN, &labels, 1.0).await;

    // While open, the request goes straight to target 1.
    let r = send(&kw, "cb-pool", BODY, &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), OK_B);
    assert_eq!(r.header(LAST_USED), Some("config.targets[1]"));
    assert!(a.requests().is_empty(), "an open circuit was tried");
    assert_attempt(&b.only(), &kb, BODY.as_bytes());

    // After the cooldown, target 0 is tried again (bounded wait).
    let mut tried_again = None;
    while last_failure.elapsed() < Duration::from_secs(3) {
        let r = send(&kw, "cb-pool", BODY, &[]).await;
        assert_eq!(r.status, 200);
        let seen = a.requests();
        if !seen.is_empty() {
            tried_again = Some(seen[0].at - last_failure);
            assert_eq!(seen.len(), 1);
            assert_attempt(&seen[0], &ka, BODY.as_bytes());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = tried_again.expect("target 0 was not tried again within 3 s of opening");
    assert!(
        after >= Duration::from_millis(1000),
        "target 0 was tried {after:?} after its circuit opened (cooldown 1000 ms)"
    );
    assert_eq!(
        metric(&kw, OPEN, &labels).await,
        0.0,
        "closed after the cooldown"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_inline_cb_config_has_no_effect() {
    let (ka, kb) = (
        secret("sk-strat-cb-inline-a"),
        secret("sk-strat-cb-inline-b"),
    );
    let a = FakeUpstream::with(|_| Reply::status(503, ERR_503)).await;
    let b = FakeUpstream::with(|_| Reply::ok_json(OK_B)).await;
    let kw = Keyway::start(&toml("", "")).await;
    let cfg = pool(&a, &b, &ka, &kb).to_string();
    for _ in 0..4 {
        let r = send(&kw, &cfg, BODY, &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header(LAST_USED), Some("config.targets[1]"));
    }
    assert_eq!(a.requests().len(), 4, "an inline config opened a circuit");
    assert_eq!(b.requests().len(), 4);
}
