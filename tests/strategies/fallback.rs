//! `strategy.mode = "fallback"`: targets in order, each with its own credential, the body
//! replayed byte for byte; `on_status_codes` decides what moves on; a body over
//! `replay_body_limit_bytes` gets one attempt only.

use serde_json::json;

use super::common::{secret, FakeUpstream, Keyway, Reply};
use super::{
    assert_attempt, openai, send, toml, BODY, ERR_503, LAST_USED, OK_A, OK_B, RETRY_ATTEMPTS,
};

#[tokio::test(flavor = "multi_thread")]
async fn fallback_moves_on_and_each_target_gets_its_own_key() {
    let (ka, kb) = (secret("sk-strat-fallback-a"), secret("sk-strat-fallback-b"));
    let a = FakeUpstream::with(|_| Reply::status(503, ERR_503)).await;
    let b = FakeUpstream::with(|_| Reply::ok_json(OK_B)).await;
    let kw = Keyway::start(&toml("", "")).await;

    let cfg =
        json!({"strategy": {"mode": "fallback"}, "targets": [openai(&a, &ka), openai(&b, &kb)]});
    let r = send(&kw, &cfg.to_string(), BODY, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), OK_B);
    assert_eq!(r.header(LAST_USED), Some("config.targets[1]"));
    assert_eq!(r.header(RETRY_ATTEMPTS), Some("0"));
    let (ra, rb) = (a.only(), b.only());
    assert!(ra.at <= rb.at, "target 0 is tried first");
    assert_attempt(&ra, &ka, BODY.as_bytes());
    assert_attempt(&rb, &kb, BODY.as_bytes());
    assert_eq!(
        ra.header("host"),
        Some(format!("127.0.0.1:{}", a.port).as_str())
    );
    assert_eq!(
        rb.header("host"),
        Some(format!("127.0.0.1:{}", b.port).as_str())
    );

    // A first target that answers 2xx ends the walk.
    let cfg =
        json!({"strategy": {"mode": "fallback"}, "targets": [openai(&b, &kb), openai(&a, &ka)]});
    let r = send(&kw, &cfg.to_string(), BODY, &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header(LAST_USED), Some("config.targets[0]"));
    assert_attempt(&b.only(), &kb, BODY.as_bytes());
    assert!(a.requests().is_empty(), "a 2xx must not fall back");
}

