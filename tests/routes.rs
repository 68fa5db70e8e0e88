//! Front-door routes (the APIM use): apps that do not know they are behind a gateway call
//! keyway with their provider's own paths; the route's credential replaces whatever they sent.

mod common;

use common::{assert_failure, assert_no_client_credentials, FakeUpstream, Keyway};

fn config(azure: &str, anthropic: &str) -> String {
    format!(
        r#"
[credentials.azure-prod]
type = "api_key"
key_env = "KW_TEST_AZURE_KEY"

[credentials.anthropic]
type = "api_key"
key = "sk-ant-route"

[[routes]]
name = "azure-internal"
path_prefix = "/openai/"
host = "ai.internal.example"
provider = "azure-openai"
upstream = "{azure}"
credential = "azure-prod"

[[routes]]
name = "azure"
path_prefix = "/openai/"
provider = "azure-openai"
upstream = "{azure}"
credential = "azure-prod"

[[routes]]
name = "anthropic"
path_prefix = "/anthropic"
provider = "anthropic"
upstream = "{anthropic}"
strip_prefix = true
credential = "anthropic"
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn routes_keep_the_path_and_swap_the_credential() {
    let azure = FakeUpstream::start().await;
    let anthropic = FakeUpstream::start().await;
    let kw = Keyway::start_with_env(
        &config(&azure.base(), &anthropic.base()),
        &[("KW_TEST_AZURE_KEY", "azure-route-key")],
    )
    .await;
    let c = reqwest::Client::new();

    // The AzureOpenAI SDK's request shape, with the app's own (now useless) key.
    let body = r#"{"messages":[{"role":"user","content":"hi"}]}"#;
    let resp = c
        .post(kw.url("/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"))
        .header("api-key", "client-secret-app-key")
        .header("x-portkey-provider", "openai")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let got = azure.only();
    assert_eq!(
        got.uri,
        "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(got.header("api-key"), Some("azure-route-key"));
    assert_eq!(
        got.header("host"),
        Some(format!("127.0.0.1:{}", azure.port).as_str())
    );
    assert_eq!(got.body, body.as_bytes());
    assert_no_client_credentials(&got, "azure-route-key");

    // Anthropic's SDK shape under a prefix that is stripped.
    let resp = c
        .post(kw.url("/anthropic/v1/messages?beta=true"))
        .header("x-api-key", "client-secret-ant")
        .header("anthropic-version", "2023-01-01")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let got = anthropic.only();
    assert_eq!(got.uri, "/v1/messages?beta=true");
    assert_eq!(got.header("x-api-key"), Some("sk-ant-route"));
    assert_eq!(
        got.header("anthropic-version"),
        Some("2023-01-01"),
        "the client's version is kept"
    );
    assert_no_client_credentials(&got, "sk-ant-route");

    // A prefix match is per path segment.
    let resp = c
        .post(kw.url("/anthropicx/v1/messages"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_failure(resp, 404, "no route").await;
    assert!(anthropic.requests().is_empty());

    // The host-matched route is chosen (and counted) when the Host matches.
    let resp = c
        .post(kw.url("/openai/deployments/d/embeddings?api-version=2024-10-21"))
        .header("host", "AI.internal.example:443")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(azure.only().header("api-key"), Some("azure-route-key"));
    let m = kw.metrics().await;
    assert!(m.contains(r#"keyway_requests_total{provider="azure-openai",route="azure-internal",status_class="2xx"} 1"#), "{m}");
    assert!(
        m.contains(
            r#"keyway_requests_total{provider="azure-openai",route="azure",status_class="2xx"} 1"#
        ),
        "{m}"
    );
    assert!(
        m.contains(
            r#"keyway_requests_total{provider="anthropic",route="anthropic",status_class="2xx"} 1"#
        ),
        "{m}"
    );
    assert!(
        m.contains(r#"keyway_requests_total{provider="none",route="none",status_class="4xx"} 1"#),
        "{m}"
    );
    assert!(m.contains("keyway_requests_in_flight 0"), "{m}");
}
