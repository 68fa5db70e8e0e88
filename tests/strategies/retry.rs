//! `retry`: attempts on one target, the statuses that retry, `retry-after-ms` honoured with
//! `use_retry_after_header(s)`, the last answer passed through with its back-off headers when
//! attempts run out, and the `x-portkey-retry-count` header form.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;

use super::common::{secret, FakeUpstream, Keyway, Recorded, Reply};
use super::{assert_attempt, openai, send, toml, with, BODY, OK_A, RETRY_ATTEMPTS};

const RATE: &str = r#"{"error":{"message":"Rate limit reached","type":"requests"}}"#;

/// Gaps between consecutive requests, as the fake stamped them.
fn gaps(reqs: &[Recorded]) -> Vec<Duration> {
    reqs.windows(2).map(|w| w[1].at - w[0].at).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_429_is_retried_after_retry_after_ms() {
    let ka = secret("sk-strat-retry-a");
    let n = AtomicUsize::new(0);
    let a = FakeUpstream::with(move |_| {
        if n.fetch_add(1, Ordering::SeqCst) == 0 {
            Reply::Json {
                status: 429,
                body: RATE.into(),
                headers: vec![("retry-after-ms", "50")],
            }
        } else {
            Reply::ok_json(OK_A)
        }
    })
    .await;
    let kw = Keyway::start(&toml("", "")).await;
    let cfg = with(
        openai(&a, &ka),
        json!({"retry": {"attempts": 2, "on_status_codes": [429], "use_retry_after_header": true}}),
    );
    let r = send(&kw, &cfg.to_string(), BODY, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), OK_A);
    assert_eq!(r.header(RETRY_ATTEMPTS), Some("1"));
    let reqs = a.requests();
    assert_eq!(reqs.len(), 2, "one attempt and one retry");
    for q in &reqs {
        assert_attempt(q, &ka, BODY.as_bytes());
    }
    let gap = gaps(&reqs)[0];
    assert!(
        gap >= Duration::from_millis(50),
        "retried {gap:?} after a retry-after-ms of 50"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn exhausted_retries_return_the_last_answer_with_its_headers() {
    let ka = secret("sk-strat-exhausted-a");
    let n = AtomicUsize::new(0);
    let a = FakeUpstream::with(move |_| Reply::Json {
        status: 429,
        body: format!(
            r#"{{"error":{{"message":"rate limited {}"}}}}"#,
            n.fetch_add(1, Ordering::SeqCst)
        ),
        headers: vec![
            ("retry-after-ms", "50"),
            ("x-ratelimit-remaining-requests", "0"),
        ],
    })
    .await;
    let e500 = r#"{"error":{"message":"boom"}}"#;
    let c = FakeUpstream::with(move |_| Reply::status(500, e500)).await;
    let kw = Keyway::start(&toml("", "")).await;

    // The docs' spelling of the flag.
    let cfg = with(
        openai(&a, &ka),
        json!({"retry": {"attempts": 2, "on_status_codes": [429], "use_retry_after_headers": true}}),
    );
    let r = send(&kw, &cfg.to_string(), BODY, &[]).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.text(), r#"{"error":{"message":"rate limited 2"}}"#);
    assert_eq!(r.header("retry-after-ms"), Some("50"));
    assert_eq!(r.header("x-ratelimit-remaining-requests"), Some("0"));
    assert_eq!(r.header(RETRY_ATTEMPTS), Some("2"));
    let reqs = a.requests();
    assert_eq!(reqs.len(), 3, "one attempt and two retries");
    for q in &reqs {
        assert_attempt(q, &ka, BODY.as_bytes());
    }
    for gap in gaps(&reqs) {
        assert!(gap >= Duration::from_millis(50), "retried after {gap:?}");
    }

    // A status outside on_status_codes is not retried.
    let cfg = with(
        openai(&c, &ka),
        json!({"retry": {"attempts": 2, "on_status_codes": [429]}}),
    );
    let r = send(&kw, &cfg.to_string(), BODY, &[]).await;
    assert_eq!(r.status, 500);
    assert_eq!(r.text(), e500);
    assert_eq!(r.header(RETRY_ATTEMPTS), Some("0"));
    assert_attempt(&c.only(), &ka, BODY.as_bytes());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_retry_count_header_retries_with_the_default_codes() {
    let ka = secret("sk-strat-retry-header");
    let n = AtomicUsize::new(0);
    let a = FakeUpstream::with(move |_| {
        if n.fetch_add(1, Ordering::SeqCst) < 2 {
            Reply::status(503, super::ERR_503)
        } else {
            Reply::ok_json(OK_A)
        }
    })
    .await;
    let e502 = r#"{"error":{"message":"bad gateway"}}"#;
    let c = FakeUpstream::with(move |_| Reply::status(502, e502)).await;
    let kw = Keyway::start(&toml("", "")).await;

    let cfg = openai(&a, &ka).to_string();
    let r = send(&kw, &cfg, BODY, &[("x-portkey-retry-count", "2")]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), OK_A);
    assert_eq!(r.header(RETRY_ATTEMPTS), Some("2"));
    let reqs = a.requests();
    assert_eq!(reqs.len(), 3);
    for q in &reqs {
        assert_attempt(q, &ka, BODY.as_bytes());
    }

    let cfg = openai(&c, &ka).to_string();
    let r = send(&kw, &cfg, BODY, &[("x-portkey-retry-count", "1")]).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.text(), e502);
    assert_eq!(c.requests().len(), 2, "one attempt and one retry");
}
