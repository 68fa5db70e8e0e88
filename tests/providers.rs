//! Every provider of WIRE.md §2 through a real keyway: the upstream receives the right path and
//! query, `Host`, injected credential, no client credential or `x-portkey-*` header, and the
//! body byte for byte.

mod common;

use common::{assert_no_client_credentials, FakeUpstream, Keyway};

struct Case {
    name: &'static str,
    /// Request headers besides the common ones.
    headers: &'static [(&'static str, &'static str)],
    path: &'static str,
    expect_uri: &'static str,
    /// Expected credential header (name, value); `None` for none at all.
    expect_auth: Option<(&'static str, &'static str)>,
}

const CASES: &[Case] = &[
    Case {
        name: "openai",
        headers: &[("x-portkey-provider", "openai")],
        path: "/v1/chat/completions?trace=1",
        expect_uri: "/v1/chat/completions?trace=1",
        expect_auth: Some(("authorization", "Bearer sk-provider")),
    },
    Case {
        name: "openai embeddings",
        headers: &[("x-portkey-provider", "openai")],
        path: "/v1/embeddings",
        expect_uri: "/v1/embeddings",
        expect_auth: Some(("authorization", "Bearer sk-provider")),
    },
    Case {
        name: "anthropic messages",
        headers: &[("x-portkey-provider", "anthropic")],
        path: "/v1/messages",
        expect_uri: "/v1/messages",
        expect_auth: Some(("x-api-key", "sk-provider")),
    },
    Case {
        name: "anthropic openai-compatible",
        headers: &[("x-portkey-provider", "anthropic")],
        path: "/v1/chat/completions",
        expect_uri: "/v1/chat/completions",
        expect_auth: Some(("authorization", "Bearer sk-provider")),
    },
    Case {
        name: "azure-openai classic",
        headers: &[
            ("x-portkey-provider", "azure-openai"),
            ("x-portkey-azure-resource-name", "res"),
            ("x-portkey-azure-deployment-id", "gpt4o"),
            ("x-portkey-azure-api-version", "2024-06-01"),
        ],
        path: "/v1/chat/completions",
        expect_uri: "/openai/deployments/gpt4o/chat/completions?api-version=2024-06-01",
        expect_auth: Some(("api-key", "sk-provider")),
    },
    Case {
        name: "azure-openai classic default version",
        headers: &[
            ("x-portkey-provider", "azure-openai"),
            ("x-portkey-azure-deployment-id", "gpt4o"),
        ],
        path: "/v1/embeddings",
        expect_uri: "/openai/deployments/gpt4o/embeddings?api-version=2024-10-21",
        expect_auth: Some(("api-key", "sk-provider")),
    },
    Case {
        name: "azure-openai v1 via config",
        headers: &[(
            "x-portkey-config",
            r#"{"provider":"azure-openai","resourceName":"res","api_version":"v1"}"#,
        )],
        path: "/v1/responses",
        expect_uri: "/openai/v1/responses",
        expect_auth: Some(("api-key", "sk-provider")),
    },
    Case {
        name: "azure-ai foundry",
        headers: &[("x-portkey-provider", "azure-ai")],
        path: "/v1/chat/completions",
        expect_uri: "/models/chat/completions?api-version=2024-05-01-preview",
        expect_auth: Some(("api-key", "sk-provider")),
    },
    Case {
        name: "google",
        headers: &[("x-portkey-provider", "google")],
        path: "/v1/chat/completions",
        expect_uri: "/v1beta/openai/chat/completions",
        expect_auth: Some(("authorization", "Bearer sk-provider")),
    },
    Case {
        name: "bedrock",
        headers: &[("x-portkey-provider", "bedrock")],
        path: "/v1/chat/completions",
        expect_uri: "/openai/v1/chat/completions",
        expect_auth: Some(("authorization", "Bearer sk-provider")),
    },
    Case {
        name: "cohere",
        headers: &[("x-portkey-provider", "cohere")],
        path: "/v1/chat/completions",
        expect_uri: "/compatibility/v1/chat/completions",
        expect_auth: Some(("authorization", "Bearer sk-provider")),
    },
    Case {
        name: "mistral alias",
        headers: &[("x-portkey-provider", "mistral")],
        path: "/v1/chat/completions",
        expect_uri: "/v1/chat/completions",
        expect_auth: Some(("authorization", "Bearer sk-provider")),
    },
    Case {
        name: "together-ai",
        headers: &[("x-portkey-provider", "together-ai")],
        path: "/v1/completions",
        expect_uri: "/v1/completions",
        expect_auth: Some(("authorization", "Bearer sk-provider")),
    },
    Case {
        name: "groq",
        headers: &[("x-portkey-provider", "groq")],
        path: "/v1/chat/completions",
        expect_uri: "/openai/v1/chat/completions",
        expect_auth: Some(("authorization", "Bearer sk-provider")),
    },
    Case {
        name: "perplexity alias",
        headers: &[("x-portkey-provider", "perplexity")],
        path: "/v1/chat/completions",
        expect_uri: "/chat/completions",
        expect_auth: Some(("authorization", "Bearer sk-provider")),
    },
    Case {
        name: "ollama",
        headers: &[("x-portkey-provider", "ollama")],
        path: "/v1/chat/completions",
        expect_uri: "/v1/chat/completions",
        expect_auth: None,
    },
    Case {
        name: "deepseek",
        headers: &[("x-portkey-provider", "deepseek")],
        path: "/v1/chat/completions",
        expect_uri: "/v1/chat/completions",
        expect_auth: Some(("authorization", "Bearer sk-provider")),
    },
    Case {
        name: "fireworks-ai",
        headers: &[("x-portkey-provider", "fireworks-ai")],
        path: "/v1/chat/completions",
        expect_uri: "/inference/v1/chat/completions",
        expect_auth: Some(("authorization", "Bearer sk-provider")),
    },
    Case {
        name: "openrouter",
        headers: &[("x-portkey-provider", "openrouter")],
        path: "/v1/chat/completions",
        expect_uri: "/api/v1/chat/completions",
        expect_auth: Some(("authorization", "Bearer sk-provider")),
    },
    Case {
        name: "anyscale",
        headers: &[("x-portkey-provider", "anyscale")],
        path: "/v1/chat/completions",
        expect_uri: "/v1/chat/completions",
        expect_auth: Some(("authorization", "Bearer sk-provider")),
    },
    Case {
        name: "images",
        headers: &[("x-portkey-provider", "openai")],
        path: "/v1/images/generations",
        expect_uri: "/v1/images/generations",
        expect_auth: Some(("authorization", "Bearer sk-provider")),
    },
    Case {
        name: "audio",
        headers: &[("x-portkey-provider", "openai")],
        path: "/v1/audio/speech",
        expect_uri: "/v1/audio/speech",
        expect_auth: Some(("authorization", "Bearer sk-provider")),
    },
];

