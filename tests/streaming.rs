//! `text/event-stream` answers reach the client chunk by chunk: the first event arrives while the
//! upstream is still holding the rest back (a buffering proxy would deadlock this test, which
//! then fails on its timeout).

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{FakeUpstream, Keyway, Reply};
use futures_util::StreamExt;
use tokio::sync::Notify;

#[tokio::test(flavor = "multi_thread")]
async fn first_chunk_arrives_before_the_upstream_finishes() {
    let gate = Arc::new(Notify::new());
    let g = gate.clone();
    let first = "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n";
    let rest = [
        "data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\n",
        "data: [DONE]\n\n",
    ];
    let up = FakeUpstream::with(move |_| Reply::GatedStream {
        first: Bytes::from_static(first.as_bytes()),
        gate: g.clone(),
        rest: rest
            .iter()
            .map(|s| Bytes::from_static(s.as_bytes()))
            .collect(),
    })
    .await;
    let kw = Keyway::start(&format!(
        "[providers.openai]\nbase_url = \"{}/v1\"\napi_key = \"k\"\n",
        up.base()
    ))
    .await;
    let resp = reqwest::Client::new()
        .post(kw.url("/v1/chat/completions"))
        .header("x-portkey-provider", "openai")
        .body(r#"{"stream":true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        "text/event-stream"
    );
    let mut body = resp.bytes_stream();

    let mut seen = Vec::new();
    while seen.len() < first.len() {
        let chunk = tokio::time::timeout(Duration::from_secs(5), body.next())
            .await
            .expect(
                "first SSE event did not arrive while the upstream held the rest: keyway buffers",
            )
            .expect("stream ended early")
            .unwrap();
        seen.extend_from_slice(&chunk);
    }
    assert_eq!(
        seen,
        first.as_bytes(),
        "more than the first event arrived before the gate opened"
    );

    gate.notify_one();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(5), body.next())
        .await
        .expect("rest of the stream did not arrive")
    {
        seen.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(seen, [first, rest[0], rest[1]].concat().as_bytes());
}
