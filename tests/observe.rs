//! Issue 14, items 3 and 4: the access log (every field of a line checked, no secret of the run
//! in it, sampling and off), `x-request-id` (kept, made, sent upstream, returned on proxied and
//! on keyway's own answers) and the token metrics read from plain and streamed answers of the
//! OpenAI and Anthropic shapes, with the stream still passing chunk by chunk.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{secret, FakeUpstream, Keyway, Reply};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::Notify;

const BODY: &str =
    r#"{"model":"gpt-4o","messages":[{"role":"user","content":"request-body-marker"}]}"#;

const OPENAI_JSON: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"answer-body-marker"},"finish_reason":"stop"}],"usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18}}"#;

const ANTHROPIC_JSON: &str = r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","usage":{"input_tokens":20,"cache_read_input_tokens":5,"output_tokens":9}}"#;

/// OpenAI's stream with `include_usage`: content first, usage on the last chunk.
const OPENAI_FIRST: &str = "data: {\"id\":\"c\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"}}],\"usage\":null}\n\n";
const OPENAI_REST: [&str; 3] = [
    "data: {\"id\":\"c\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"delta\":{\"content\":\"lo\"}}],\"usage\":null}\n\n",
    "data: {\"id\":\"c\",\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":13,\"completion_tokens\":2,\"total_tokens\":15}}\n\n",
    "data: [DONE]\n\n",
];

/// Anthropic's stream: input tokens in `message_start`, output in `message_delta`.
const ANTHROPIC_FIRST: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"claude-x\",\"content\":[],\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n";
const ANTHROPIC_REST: [&str; 2] = [
    "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":15}}\n\n",
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
];

/// Every field of a line, by name.
const FIELDS: [&str; 22] = [
    "time",
    "request_id",
    "method",
    "path",
    "status",
    "duration_ms",
    "ttfb_ms",
    "upstream_ms",
    "ttft_ms",
    "provider",
    "route",
    "target",
    "attempts",
    "workspace",
    "virtual_key",
    "bytes_in",
    "bytes_out",
    "stream",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
];

