//! Token metrics from plain and streamed answers of the OpenAI and Anthropic shapes; each
//! stream's first events reach the client while the upstream still holds the rest.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::Notify;

use super::common::{FakeUpstream, Keyway, Reply};
use super::{is_ms, lines, log_path};
use super::{
    ANTHROPIC_FIRST, ANTHROPIC_JSON, ANTHROPIC_REST, BODY, OPENAI_FIRST, OPENAI_JSON, OPENAI_REST,
};

/// A stream whose first events come at once and whose rest waits for `gate`.
fn gated(first: &'static str, rest: &[&'static str], gate: &Arc<Notify>) -> Reply {
    Reply::GatedStream {
        first: Bytes::from_static(first.as_bytes()),
        gate: gate.clone(),
        rest: rest
            .iter()
            .map(|s| Bytes::from_static(s.as_bytes()))
            .collect(),
    }
}

/// Reads a streamed answer: its first event must arrive while the upstream holds the rest
/// back (keyway does not hold the stream); then `gate` opens and the rest follows.
async fn read_gated(resp: reqwest::Response, first: &str, rest: &[&str], gate: &Notify) {
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut seen = Vec::new();
    while seen.len() < first.len() {
        let chunk = tokio::time::timeout(Duration::from_secs(5), body.next())
            .await
            .expect("the first events did not arrive while the upstream held the rest")
            .expect("stream ended early")
            .unwrap();
        seen.extend_from_slice(&chunk);
    }
    assert_eq!(seen, first.as_bytes(), "more than the first events arrived");
    gate.notify_one();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(5), body.next())
        .await
        .expect("the rest of the stream did not arrive")
    {
        seen.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(seen, [&[first][..], rest].concat().concat().as_bytes());
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_counted_from_plain_and_streamed_answers_of_both_shapes() {
    let oa_gate = Arc::new(Notify::new());
    let an_gate = Arc::new(Notify::new());
    let (g1, g2) = (oa_gate.clone(), an_gate.clone());
    let oa = FakeUpstream::with(move |r| match r.body.starts_with(b"{\"stream\":true") {
        true => gated(OPENAI_FIRST, &OPENAI_REST, &g1),
        false => Reply::ok_json(OPENAI_JSON),
    })
    .await;
    let an = FakeUpstream::with(move |r| match r.body.starts_with(b"{\"stream\":true") {
        true => gated(ANTHROPIC_FIRST, &ANTHROPIC_REST, &g2),
        false => Reply::ok_json(ANTHROPIC_JSON),
    })
    .await;
    let log = log_path("tokens");
    let kw = Keyway::start(&format!(
        "[providers.openai]\nbase_url = \"{}/v1\"\napi_key = \"k\"\n\
         [providers.anthropic]\nbase_url = \"{}/v1\"\napi_key = \"k\"\n\
         [usage]\nmodels = [\"gpt-4o\"]\n\
         [access_log]\nenabled = true\npath = \"{}\"\n",
        oa.base(),
        an.base(),
        log.display()
    ))
    .await;
    let client = reqwest::Client::new();
    let post = |provider: &str, path: &str, body: &'static str| {
        client
            .post(kw.url(path))
            .header("x-portkey-provider", provider)
            .body(body)
            .send()
    };
    let r = post("openai", "/v1/chat/completions", BODY).await.unwrap();
    assert_eq!(r.text().await.unwrap(), OPENAI_JSON);
    let r = post("anthropic", "/v1/messages", BODY).await.unwrap();
    assert_eq!(r.text().await.unwrap(), ANTHROPIC_JSON);
    let stream = r#"{"stream":true,"stream_options":{"include_usage":true}}"#;
    let r = post("openai", "/v1/chat/completions", stream)
        .await
        .unwrap();
    read_gated(r, OPENAI_FIRST, &OPENAI_REST, &oa_gate).await;
    let r = post("anthropic", "/v1/messages", stream).await.unwrap();
    read_gated(r, ANTHROPIC_FIRST, &ANTHROPIC_REST, &an_gate).await;

    // The log's fourth line is written after the last request's metrics: wait for it.
    let got = lines(&log, 4).await;
    let series = |provider: &str, model: &str, kind: &str| {
        format!(
            r#"keyway_llm_tokens_total{{kind="{kind}",model="{model}",provider="{provider}",route="portkey",workspace="none"}}"#
        )
    };
    // OpenAI plain: gpt-4o (allow-listed) 11 + 7 = 18; streamed: gpt-4o-mini (other) 13 + 2.
    // Anthropic: plain 20 + 5 cached in, 9 out; streamed 25 in, 15 out; claude-x is other.
    for (provider, model, kind, n) in [
        ("openai", "gpt-4o", "prompt", 11.0),
        ("openai", "gpt-4o", "completion", 7.0),
        ("openai", "gpt-4o", "total", 18.0),
        ("openai", "other", "prompt", 13.0),
        ("openai", "other", "completion", 2.0),
        ("openai", "other", "total", 15.0),
        ("anthropic", "other", "prompt", 50.0),
        ("anthropic", "other", "completion", 24.0),
        ("anthropic", "other", "total", 74.0),
    ] {
        let s = series(provider, model, kind);
        assert_eq!(kw.metric(&s).await, n, "{s}");
    }
    for p in ["openai", "anthropic"] {
        let ttft = format!(r#"keyway_llm_time_to_first_token_seconds_count{{provider="{p}"}}"#);
        assert_eq!(kw.metric(&ttft).await, 1.0, "{ttft}: streams only");
        let req = format!(r#"keyway_request_body_bytes_sum{{provider="{p}"}}"#);
        assert_eq!(kw.metric(&req).await, (BODY.len() + stream.len()) as f64);
    }
    let oa_out = OPENAI_JSON.len() + OPENAI_FIRST.len() + OPENAI_REST.concat().len();
    let out = r#"keyway_response_body_bytes_sum{provider="openai"}"#;
    assert_eq!(kw.metric(out).await, oa_out as f64);

    // The log agrees, line by line, and the streams have a time to first token.
    let want = [
        ("openai", false, "gpt-4o", 11, 7, 18),
        ("anthropic", false, "claude-x", 25, 9, 34),
        ("openai", true, "gpt-4o-mini", 13, 2, 15),
        ("anthropic", true, "claude-x", 25, 15, 40),
    ];
    for (l, (provider, stream, model, p, c, t)) in got.iter().zip(want) {
        assert_eq!(l["provider"], provider, "{l}");
        assert_eq!(l["stream"], stream, "{l}");
        assert_eq!(l["model"], model, "{l}");
        assert_eq!(
            [
                &l["prompt_tokens"],
                &l["completion_tokens"],
                &l["total_tokens"]
            ],
            [p, c, t],
            "{l}"
        );
        assert_eq!(is_ms(&l["ttft_ms"]), stream, "{l}");
        assert_eq!(l["target"], Value::Null);
        assert_eq!(l["attempts"], 1);
        assert_eq!(l["workspace"], Value::Null);
    }
}
