//! Routing strategies end to end (issue 12): Portkey's fallback, load balancing, conditional
//! routing, retries, timeouts and circuit breaking, through a real keyway against recording
//! fakes. Each test asserts the order and count of attempts, the body and credential each fake
//! received, and the response headers Portkey sets.

#[path = "../common/mod.rs"]
mod common;

mod circuit;
mod conditional;
mod credentials;
mod fallback;
mod invalid;
mod loadbalance;
mod metrics;
mod nested;
mod retry;
mod routes;
mod streaming;
mod timeout;

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};

use common::{assert_no_client_credentials, FakeUpstream, Keyway, Recorded};

/// The chat request every test sends unless it needs another.
const BODY: &str =
    r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"temperature":1}"#;
/// What a successful fake answers (each test tells targets apart by which fake was hit).
const OK_A: &str = r#"{"id":"from-a","object":"chat.completion","choices":[]}"#;
const OK_B: &str = r#"{"id":"from-b","object":"chat.completion","choices":[]}"#;
const ERR_503: &str = r#"{"error":{"message":"overloaded","type":"server_error"}}"#;

const LAST_USED: &str = "x-portkey-last-used-option-index";
const RETRY_ATTEMPTS: &str = "x-portkey-retry-attempt-count";

/// An open-posture keyway that trusts loopback custom hosts and backs off 10 ms; `upstream`
/// adds lines to `[upstream]`, `rest` follows it.
fn toml(upstream: &str, rest: &str) -> String {
    format!(
        "trusted_custom_hosts = [\"127.0.0.1\"]\n[upstream]\nretry_backoff_ms = 10\n{upstream}\n{rest}\n"
    )
}

/// An OpenAI leaf at `fake` with its own key.
fn openai(fake: &FakeUpstream, key: &str) -> Value {
    json!({
        "provider": "openai",
        "api_key": key,
        "custom_host": format!("{}/v1", fake.base()),
    })
}

/// `value` with the keys of `extra` set on it.
fn with(mut value: Value, extra: Value) -> Value {
    let (Value::Object(v), Value::Object(e)) = (&mut value, extra) else {
        panic!("with(): both must be objects");
    };
    v.extend(e);
    value
}

/// What the client got back.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Bytes,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// POSTs `body` to `/v1/chat/completions` with `x-portkey-config: config` (JSON or a stored
/// config's slug) and `headers`; bounded at 15 s.
async fn send(kw: &Keyway, config: &str, body: &str, headers: &[(&str, &str)]) -> Answer {
    let mut all = vec![("x-portkey-config", config)];
    all.extend_from_slice(headers);
    post(kw, "/v1/chat/completions", body, &all).await
}

/// POSTs a JSON `body` to `path` with `headers`; bounded at 15 s.
async fn post(kw: &Keyway, path: &str, body: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = reqwest::Client::new()
        .post(kw.url(path))
        .header("content-type", "application/json")
        .timeout(Duration::from_secs(15))
        .body(body.to_owned());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.unwrap();
    Answer {
        status,
        headers,
        body,
    }
}

/// One attempt as a target at an OpenAI custom host must arrive: the client's path, its own
/// key and nothing else that authenticates, no `x-portkey-*` header, `body` byte for byte.
fn assert_attempt(r: &Recorded, key: &str, body: &[u8]) {
    assert_eq!(r.method, "POST");
    assert_eq!(r.uri, "/v1/chat/completions");
    let bearer = format!("Bearer {key}");
    assert_eq!(r.header("authorization"), Some(bearer.as_str()), "{r:?}");
    assert_no_client_credentials(r, &bearer);
    assert_eq!(
        r.body,
        body,
        "the body differs from the client's: {}",
        String::from_utf8_lossy(&r.body)
    );
}

/// The JSON body a fake received.
fn json_body(r: &Recorded) -> Value {
    serde_json::from_slice(&r.body).unwrap()
}

/// The value of series `name` whose label set is exactly `labels` (in any order, as the
/// exposition sorts them); 0 when absent.
fn series_value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut want: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    want.sort();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (got, value) = match rest.strip_prefix('{') {
            Some(r) => {
                let Some((inside, value)) = r.split_once("} ") else {
                    continue;
                };
                (parse_labels(inside), value)
            }
            None => match rest.strip_prefix(' ') {
                Some(value) => (Vec::new(), value),
                None => continue,
            },
        };
        if got == want {
            return value.trim().parse().unwrap();
        }
    }
    0.0
}

/// `k="v",k2="v2"` → sorted pairs (our label values hold no quotes or escapes).
fn parse_labels(inside: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut s = inside;
    while let Some((k, rest)) = s.split_once("=\"") {
        let (v, rest) = rest.split_once('"').unwrap();
        out.push((k.trim_start_matches(',').to_owned(), v.to_owned()));
        s = rest;
    }
    out.sort();
    out
}

async fn metric(kw: &Keyway, name: &str, labels: &[(&str, &str)]) -> f64 {
    series_value(&kw.metrics().await, name, labels)
}

/// Waits (at most 3 s) until the series reaches `value`, then asserts it is exactly `value`.
async fn expect_metric(kw: &Keyway, name: &str, labels: &[(&str, &str)], value: f64) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let text = kw.metrics().await;
        let v = series_value(&text, name, labels);
        if v >= value || Instant::now() >= deadline {
            assert_eq!(v, value, "{name}{labels:?}\n{text}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[test]
fn series_value_ignores_label_order() {
    let text = "# HELP x y\nkw_a{outcome=\"5xx\",provider=\"openai\",route=\"portkey\"} 3\nkw_a{outcome=\"2xx\",provider=\"openai\",route=\"portkey\"} 1\nkw_b 7\n";
    let l = [
        ("provider", "openai"),
        ("route", "portkey"),
        ("outcome", "5xx"),
    ];
    assert_eq!(series_value(text, "kw_a", &l), 3.0);
    assert_eq!(series_value(text, "kw_b", &[]), 7.0);
    assert_eq!(series_value(text, "kw_a", &[("route", "portkey")]), 0.0);
}
