//! Tracing (`[tracing]`) through a real keyway: a fake OTLP/HTTP collector decodes what keyway
//! exports (`ExportTraceServiceRequest`, protobuf) and the fake upstream records the
//! `traceparent` it was sent. The client's trace is continued (same trace id, its span as
//! parent), an invalid or absent `traceparent` starts a new trace, an unsampled one is
//! propagated but not exported, and without `[tracing]` the client's header passes unchanged.

mod collector;
#[path = "../common/mod.rs"]
mod common;

use std::time::Duration;

use collector::Collector;
use common::{FakeUpstream, Keyway};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";
const BODY: &str = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"private words"}]}"#;

fn config(up: &FakeUpstream, tracing: &str) -> String {
    format!(
        "[providers.openai]\nbase_url = \"{}/v1\"\napi_key = \"sk-upstream-key\"\n{tracing}",
        up.base()
    )
}

fn tracing_section(c: &Collector, extra: &str) -> String {
    format!(
        "[tracing]\notlp_endpoint = \"{}\"\nservice_name = \"keyway-test\"\nschedule_delay_ms = 50\n\
         headers = {{ x-collector-key = \"collector-secret\" }}\n{extra}",
        c.base()
    )
}

/// A chat request with `headers`; returns the status.
async fn chat(kw: &Keyway, headers: &[(&str, &str)]) -> u16 {
    let mut r = reqwest::Client::new()
        .post(kw.url("/v1/chat/completions"))
        .header("x-portkey-provider", "openai")
        .header("authorization", "Bearer sk-client-key")
        .body(BODY);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap().status().as_u16()
}

fn attr(s: &Span, key: &str) -> Option<Value> {
    s.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.clone())
}

fn string(v: &str) -> Option<Value> {
    Some(Value::StringValue(v.into()))
}

fn int(v: i64) -> Option<Value> {
    Some(Value::IntValue(v))
}

/// (trace id, parent id, flags) of a `traceparent` value.
fn parts(tp: &str) -> (String, String, String) {
    let p: Vec<&str> = tp.split('-').collect();
    assert_eq!((p.len(), p[0]), (4, "00"), "{tp}");
    (p[1].into(), p[2].into(), p[3].into())
}

/// A chat completion with usage, as OpenAI answers it.
const ANSWER: &str = r#"{"id":"chatcmpl-9","object":"chat.completion","created":1,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":21,"completion_tokens":4,"total_tokens":25}}"#;

const SERVER: i32 = 2;
const CLIENT: i32 = 3;