#[tokio::test(flavor = "multi_thread")]
async fn on_status_codes_decide_what_falls_back() {
    let (ka, kb) = (secret("sk-strat-codes-a"), secret("sk-strat-codes-b"));
    let e500 = r#"{"error":{"message":"boom","type":"server_error"}}"#;
    let a500 = FakeUpstream::with(move |_| Reply::status(500, e500)).await;
    let a429 = FakeUpstream::with(|_| Reply::Json {
        status: 429,
        body: r#"{"error":{"message":"slow down"}}"#.into(),
        headers: vec![("retry-after-ms", "10")],
    })
    .await;
    let b = FakeUpstream::with(|_| Reply::ok_json(OK_B)).await;
    let kw = Keyway::start(&toml("", "")).await;

    // A status outside the list is the answer, as is.
    let cfg = json!({
        "strategy": {"mode": "fallback", "on_status_codes": [429]},
        "targets": [openai(&a500, &ka), openai(&b, &kb)],
    });
    let r = send(&kw, &cfg.to_string(), BODY, &[]).await;
    assert_eq!(r.status, 500);
    assert_eq!(r.text(), e500);
    assert_eq!(r.header(LAST_USED), Some("config.targets[0]"));
    assert_attempt(&a500.only(), &ka, BODY.as_bytes());
    assert!(b.requests().is_empty(), "500 is not in on_status_codes");

    // A status in the list moves on.
    let cfg = json!({
        "strategy": {"mode": "fallback", "on_status_codes": [429]},
        "targets": [openai(&a429, &ka), openai(&b, &kb)],
    });
    let r = send(&kw, &cfg.to_string(), BODY, &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), OK_B);
    assert_eq!(r.header(LAST_USED), Some("config.targets[1]"));
    assert_attempt(&a429.only(), &ka, BODY.as_bytes());
    assert_attempt(&b.only(), &kb, BODY.as_bytes());

    // When every target fails, the last one's answer is returned.
    let cfg = json!({
        "strategy": {"mode": "fallback"},
        "targets": [openai(&a429, &ka), openai(&a500, &kb)],
    });
    let r = send(&kw, &cfg.to_string(), BODY, &[]).await;
    assert_eq!(r.status, 500);
    assert_eq!(r.text(), e500);
    assert_eq!(r.header(LAST_USED), Some("config.targets[1]"));
    assert_attempt(&a429.only(), &ka, BODY.as_bytes());
    assert_attempt(&a500.only(), &kb, BODY.as_bytes());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_over_the_replay_limit_goes_to_the_first_target_only() {
    let (ka, kb) = (secret("sk-strat-big-a"), secret("sk-strat-big-b"));
    let a = FakeUpstream::with(|_| Reply::status(503, ERR_503)).await;
    let b = FakeUpstream::with(|_| Reply::ok_json(OK_A)).await;
    let kw = Keyway::start(&toml("replay_body_limit_bytes = 1024", "")).await;
    let cfg =
        json!({"strategy": {"mode": "fallback"}, "targets": [openai(&a, &ka), openai(&b, &kb)]})
            .to_string();

    // Under the limit: replayed.
    let r = send(&kw, &cfg, BODY, &[]).await;
    assert_eq!(r.status, 200);
    assert_attempt(&a.only(), &ka, BODY.as_bytes());
    assert_attempt(&b.only(), &kb, BODY.as_bytes());

    // Over it: one attempt, whose answer stands.
    let big = json!({
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "x".repeat(4000)}],
    })
    .to_string();
    assert!(big.len() > 4000);
    let r = send(&kw, &cfg, &big, &[]).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.text(), ERR_503);
    assert_eq!(r.header(LAST_USED), Some("config.targets[0]"));
    assert_attempt(&a.only(), &ka, big.as_bytes());
    assert!(
        b.requests().is_empty(),
        "a body that was not kept cannot be replayed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_over_pingoras_retry_buffer_are_replayed_whole() {
    let (ka, kb) = (secret("sk-strat-huge-a"), secret("sk-strat-huge-b"));
    let a = FakeUpstream::with(|_| Reply::status(503, ERR_503)).await;
    let b = FakeUpstream::with(|_| Reply::ok_json(OK_A)).await;
    let kw = Keyway::start(&toml("", "")).await;
    let cfg =
        json!({"strategy": {"mode": "fallback"}, "targets": [openai(&a, &ka), openai(&b, &kb)]})
            .to_string();
    // 300 KiB: kept by keyway (Pingora's own buffer holds 64 KiB), sent whole to both targets.
    for size in [300 * 1024, 64 * 1024 + 1] {
        let big = json!({
            "model": "gpt-4o",
            "messages": [{"role": "user", "content": "y".repeat(size)}],
        })
        .to_string();
        let r = send(&kw, &cfg, &big, &[]).await;
        assert_eq!(r.status, 200, "{size}: {}", r.text());
        assert_eq!(r.header(LAST_USED), Some("config.targets[1]"));
        assert_attempt(&a.only(), &ka, big.as_bytes());
        assert_attempt(&b.only(), &kb, big.as_bytes());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_without_targets_is_marked_as_portkey_marks_it() {
    let ka = secret("sk-strat-plain-a");
    let a = FakeUpstream::with(|_| Reply::ok_json(OK_A)).await;
    let kw = Keyway::start(&toml("", "")).await;
    let r = send(&kw, &openai(&a, &ka).to_string(), BODY, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header(LAST_USED), Some("config"));
    assert_eq!(r.header(RETRY_ATTEMPTS), Some("0"));
    assert_attempt(&a.only(), &ka, BODY.as_bytes());
}
