//! The access log: every field of a line, request ids kept, made, sent upstream and returned
//! (on keyway's own answers too), no secret of the run, sampling and the off switch.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use super::common::{self, secret, FakeUpstream, Keyway, Reply};
use super::{field_names, is_ms, lines, log_path, BODY, OPENAI_JSON};

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

    // Two ids, each sane: neither is kept, one new id replaces both upstream.
    let r = client
        .post(kw.url("/v1/chat/completions"))
        .header("x-portkey-api-key", gw.as_str())
        .header("x-portkey-config", &config)
        .header("x-request-id", "twice-1")
        .header("x-request-id", "twice-2")
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let fresh = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(fresh.len(), 36, "{fresh}");
    let sent: Vec<_> = b.requests()[2]
        .headers
        .get_all("x-request-id")
        .iter()
        .cloned()
        .collect();
    assert_eq!(sent, [fresh.as_str()]);

    // 3. keyway's own answer (a wrong gateway key) carries the id too.
    let r = send(Some("client-req-4"), "kw-not-a-key").await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["x-request-id"], "client-req-4");
    let refusal = r.text().await.unwrap();
    assert_eq!(b.requests().len(), 3, "nothing more sent upstream");

    // 4. A caller with a JWT instead of a gateway key.
    let r = send(Some("client-req-5"), &token).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], "client-req-5");
    assert_eq!(b.requests()[3].header("x-request-id"), Some("client-req-5"));

    let got = lines(&log, 6).await;
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
        fresh.as_str(),
        "client-req-5",
    ];
    for (l, id) in got[..4].iter().chain(&got[5..]).zip(ids) {
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
    let refused = &got[4];
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
    for (kind, n) in [("prompt", 55.0), ("completion", 35.0), ("total", 90.0)] {
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