#[tokio::test(flavor = "multi_thread")]
async fn the_clients_trace_is_continued_and_exported() {
    let collector = Collector::start(200).await;
    // The answer names its dated model and its usage: both reach the spans.
    let up = FakeUpstream::with(|_| common::Reply::ok_json(ANSWER)).await;
    let kw = Keyway::start(&config(&up, &tracing_section(&collector, ""))).await;
    let tp = format!("00-{TRACE}-{PARENT}-01");
    let status = chat(&kw, &[("traceparent", &tp), ("tracestate", "vendor=abc")]).await;
    assert_eq!(status, 200);

    let spans = collector.wait_spans(TRACE, 2).await;
    let server = spans
        .iter()
        .find(|s| s.kind == SERVER)
        .expect("a SERVER span");
    let client = spans
        .iter()
        .find(|s| s.kind == CLIENT)
        .expect("a CLIENT span");
    assert_eq!(server.name, "POST");
    assert_eq!(hex::encode(&server.parent_span_id), PARENT);
    assert_eq!(client.name, "chat gpt-4o");
    assert_eq!(client.parent_span_id, server.span_id);
    assert_ne!(client.span_id, server.span_id);
    assert!(server.start_time_unix_nano <= client.start_time_unix_nano);
    assert!(client.end_time_unix_nano <= server.end_time_unix_nano);

    // The upstream continues from keyway's CLIENT span; tracestate passes unchanged.
    let sent = up.only();
    let (trace, parent, flags) = parts(sent.header("traceparent").unwrap());
    assert_eq!((trace.as_str(), flags.as_str()), (TRACE, "01"));
    assert_eq!(parent, hex::encode(&client.span_id));
    assert_eq!(sent.header("tracestate"), Some("vendor=abc"));

    for (key, want) in [
        ("http.request.method", string("POST")),
        ("url.path", string("/v1/chat/completions")),
        ("url.scheme", string("http")),
        ("server.address", string("127.0.0.1")),
        ("http.response.status_code", int(200)),
        ("gen_ai.operation.name", string("chat")),
        ("gen_ai.provider.name", string("openai")),
        ("gen_ai.request.model", string("gpt-4o")),
        ("gen_ai.response.model", string("gpt-4o-2024-08-06")),
        ("gen_ai.usage.input_tokens", int(21)),
        ("gen_ai.usage.output_tokens", int(4)),
    ] {
        assert_eq!(attr(server, key), want, "SERVER {key}");
    }
    for (key, want) in [
        ("http.request.method", string("POST")),
        ("server.address", string("127.0.0.1")),
        ("server.port", int(i64::from(up.port))),
        ("http.response.status_code", int(200)),
        ("gen_ai.operation.name", string("chat")),
        ("gen_ai.provider.name", string("openai")),
        ("gen_ai.request.model", string("gpt-4o")),
        ("gen_ai.response.model", string("gpt-4o-2024-08-06")),
        ("gen_ai.usage.input_tokens", int(21)),
        ("gen_ai.usage.output_tokens", int(4)),
    ] {
        assert_eq!(attr(client, key), want, "CLIENT {key}");
    }
    assert_eq!(attr(server, "error.type"), None);

    // No credential, header value or body in any attribute.
    for s in &spans {
        let text = format!("{:?}", s.attributes);
        for secret in [
            "sk-client-key",
            "sk-upstream-key",
            "collector-secret",
            "private words",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
    let exports = collector.exports();
    let e = &exports[0];
    assert_eq!(e.content_type.as_deref(), Some("application/x-protobuf"));
    assert_eq!(e.auth.as_deref(), Some("collector-secret"));
    let resource = e.request.resource_spans[0].resource.as_ref().unwrap();
    let service = resource
        .attributes
        .iter()
        .find(|kv| kv.key == "service.name")
        .and_then(|kv| kv.value.as_ref()?.value.clone());
    assert_eq!(service, string("keyway-test"));
    kw.wait_metric(
        "keyway_trace_spans_exported_total",
        2.0,
        Duration::from_secs(5),
    )
    .await;
    assert!(!kw.log_text().contains("collector-secret"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_absent_or_invalid_traceparent_starts_a_new_trace() {
    let collector = Collector::start(200).await;
    let up = FakeUpstream::start().await;
    let kw = Keyway::start(&config(&up, &tracing_section(&collector, ""))).await;
    let invalid = [
        None,
        Some(format!("ff-{TRACE}-{PARENT}-01")),
        Some(format!("00-{}-{PARENT}-01", "0".repeat(32))),
        Some(format!("00-{TRACE}-{}-01", "0".repeat(16))),
        Some(format!("00-{}-{PARENT}-01", TRACE.to_uppercase())),
        Some(format!("00-{TRACE}-{PARENT}-01-extra")),
    ];
    for tp in invalid {
        let headers: Vec<(&str, &str)> = tp.iter().map(|v| ("traceparent", v.as_str())).collect();
        assert_eq!(chat(&kw, &headers).await, 200);
        let sent = up.only();
        let (trace, parent, flags) = parts(sent.header("traceparent").unwrap());
        assert_ne!(trace, TRACE, "{tp:?}");
        assert_ne!(trace, "0".repeat(32));
        assert_eq!(flags, "01", "sample_ratio 1.0 records every new trace");
        let spans = collector.wait_spans(&trace, 2).await;
        let server = spans.iter().find(|s| s.kind == SERVER).unwrap();
        let client = spans.iter().find(|s| s.kind == CLIENT).unwrap();
        assert!(server.parent_span_id.is_empty(), "{tp:?}: a root span");
        assert_eq!(parent, hex::encode(&client.span_id));
        assert_eq!(client.parent_span_id, server.span_id);
    }
}

/// No span of trace `trace` (hex) reached the collector.
fn assert_not_exported(collector: &Collector, trace: &str) {
    let spans = collector.spans();
    assert!(
        spans.iter().all(|s| hex::encode(&s.trace_id) != trace),
        "a span of trace {trace} was exported"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unsampled_trace_is_propagated_but_not_exported() {
    let collector = Collector::start(200).await;
    let up = FakeUpstream::start().await;
    let kw = Keyway::start(&config(&up, &tracing_section(&collector, ""))).await;
    let unsampled = format!("00-{TRACE}-{PARENT}-00");
    assert_eq!(chat(&kw, &[("traceparent", &unsampled)]).await, 200);
    let (trace, parent, flags) = parts(up.only().header("traceparent").unwrap());
    assert_eq!((trace.as_str(), flags.as_str()), (TRACE, "00"));
    assert_ne!(parent, PARENT, "keyway's own span id");

    // A sampled request after it: once its spans are in, the unsampled one's would be too.
    let sampled = "11111111111111111111111111111111";
    let tp = format!("00-{sampled}-{PARENT}-01");
    assert_eq!(chat(&kw, &[("traceparent", &tp)]).await, 200);
    collector.wait_spans(sampled, 2).await;
    assert_not_exported(&collector, TRACE);
}

#[tokio::test(flavor = "multi_thread")]
async fn sample_ratio_zero_records_no_new_trace() {
    let collector = Collector::start(200).await;
    let up = FakeUpstream::start().await;
    let section = tracing_section(&collector, "sample_ratio = 0.0\n");
    let kw = Keyway::start(&config(&up, &section)).await;
    assert_eq!(chat(&kw, &[]).await, 200);
    let (new_trace, _, flags) = parts(up.only().header("traceparent").unwrap());
    assert_eq!(flags, "00");
    // A client's sampled trace is still recorded (parent-based).
    let tp = format!("00-{TRACE}-{PARENT}-01");
    assert_eq!(chat(&kw, &[("traceparent", &tp)]).await, 200);
    collector.wait_spans(TRACE, 2).await;
    assert_not_exported(&collector, &new_trace);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_tracing_the_clients_traceparent_passes_unchanged() {
    let up = FakeUpstream::start().await;
    let kw = Keyway::start(&config(&up, "")).await;
    let tp = format!("00-{TRACE}-{PARENT}-01");
    assert_eq!(chat(&kw, &[("traceparent", &tp)]).await, 200);
    assert_eq!(up.only().header("traceparent"), Some(tp.as_str()));
    assert_eq!(chat(&kw, &[]).await, 200);
    assert_eq!(up.only().header("traceparent"), None);
    let invalid = format!("ff-{TRACE}-{PARENT}-01");
    assert_eq!(chat(&kw, &[("traceparent", &invalid)]).await, 200);
    assert_eq!(up.only().header("traceparent"), Some(invalid.as_str()));
    assert_eq!(kw.metric("keyway_trace_spans_exported_total").await, 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_collector_is_counted_and_requests_go_on() {
    let collector = Collector::start(503).await;
    let up = FakeUpstream::start().await;
    let kw = Keyway::start(&config(&up, &tracing_section(&collector, ""))).await;
    let tp = format!("00-{TRACE}-{PARENT}-01");
    assert_eq!(chat(&kw, &[("traceparent", &tp)]).await, 200);
    collector.wait_spans(TRACE, 2).await;
    kw.wait_metric(
        "keyway_trace_export_failures_total",
        1.0,
        Duration::from_secs(5),
    )
    .await;
    kw.wait_metric(
        "keyway_trace_spans_dropped_total",
        2.0,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(kw.metric("keyway_trace_spans_exported_total").await, 0.0);
    assert_eq!(chat(&kw, &[]).await, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn each_upstream_attempt_is_a_client_span_and_the_parent_it_names() {
    let collector = Collector::start(200).await;
    let n = std::sync::atomic::AtomicUsize::new(0);
    let up =
        FakeUpstream::with(
            move |_| match n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
                0 => common::Reply::status(503, r#"{"error":{"message":"overloaded"}}"#),
                _ => common::Reply::ok_json(common::CHAT_RESPONSE),
            },
        )
        .await;
    let text = format!(
        "trusted_custom_hosts = [\"127.0.0.1\"]\n[upstream]\nretry_backoff_ms = 10\n{}",
        tracing_section(&collector, "")
    );
    let kw = Keyway::start(&text).await;
    let cfg = serde_json::json!({
        "provider": "openai",
        "api_key": "sk-config-key",
        "custom_host": format!("{}/v1", up.base()),
        "retry": {"attempts": 1, "on_status_codes": [503]},
    })
    .to_string();
    let tp = format!("00-{TRACE}-{PARENT}-01");
    let status = reqwest::Client::new()
        .post(kw.url("/v1/chat/completions"))
        .header("x-portkey-config", cfg)
        .header("traceparent", tp)
        .body(BODY)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);

    let spans = collector.wait_spans(TRACE, 3).await;
    let server = spans.iter().find(|s| s.kind == SERVER).unwrap();
    let mut clients: Vec<&Span> = spans.iter().filter(|s| s.kind == CLIENT).collect();
    clients.sort_by_key(|s| s.start_time_unix_nano);
    assert_eq!(clients.len(), 2);
    let sent = up.requests();
    assert_eq!(sent.len(), 2);
    for (attempt, (client, req)) in clients.iter().zip(&sent).enumerate() {
        assert_eq!(client.parent_span_id, server.span_id);
        let (trace, parent, _) = parts(req.header("traceparent").unwrap());
        assert_eq!(trace, TRACE);
        assert_eq!(parent, hex::encode(&client.span_id), "attempt {attempt}");
    }
    assert_eq!(attr(clients[0], "http.response.status_code"), int(503));
    assert_eq!(attr(clients[0], "error.type"), string("503"));
    assert_eq!(attr(clients[1], "http.response.status_code"), int(200));
    assert_eq!(attr(clients[1], "error.type"), None);
    assert_eq!(attr(server, "http.response.status_code"), int(200));
    assert!(clients[0].end_time_unix_nano <= clients[1].start_time_unix_nano);
}