fn log_path(name: &str) -> PathBuf {
    let p = common::log_dir().join(format!("access-{name}-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

/// Waits (bounded) until the log at `path` has `n` lines, and returns them parsed.
async fn lines(path: &Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let got: Vec<&str> = text.lines().collect();
        if got.len() >= n || Instant::now() > deadline {
            assert_eq!(got.len(), n, "access log lines: {text}");
            return got
                .iter()
                .map(|l| serde_json::from_str(l).expect("a line is JSON"))
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn field_names(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

fn is_ms(v: &Value) -> bool {
    v.as_f64().is_some_and(|f| f >= 0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn access_log_lines_carry_every_field_and_no_secret() {
    let (ka, kb) = (
        secret("sk-observe-upstream-a"),
        secret("sk-observe-upstream-b"),
    );
    let gw = secret("kw-observe-gateway-key-team-a");
    let signer = common::jwt::RsaSigner::new(Some("k1"));
    let claims = json!({"iss": "https://idp.example/obs", "aud": "api://keyway", "sub": "app-obs",
        "exp": common::jwt::now() + 600, "portkey_workspace": "team-a"});
    let token = secret(&signer.sign(&claims));
    let a = FakeUpstream::with(|_| Reply::status(503, r#"{"error":{"message":"busy"}}"#)).await;
    let b = FakeUpstream::with(|_| Reply::ok_json(OPENAI_JSON)).await;
    let log = log_path("fields");
    let cfg = format!(
        r#"
trusted_custom_hosts = ["127.0.0.1"]
[upstream]
retry_backoff_ms = 10
[access_log]
enabled = true
path = "{log}"
[usage]
models = ["gpt-4o"]
[auth]
mode = "enforced"
[[auth.jwt]]
keys = [ {jwk} ]
issuers = ["https://idp.example/obs"]
audiences = ["api://keyway"]
[workspaces.team-a]
[credentials.openai-a]
type = "api_key"
key = "{ka}"
[credentials.openai-b]
type = "api_key"
key = "{kb}"
[virtual_keys.vk-a]
workspace = "team-a"
provider = "openai"
credential = "openai-a"
[virtual_keys.vk-b]
workspace = "team-a"
provider = "openai"
credential = "openai-b"
[[api_keys]]
name = "a"
hash = "{hash}"
workspace = "team-a"
"#,
        log = log.display(),
        hash = keyway::auth::keys::hash_line(&gw),
        jwk = signer.toml_key(),
    );
    let kw = Keyway::start(&cfg).await;
    let vk = |id: &str, fake: &FakeUpstream| json!({"virtual_key": id, "custom_host": format!("{}/v1", fake.base())});
    let config =
        json!({"strategy": {"mode": "fallback"}, "targets": [vk("vk-a", &a), vk("vk-b", &b)]})
            .to_string();
    let client = reqwest::Client::new();
    let send = |id: Option<&str>, key: &str| {
        let (name, value) = match key.starts_with("kw-") {
            true => ("x-portkey-api-key", key.to_owned()),
            false => ("authorization", format!("Bearer {key}")),
        };
        let mut r = client
            .post(kw.url("/v1/chat/completions?trace=q-123"))
            .header(name, value)
            .header("x-portkey-config", &config)
            .body(BODY);
        if let Some(id) = id {
            r = r.header("x-request-id", id);
        }
        r.send()
    };

    // 1. The client's id: kept, sent to both targets, returned.
    let r = send(Some("client-req-1"), &gw).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], "client-req-1");
    assert_eq!(r.text().await.unwrap(), OPENAI_JSON);
    assert_eq!(a.only().header("x-request-id"), Some("client-req-1"));
    assert_eq!(b.only().header("x-request-id"), Some("client-req-1"));

    // 2. No id (and then one that is not sane): keyway makes one, the same upstream and back.
    let r = send(None, &gw).await.unwrap();
    assert_eq!(r.status(), 200);
    let made = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(made.len(), 36, "{made}");
    assert_eq!(b.requests()[0].header("x-request-id"), Some(made.as_str()));
    let long = "x".repeat(129);
    let r = send(Some(&long), &gw).await.unwrap();
    let replaced = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(replaced.len(), 36);
    assert_ne!(replaced, made);
    assert_eq!(
        b.requests()[1].header("x-request-id"),
        Some(replaced.as_str())
    );

    // 3. keyway's own answer (a wrong gateway key) carries the id too.
    let r = send(Some("client-req-4"), "kw-not-a-key").await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["x-request-id"], "client-req-4");
    let refusal = r.text().await.unwrap();
    assert_eq!(b.requests().len(), 2, "nothing more sent upstream");

    // 4. A caller with a JWT instead of a gateway key.
    let r = send(Some("client-req-5"), &token).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], "client-req-5");
    assert_eq!(b.requests()[2].header("x-request-id"), Some("client-req-5"));

    let got = lines(&log, 5).await;
    let expected: BTreeSet<String> = FIELDS.iter().map(|s| s.to_string()).collect();
    assert_eq!(expected.len(), FIELDS.len());
    for l in &got {
        assert_eq!(field_names(l), expected, "{l}");
        let time = l["time"].as_str().unwrap();
        assert!(time.len() == 24 && time.ends_with('Z'), "{time}");
        assert!(is_ms(&l["duration_ms"]), "{l}");
        assert_eq!(l["method"], "POST");
        assert_eq!(l["path"], "/v1/chat/completions", "the query is dropped");
        assert_eq!(l["ttft_ms"], Value::Null);
        assert_eq!(l["stream"], false);
    }
    let ids = [
        "client-req-1",
        made.as_str(),
        replaced.as_str(),
        "client-req-5",
    ];
    for (l, id) in got[..3].iter().chain(&got[4..]).zip(ids) {
        assert_eq!(l["request_id"], id);
        assert_eq!(l["status"], 200);
        assert_eq!(l["provider"], "openai");
        assert_eq!(l["route"], "portkey");
        assert_eq!(l["target"], 1, "the fallback's second target answered");
        assert_eq!(l["attempts"], 2);
        assert_eq!(l["workspace"], "team-a");
        assert_eq!(l["virtual_key"], "vk-b");
        assert_eq!(l["bytes_in"], BODY.len());
        assert_eq!(l["bytes_out"], OPENAI_JSON.len());
        assert_eq!(l["model"], "gpt-4o");
        assert_eq!(l["prompt_tokens"], 11);
        assert_eq!(l["completion_tokens"], 7);
        assert_eq!(l["total_tokens"], 18);
        assert!(is_ms(&l["ttfb_ms"]) && is_ms(&l["upstream_ms"]), "{l}");
    }
    // Refused before routing: no provider, route, caller or upstream.
    let refused = &got[3];
    assert_eq!(refused["request_id"], "client-req-4");
    assert_eq!(refused["status"], 401);
    assert_eq!(refused["bytes_in"], 0, "refused before its body was read");
    assert_eq!(refused["bytes_out"], refusal.len());
    assert_eq!(refused["attempts"], 0);
    for f in [
        "provider",
        "route",
        "target",
        "workspace",
        "virtual_key",
        "ttfb_ms",
        "upstream_ms",
        "model",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
    ] {
        assert_eq!(refused[f], Value::Null, "{f}: {refused}");
    }

    // The token metrics of the same answers: the allow-listed model, the caller's workspace.
    for (kind, n) in [("prompt", 44.0), ("completion", 28.0), ("total", 72.0)] {
        let series = format!(
            r#"keyway_llm_tokens_total{{kind="{kind}",model="gpt-4o",provider="openai",route="portkey",workspace="team-a"}}"#
        );
        assert_eq!(kw.metric(&series).await, n, "{series}");
    }

    // No credential of the run, its hash, the query string or a body in the log.
    let text = std::fs::read_to_string(&log).unwrap();
    let hash = keyway::auth::keys::hash_line(&gw);
    let digest = hash.strip_prefix("sha256:").unwrap();
    for s in [
        gw.as_str(),
        token.as_str(),
        token.split('.').nth(2).unwrap(),
        ka.as_str(),
        kb.as_str(),
        "kw-not-a-key",
        digest,
        "q-123",
        "request-body-marker",
        "answer-body-marker",
    ] {
        assert!(!text.contains(s), "the access log carries {s:?}");
    }
}

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

#[tokio::test(flavor = "multi_thread")]
async fn sampling_and_the_off_switch() {
    let up = FakeUpstream::with(|_| Reply::ok_json(OPENAI_JSON)).await;
    let (all, none, off) = (log_path("all"), log_path("none"), log_path("off"));
    let cfg = |extra: String| {
        format!(
            "[providers.openai]\nbase_url = \"{}/v1\"\napi_key = \"k\"\n{extra}",
            up.base()
        )
    };
    let log = |path: &Path, enabled: bool, sample: f64| {
        cfg(format!(
            "[access_log]\nenabled = {enabled}\npath = \"{}\"\nsample = {sample:?}\n",
            path.display()
        ))
    };
    let kw_all = Keyway::start(&log(&all, true, 1.0)).await;
    let kw_none = Keyway::start(&log(&none, true, 0.0)).await;
    let kw_off = Keyway::start(&log(&off, false, 1.0)).await;
    let client = reqwest::Client::new();
    let n = 20;
    for kw in [&kw_all, &kw_none, &kw_off] {
        for _ in 0..n {
            let r = client
                .post(kw.url("/v1/chat/completions"))
                .header("x-portkey-provider", "openai")
                .body(BODY)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(
                r.headers()["x-request-id"].len(),
                36,
                "ids with the log off too"
            );
        }
    }
    assert_eq!(lines(&all, n).await.len(), n);
    // Every request of the others has finished (counted) by the time the sampled-in log has
    // its lines; rate 0 queued none of them, and the switched-off log was never opened.
    let done = r#"keyway_requests_total{provider="openai",route="portkey",status_class="2xx"}"#;
    for kw in [&kw_none, &kw_off] {
        kw.wait_metric(done, n as f64, Duration::from_secs(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        std::fs::read_to_string(&none).unwrap(),
        "",
        "sample = 0 logs nothing"
    );
    assert!(!off.exists(), "enabled = false opens no file");
    for kw in [&kw_all, &kw_none, &kw_off] {
        assert_eq!(kw.metric("keyway_access_log_dropped_total").await, 0.0);
    }
}
