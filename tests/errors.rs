//! Every refusal gets its status and `{"status":"failure","message":…}` body, and the fake
//! upstream records nothing for it: a refused request never half-leaves. Upstream failures map
//! to 502/504; upstream error answers pass through unchanged.

mod common;

use std::time::Duration;

use common::{assert_failure, free_port, FakeUpstream, Keyway, Reply};

/// Request headers of one case.
type Headers<'a> = &'a [(&'static str, &'static str)];

fn config(up: &str) -> String {
    format!(
        "[providers.openai]\nbase_url = \"{up}/v1\"\n[providers.azure-openai]\nbase_url = \"https://{{resource}}.openai.azure.com\"\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_before_anything_leaves() {
    let up = FakeUpstream::start().await;
    let kw = Keyway::start(&config(&up.base())).await;
    let c = reqwest::Client::new();
    let post = |headers: &[(&'static str, &'static str)]| {
        let mut r = c.post(kw.url("/v1/chat/completions")).body("{}");
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.send()
    };
    let cases: &[(Headers, u16, &str)] = &[
        (
            &[],
            400,
            "Either x-portkey-config or x-portkey-provider header is required",
        ),
        (
            &[("x-portkey-provider", "not-a-provider")],
            400,
            "Invalid provider passed",
        ),
        (
            &[("x-portkey-config", "{\"provider\": ")],
            400,
            "x-portkey-config: is not valid config JSON",
        ),
        (
            &[("x-portkey-config", "[1,2]")],
            400,
            "x-portkey-config: must be a JSON object",
        ),
        (
            &[("x-portkey-config", r#"{"provider":"nope"}"#)],
            400,
            "Invalid provider passed in x-portkey-config",
        ),
        (
            &[(
                "x-portkey-config",
                r#"{"provider":"openai","request_timeout":"soon"}"#,
            )],
            400,
            "config.request_timeout: must be a positive integer",
        ),
        (
            &[
                ("x-portkey-provider", "openai"),
                ("x-portkey-custom-host", "http://169.254.169.254/v1"),
            ],
            400,
            "x-portkey-custom-host",
        ),
        (
            &[
                ("x-portkey-provider", "openai"),
                ("x-portkey-custom-host", "http://localhost:8080"),
            ],
            400,
            "x-portkey-custom-host",
        ),
        (
            &[
                ("x-portkey-provider", "openai"),
                ("x-portkey-custom-host", "http://10.0.0.1"),
            ],
            400,
            "x-portkey-custom-host",
        ),
        (
            &[
                ("x-portkey-provider", "openai"),
                ("x-portkey-custom-host", "file:///etc/passwd"),
            ],
            400,
            "x-portkey-custom-host",
        ),
        (
            &[
                ("x-portkey-provider", "azure-openai"),
                ("x-portkey-api-key", "k"),
                ("x-portkey-azure-deployment-id", "d"),
            ],
            400,
            "x-portkey-azure-resource-name is required",
        ),
        (
            &[
                ("x-portkey-provider", "azure-openai"),
                ("x-portkey-api-key", "k"),
                ("x-portkey-azure-resource-name", "r"),
            ],
            400,
            "x-portkey-azure-deployment-id is required",
        ),
        (
            &[
                ("x-portkey-provider", "azure-openai"),
                ("x-portkey-api-key", "k"),
                ("x-portkey-azure-resource-name", "evil.com/x"),
                ("x-portkey-azure-deployment-id", "d"),
            ],
            400,
            "x-portkey-azure-resource-name",
        ),
        (
            &[
                ("x-portkey-provider", "azure-openai"),
                ("x-portkey-api-key", "k"),
                ("x-portkey-azure-resource-name", "r"),
                ("x-portkey-azure-deployment-id", "../../x"),
            ],
            400,
            "x-portkey-azure-deployment-id",
        ),
        (
            &[
                ("x-portkey-provider", "azure-openai"),
                ("x-portkey-api-key", "k"),
                ("x-portkey-azure-resource-name", "r"),
                ("x-portkey-azure-deployment-id", "d"),
                ("x-portkey-azure-auth-mode", "magic"),
            ],
            400,
            "x-portkey-azure-auth-mode",
        ),
        (
            &[
                ("x-portkey-provider", "openai"),
                ("x-portkey-api-key", "k"),
                ("x-portkey-request-timeout", "ten"),
            ],
            400,
            "x-portkey-request-timeout",
        ),
        (
            &[
                ("x-portkey-provider", "openai"),
                ("x-portkey-api-key", "k"),
                ("x-portkey-request-timeout", "0"),
            ],
            400,
            "x-portkey-request-timeout",
        ),
        (
            &[
                ("x-portkey-provider", "openai"),
                ("x-portkey-virtual-key", "vk-1"),
            ],
            400,
            "x-portkey-virtual-key",
        ),
        (
            &[("x-portkey-provider", "openai")],
            401,
            "no API key for provider openai",
        ),
    ];
    for (headers, status, needle) in cases {
        let resp = post(headers).await.unwrap();
        if *status == 401 {
            assert!(resp.headers().contains_key("www-authenticate"));
        }
        assert_failure(resp, *status, needle).await;
        assert!(up.requests().is_empty(), "{headers:?} reached the upstream");
    }
    let resp = c.get(kw.url("/not-v1")).send().await.unwrap();
    assert_failure(resp, 404, "no route").await;
    assert!(up.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_unreachable_is_502_and_a_request_timeout_is_408() {
    let closed = free_port();
    let slow = FakeUpstream::with(|_| {
        Reply::Delay(Duration::from_secs(3), Box::new(Reply::ok_json("{}")))
    })
    .await;
    let cfg = format!(
        "trusted_custom_hosts = [\"127.0.0.1\"]\n[upstream]\nread_timeout_ms = 10000\n[providers.openai]\nbase_url = \"http://127.0.0.1:{closed}/v1\"\napi_key = \"k\"\n"
    );
    let kw = Keyway::start(&cfg).await;
    let c = reqwest::Client::new();
    let resp = c
        .post(kw.url("/v1/chat/completions"))
        .header("x-portkey-provider", "openai")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_failure(resp, 502, "upstream unreachable").await;

    let started = std::time::Instant::now();
    let resp = c
        .post(kw.url("/v1/chat/completions"))
        .header("x-portkey-provider", "openai")
        .header("x-portkey-custom-host", format!("{}/v1", slow.base()))
        .header("x-portkey-request-timeout", "300")
        .body("{}")
        .send()
        .await
        .unwrap();
    // Portkey's answer to a request timeout the caller set: 408 with its timeout_error body.
    assert_eq!(resp.status(), 408);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "Request exceeded the timeout sent in the request: 300ms"
    );
    assert_eq!(body["error"]["type"], "timeout_error");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the per-request timeout was not honoured"
    );
    assert_eq!(slow.requests().len(), 1);

    let metrics = kw.metrics().await;
    assert!(
        metrics.contains(r#"keyway_upstream_connect_errors_total{provider="openai"} 1"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_errors_pass_through_unchanged() {
    let body = r#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#;
    let up = FakeUpstream::with(move |_| Reply::Json {
        status: 429,
        body: body.into(),
        headers: vec![
            ("retry-after", "7"),
            ("retry-after-ms", "7000"),
            ("x-ms-retry-after-ms", "7000"),
            ("x-ratelimit-remaining-requests", "0"),
        ],
    })
    .await;
    let kw = Keyway::start(&config(&up.base())).await;
    let resp = reqwest::Client::new()
        .post(kw.url("/v1/chat/completions"))
        .header("x-portkey-provider", "openai")
        .header("authorization", "Bearer sk-user")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    for (k, v) in [
        ("retry-after", "7"),
        ("retry-after-ms", "7000"),
        ("x-ms-retry-after-ms", "7000"),
        ("x-ratelimit-remaining-requests", "0"),
    ] {
        assert_eq!(resp.headers().get(k).unwrap(), v);
    }
    assert_eq!(resp.text().await.unwrap(), body);
}
