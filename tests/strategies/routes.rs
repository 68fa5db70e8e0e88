//! Front-door routes with targets (the API Management "backend pool"): the same fallback, each
//! target with its own upstream and credential, every target given the same path.

use super::common::{assert_no_client_credentials, secret, FakeUpstream, Keyway, Reply};
use super::{expect_metric, ERR_503, OK_B};

#[tokio::test(flavor = "multi_thread")]
async fn a_route_falls_back_across_its_targets() {
    let (east, oai) = (
        secret("az-strat-route-east"),
        secret("sk-strat-route-openai"),
    );
    let a = FakeUpstream::with(|_| Reply::status(503, ERR_503)).await;
    let b = FakeUpstream::with(|_| Reply::ok_json(OK_B)).await;
    let cfg = format!(
        r#"
[upstream]
retry_backoff_ms = 10

[credentials.azure-east]
type = "api_key"
key = "{east}"

[credentials.openai]
type = "api_key"
key = "{oai}"

[[routes]]
name = "chat"
path_prefix = "/openai/"
provider = "azure-openai"
strategy = {{ mode = "fallback" }}

[[routes.targets]]
upstream = "{}"
credential = "azure-east"

[[routes.targets]]
provider = "openai"
upstream = "{}"
credential = "openai"
"#,
        a.base(),
        b.base()
    );
    let kw = Keyway::start(&cfg).await;
    let path = "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21";
    let body = r#"{"messages":[{"role":"user","content":"hi"}]}"#;
    let resp = reqwest::Client::new()
        .post(kw.url(path))
        .header("api-key", "client-secret-app-key")
        .body(body)
        .timeout(std::time::Duration::from_secs(15))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), OK_B);

    let ra = a.only();
    assert_eq!(ra.uri, path);
    assert_eq!(ra.header("api-key"), Some(east.as_str()));
    assert_eq!(ra.header("authorization"), None);
    assert_eq!(
        ra.header("host"),
        Some(format!("127.0.0.1:{}", a.port).as_str())
    );
    assert_no_client_credentials(&ra, &east);
    assert_eq!(ra.body, body.as_bytes());

    let rb = b.only();
    assert!(ra.at <= rb.at);
    assert_eq!(rb.uri, path, "every target gets the same path");
    let bearer = format!("Bearer {oai}");
    assert_eq!(rb.header("authorization"), Some(bearer.as_str()));
    assert_eq!(rb.header("api-key"), None, "target 0's credential leaked");
    assert_eq!(
        rb.header("host"),
        Some(format!("127.0.0.1:{}", b.port).as_str())
    );
    assert_no_client_credentials(&rb, &bearer);
    assert_eq!(rb.body, body.as_bytes());

    expect_metric(&kw, "keyway_fallbacks_total", &[("route", "chat")], 1.0).await;
}
