//! Streams: fallback happens before the first byte reaches the client; once a stream has
//! started it is passed through as it is, even when it breaks.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::json;

use super::common::{secret, FakeUpstream, Keyway, Reply};
use super::{assert_attempt, openai, toml, with, ERR_503, LAST_USED};

const STREAM_BODY: &str =
    r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
const CHUNKS: [&str; 3] = [
    "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n",
    "data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\n",
    "data: [DONE]\n\n",
];

/// Streams the answer into memory until it ends or breaks (bounded); the bytes and whether it
/// ended cleanly.
async fn read_stream(resp: reqwest::Response) -> (Vec<u8>, bool) {
    let mut body = resp.bytes_stream();
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), body.next())
            .await
            .expect("the stream stalled")
        {
            Some(Ok(chunk)) => seen.extend_from_slice(&chunk),
            Some(Err(_)) => return (seen, false),
            None => return (seen, true),
        }
    }
}

async fn post(kw: &Keyway, cfg: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(kw.url("/v1/chat/completions"))
        .header("x-portkey-config", cfg)
        .body(STREAM_BODY)
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn fallback_happens_before_the_first_sse_byte() {
    let (ka, kb) = (secret("sk-strat-sse-a"), secret("sk-strat-sse-b"));
    let a = FakeUpstream::with(|_| Reply::status(503, ERR_503)).await;
    let b = FakeUpstream::with(|_| Reply::sse(&CHUNKS, Duration::from_millis(50))).await;
    let kw = Keyway::start(&toml("", "")).await;
    let cfg =
        json!({"strategy": {"mode": "fallback"}, "targets": [openai(&a, &ka), openai(&b, &kb)]});
    let resp = post(&kw, &cfg.to_string()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        "text/event-stream"
    );
    assert_eq!(resp.headers().get(LAST_USED).unwrap(), "config.targets[1]");
    let (seen, clean) = read_stream(resp).await;
    assert!(clean, "the stream broke");
    assert_eq!(
        String::from_utf8(seen).unwrap(),
        CHUNKS.concat(),
        "exactly target 1's stream"
    );
    assert_attempt(&a.only(), &ka, STREAM_BODY.as_bytes());
    assert_attempt(&b.only(), &kb, STREAM_BODY.as_bytes());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_that_breaks_midway_is_not_retried() {
    let (ka, kb) = (secret("sk-strat-sse-cut-a"), secret("sk-strat-sse-cut-b"));
    let a = FakeUpstream::with(|_| Reply::Stream {
        status: 200,
        headers: vec![],
        chunks: vec![Bytes::from_static(CHUNKS[0].as_bytes())],
        gap: Duration::from_millis(200),
        abort: true,
    })
    .await;
    let b = FakeUpstream::with(|_| Reply::sse(&CHUNKS, Duration::from_millis(10))).await;
    let kw = Keyway::start(&toml("", "")).await;
    let cfg = json!({
        "strategy": {"mode": "fallback"},
        "targets": [
            with(openai(&a, &ka), json!({"retry": {"attempts": 2}})),
            openai(&b, &kb),
        ],
    });
    let resp = post(&kw, &cfg.to_string()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers().get(LAST_USED).unwrap(), "config.targets[0]");
    let (seen, _) = read_stream(resp).await;
    assert_eq!(
        String::from_utf8(seen).unwrap(),
        CHUNKS[0],
        "the client gets target 0's partial stream and nothing else"
    );
    // Nothing is attempted after the break either.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_attempt(&a.only(), &ka, STREAM_BODY.as_bytes());
    assert!(b.requests().is_empty(), "a started stream fell back");
}
