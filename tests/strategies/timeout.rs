//! `request_timeout` per attempt (and `x-portkey-request-timeout`): a timed-out target counts
//! as a failure and the walk moves on; when nothing else answers, Portkey's 408.

use std::time::{Duration, Instant};

use serde_json::json;

use super::common::{secret, FakeUpstream, Keyway, Reply};
use super::{assert_attempt, openai, send, toml, BODY, LAST_USED, OK_A, OK_B, RETRY_ATTEMPTS};

async fn slow() -> FakeUpstream {
    FakeUpstream::with(|_| Reply::Delay(Duration::from_secs(2), Box::new(Reply::ok_json(OK_A))))
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timed_out_target_falls_back() {
    let (ka, kb) = (secret("sk-strat-timeout-a"), secret("sk-strat-timeout-b"));
    let a = slow().await;
    let b = FakeUpstream::with(|_| Reply::ok_json(OK_B)).await;
    let kw = Keyway::start(&toml("", "")).await;
    let targets = json!([openai(&a, &ka), openai(&b, &kb)]);

    let in_config =
        json!({"strategy": {"mode": "fallback"}, "request_timeout": 200, "targets": targets});
    let in_header = json!({"strategy": {"mode": "fallback"}, "targets": targets});
    for (cfg, headers) in [
        (in_config, vec![]),
        (in_header, vec![("x-portkey-request-timeout", "200")]),
    ] {
        let started = Instant::now();
        let r = send(&kw, &cfg.to_string(), BODY, &headers).await;
        let took = started.elapsed();
        assert_eq!(r.status, 200, "{headers:?}: {}", r.text());
        assert_eq!(r.text(), OK_B);
        assert_eq!(r.header(LAST_USED), Some("config.targets[1]"));
        assert!(
            took < Duration::from_millis(1500),
            "{headers:?}: waited {took:?} for a 200 ms timeout"
        );
        let (ra, rb) = (a.only(), b.only());
        assert_attempt(&ra, &ka, BODY.as_bytes());
        assert_attempt(&rb, &kb, BODY.as_bytes());
        assert!(
            rb.at - ra.at >= Duration::from_millis(200),
            "{headers:?}: target 1 was tried {:?} after target 0",
            rb.at - ra.at
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timeout_as_the_final_answer_is_portkeys_408() {
    let ka = secret("sk-strat-timeout-only");
    let a = slow().await;
    let kw = Keyway::start(&toml("", "")).await;
    let cfg = json!({"strategy": {"mode": "fallback"}, "request_timeout": 200, "targets": [openai(&a, &ka)]});
    let started = Instant::now();
    let r = send(&kw, &cfg.to_string(), BODY, &[]).await;
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert_eq!(r.status, 408, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json(),
        json!({"error": {
            "message": "Request exceeded the timeout sent in the request: 200ms",
            "type": "timeout_error",
            "param": null,
            "code": null,
        }})
    );
    // Portkey sets both headers on its own 408 as on any leaf's answer.
    assert_eq!(r.header(LAST_USED), Some("config.targets[0]"));
    assert_eq!(r.header(RETRY_ATTEMPTS), Some("0"));
    assert_attempt(&a.only(), &ka, BODY.as_bytes());
}