fn config(up: &str) -> String {
    let bases = [
        ("openai", "/v1"),
        ("anthropic", "/v1"),
        ("azure-openai", ""),
        ("azure-ai", ""),
        ("google", "/v1beta/openai"),
        ("bedrock", "/openai/v1"),
        ("cohere", "/compatibility/v1"),
        ("mistral-ai", "/v1"),
        ("together-ai", "/v1"),
        ("groq", "/openai/v1"),
        ("perplexity-ai", ""),
        ("ollama", "/v1"),
        ("deepseek", "/v1"),
        ("fireworks-ai", "/inference/v1"),
        ("openrouter", "/api/v1"),
        ("anyscale", "/v1"),
    ];
    bases
        .iter()
        .map(|(p, path)| format!("[providers.{p}]\nbase_url = \"{up}{path}\"\n"))
        .collect()
}

/// A body with every byte value, so any re-encoding shows.
fn body() -> Vec<u8> {
    let mut b = br#"{"model":"m","messages":[{"role":"user","content":"h\u00e9"}]}"#.to_vec();
    b.extend((0u8..=255).collect::<Vec<_>>());
    b
}

#[tokio::test(flavor = "multi_thread")]
async fn every_provider_gets_its_url_host_and_credential() {
    let up = FakeUpstream::start().await;
    let kw = Keyway::start(&config(&up.base())).await;
    let client = reqwest::Client::new();
    let body = body();
    for case in CASES {
        let mut req = client
            .post(kw.url(case.path))
            .header("x-portkey-api-key", "sk-provider")
            .header("authorization", "Bearer client-secret-placeholder")
            .header("api-key", "client-secret-azure")
            .header("x-api-key", "client-secret-anthropic")
            .header("cookie", "session=client-secret-cookie")
            .header("x-portkey-trace-id", "t-1")
            .header("x-custom", "kept")
            .header("content-type", "application/octet-stream")
            .body(body.clone());
        for (k, v) in case.headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(
            resp.status(),
            200,
            "{}: {}",
            case.name,
            resp.text().await.unwrap()
        );
        assert_eq!(
            resp.text().await.unwrap(),
            common::CHAT_RESPONSE,
            "{}",
            case.name
        );

        let got = up.only();
        assert_eq!(got.method, "POST", "{}", case.name);
        assert_eq!(got.uri, case.expect_uri, "{}", case.name);
        assert_eq!(
            got.header("host"),
            Some(format!("127.0.0.1:{}", up.port).as_str()),
            "{}",
            case.name
        );
        assert_eq!(got.body, body, "{}: body changed", case.name);
        assert_eq!(got.header("x-custom"), Some("kept"), "{}", case.name);
        assert_eq!(got.header("cookie"), None, "{}", case.name);
        match case.expect_auth {
            Some((name, value)) => {
                assert_eq!(got.header(name), Some(value), "{}", case.name);
                assert_no_client_credentials(&got, value);
            }
            None => {
                for h in ["authorization", "api-key", "x-api-key"] {
                    assert_eq!(
                        got.header(h),
                        None,
                        "{}: {h} sent to a keyless provider",
                        case.name
                    );
                }
                assert_no_client_credentials(&got, "");
            }
        }
        let version = got.header("anthropic-version");
        if case.name == "anthropic messages" {
            assert_eq!(version, Some("2023-06-01"));
        } else {
            assert_eq!(version, None, "{}", case.name);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn key_precedence_matches_portkey() {
    let up = FakeUpstream::start().await;
    let cfg = format!(
        "[providers.openai]\nbase_url = \"{}/v1\"\napi_key = \"sk-config\"\n",
        up.base()
    );
    let kw = Keyway::start(&cfg).await;
    let c = reqwest::Client::new();
    let send = |headers: Vec<(&'static str, &'static str)>| {
        let mut r = c
            .post(kw.url("/v1/chat/completions"))
            .header("x-portkey-provider", "openai")
            .body("{}");
        for (k, v) in headers {
            r = r.header(k, v);
        }
        r.send()
    };
    // The Portkey SDK: real key in x-portkey-api-key, placeholder Bearer beside it.
    send(vec![
        ("x-portkey-api-key", "sk-header"),
        ("authorization", "Bearer OPENAI_API_KEY"),
    ])
    .await
    .unwrap();
    assert_eq!(up.only().header("authorization"), Some("Bearer sk-header"));
    // The open-source gateway: the provider key as Bearer.
    send(vec![("authorization", "Bearer sk-bearer")])
        .await
        .unwrap();
    assert_eq!(up.only().header("authorization"), Some("Bearer sk-bearer"));
    // Nothing from the client: the config's key.
    send(vec![]).await.unwrap();
    assert_eq!(up.only().header("authorization"), Some("Bearer sk-config"));
    // A key inside x-portkey-config is the most specific.
    send(vec![
        (
            "x-portkey-config",
            r#"{"provider":"openai","api_key":"sk-in-config"}"#,
        ),
        ("x-portkey-api-key", "sk-header"),
    ])
    .await
    .unwrap();
    assert_eq!(
        up.only().header("authorization"),
        Some("Bearer sk-in-config")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn nested_config_targets_use_the_first_leaf() {
    let up = FakeUpstream::start().await;
    let kw = Keyway::start(&format!(
        "[providers.azure-openai]\nbase_url = \"{}\"\n",
        up.base()
    ))
    .await;
    let cfg = r#"{"strategy":{"mode":"fallback"},"targets":[{"provider":"azure-openai","resource_name":"r","api_key":"sk-first","targets":[{"deployment_id":"d1","api_version":"2025-01-01"}]},{"provider":"openai","api_key":"sk-second"}]}"#;
    let resp = reqwest::Client::new()
        .post(kw.url("/v1/chat/completions"))
        .header("x-portkey-config", cfg)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let got = up.only();
    assert_eq!(
        got.uri,
        "/openai/deployments/d1/chat/completions?api-version=2025-01-01"
    );
    assert_eq!(got.header("api-key"), Some("sk-first"));
}

#[tokio::test(flavor = "multi_thread")]
async fn trusted_custom_host_from_env_routes_to_it() {
    let up = FakeUpstream::start().await;
    let kw =
        Keyway::start_with_env("", &[("TRUSTED_CUSTOM_HOSTS", "example.invalid,127.0.0.1")]).await;
    let resp = reqwest::Client::new()
        .post(kw.url("/v1/chat/completions?x=1"))
        .header("x-portkey-provider", "openai")
        .header("x-portkey-custom-host", format!("{}/custom/v1", up.base()))
        .header("authorization", "Bearer sk-user")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let got = up.only();
    assert_eq!(got.uri, "/custom/v1/chat/completions?x=1");
    assert_eq!(got.header("authorization"), Some("Bearer sk-user"));
}
