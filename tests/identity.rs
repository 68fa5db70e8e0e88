//! Azure identity through a real keyway: tokens fetched once (single flight), renewed before
//! expiry while requests flow, kept through an Entra outage, replaced after an upstream 401,
//! and every failure a clear JSON error without secrets. The fakes check requests the way the
//! real services do and record them; the Azure upstream accepts only Entra's current token.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::identity::{EntraHandle, FakeAppService, FakeEntra, FakeImds, IMDS_PATH};
use common::{assert_failure, free_port, secret, FakeUpstream, Keyway, Recorded, Reply};

const TENANT: &str = "tenant-1";
const CLIENT: &str = "app-1";
const COGNITIVE: &str = "https://cognitiveservices.azure.com/.default";

fn bearer(r: &Recorded) -> Option<String> {
    r.header("authorization")?
        .strip_prefix("Bearer ")
        .map(str::to_owned)
}

/// An Azure OpenAI upstream that accepts only the token Entra issued last.
async fn azure_upstream(entra: EntraHandle) -> FakeUpstream {
    FakeUpstream::with(move |r| match bearer(r) {
        Some(t) if entra.is_current(&t) => Reply::ok_json(common::CHAT_RESPONSE),
        _ => Reply::Json { status: 401, body: r#"{"error":{"code":"401","message":"Access denied due to invalid subscription key or wrong API endpoint."}}"#.into(), headers: vec![] },
    })
    .await
}

fn route_config(entra: &FakeEntra, up: &FakeUpstream, secret_value: &str) -> String {
    format!(
        "[azure]\nauthority_host = \"{}\"\n[credentials.sp]\ntype = \"entra\"\ntenant_id = \"{TENANT}\"\nclient_id = \"{CLIENT}\"\nclient_secret = \"{secret_value}\"\n[[routes]]\nname = \"azure\"\npath_prefix = \"/openai/\"\nprovider = \"azure-openai\"\nupstream = \"{}\"\ncredential = \"sp\"\n",
        entra.authority(),
        up.base()
    )
}

async fn chat(c: &reqwest::Client, kw: &Keyway) -> reqwest::Response {
    c.post(kw.url("/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"))
        .header("api-key", "client-secret-app")
        .body(r#"{"messages":[]}"#)
        .send()
        .await
        .unwrap()
}

fn header_entra(secret_value: &str) -> Vec<(&'static str, String)> {
    vec![
        ("x-portkey-provider", "azure-openai".into()),
        ("x-portkey-azure-resource-name", "res".into()),
        ("x-portkey-azure-deployment-id", "gpt-4o".into()),
        ("x-portkey-azure-auth-mode", "entra".into()),
        ("x-portkey-azure-entra-tenant-id", TENANT.into()),
        ("x-portkey-azure-entra-client-id", CLIENT.into()),
        ("x-portkey-azure-entra-client-secret", secret_value.into()),
    ]
}

fn portkey_config(entra: &FakeEntra, up: &FakeUpstream) -> String {
    format!(
        "[azure]\nauthority_host = \"{}\"\n[providers.azure-openai]\nbase_url = \"{}\"\n",
        entra.authority(),
        up.base()
    )
}

async fn send(
    c: &reqwest::Client,
    kw: &Keyway,
    headers: &[(&'static str, String)],
) -> reqwest::Response {
    let mut r = c.post(kw.url("/v1/chat/completions")).body("{}");
    for (k, v) in headers {
        r = r.header(*k, v);
    }
    r.send().await.unwrap()
}

fn assert_log_clean(kw: &Keyway, secrets: &[&str]) {
    let log = kw.log_text();
    for s in secrets {
        assert!(!log.contains(s), "a secret reached keyway's log");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn entra_from_headers_fetches_once_and_sends_the_exact_request() {
    let entra = FakeEntra::start(TENANT).await;
    let s = secret("client-secret-entra-hdr");
    entra.add_secret(CLIENT, &s);
    let up = azure_upstream(entra.handle.clone()).await;
    let kw = Keyway::start(&portkey_config(&entra, &up)).await;
    let c = reqwest::Client::new();

    // N concurrent first uses of one credential: exactly one token fetch.
    let headers = header_entra(&s);
    let all = futures_util::future::join_all((0..20).map(|_| send(&c, &kw, &headers))).await;
    for r in all {
        assert_eq!(r.status(), 200);
    }
    assert_eq!(
        entra.issued(),
        1,
        "concurrent first requests must share one fetch"
    );
    let reqs = entra.requests();
    assert_eq!(reqs.len(), 1);
    reqs[0].assert_client_secret("tenant-1", CLIENT, &s, COGNITIVE);

    let token = entra.current_token(CLIENT, COGNITIVE).unwrap();
    for r in up.requests() {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {token}").as_str())
        );
        assert_eq!(
            r.uri,
            "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
        );
        assert!(r
            .headers
            .keys()
            .all(|k| !k.as_str().starts_with("x-portkey-")));
    }
    // Later requests read the cached token.
    assert_eq!(send(&c, &kw, &headers).await.status(), 200);
    assert_eq!(entra.issued(), 1);
    let m = kw.metrics().await;
    assert!(
        m.contains(r#"keyway_token_fetches_total{mode="entra",outcome="ok"} 1"#),
        "{m}"
    );
    assert_log_clean(&kw, &[&s, &token]);
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_renewed_before_expiry_with_zero_failed_requests() {
    let entra = FakeEntra::start(TENANT).await;
    let s = secret("client-secret-entra-renew");
    entra.add_secret(CLIENT, &s);
    entra.set_expires_in(3);
    let up = azure_upstream(entra.handle.clone()).await;
    let kw = Keyway::start(&route_config(&entra, &up, &s)).await;
    assert_eq!(
        entra.issued(),
        1,
        "a configured credential is fetched before /readyz"
    );
    let c = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut n = 0;
    while Instant::now() < deadline {
        let r = chat(&c, &kw).await;
        assert_eq!(r.status(), 200, "request {n} failed during renewal");
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // 3 s tokens renewed at ~75%: about 2.25 s apart over 8 s.
    assert!(
        entra.issued() >= 3,
        "only {} token fetches in 8 s of 3 s tokens",
        entra.issued()
    );
    let m = kw.metrics().await;
    assert!(
        m.contains(r#"keyway_token_expiry_seconds{credential="sp"}"#),
        "{m}"
    );
    assert_log_clean(&kw, &[&s]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_entra_outage_costs_no_request_while_the_token_is_valid() {
    let entra = FakeEntra::start(TENANT).await;
    let s = secret("client-secret-entra-outage");
    entra.add_secret(CLIENT, &s);
    entra.set_expires_in(8);
    let up = azure_upstream(entra.handle.clone()).await;
    let kw = Keyway::start(&route_config(&entra, &up, &s)).await;
    entra.set_outage(true);
    let c = reqwest::Client::new();
    // Renewal is due at ~6 s and fails; the token lives until 8 s.
    let deadline = Instant::now() + Duration::from_millis(7200);
    while Instant::now() < deadline {
        assert_eq!(chat(&c, &kw).await.status(), 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(entra.issued(), 1);
    assert!(
        entra.requests().len() >= 2,
        "the refresher did not try during the outage"
    );
    let m = kw.metrics().await;
    assert!(
        m.contains(r#"keyway_token_fetches_total{mode="entra",outcome="unavailable"}"#),
        "{m}"
    );
    let failures = m
        .lines()
        .find(|l| l.starts_with(r#"keyway_token_refresh_failures_total{mode="entra"}"#))
        .unwrap();
    assert_ne!(failures.rsplit(' ').next(), Some("0"), "{failures}");
    entra.set_outage(false);
    let deadline = Instant::now() + Duration::from_secs(5);
    while entra.issued() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(entra.issued(), 2, "no renewal after the outage ended");
    assert_eq!(chat(&c, &kw).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_401_drops_the_token_and_retries_once_with_a_fresh_one() {
    let entra = FakeEntra::start(TENANT).await;
    let s = secret("client-secret-entra-401");
    entra.add_secret(CLIENT, &s);
    let handle = entra.handle.clone();
    // The first token is "revoked" upstream.
    let up = FakeUpstream::with(move |r| match bearer(r).as_deref() {
        Some("entra-tok-1") | None => Reply::Json {
            status: 401,
            body: "{}".into(),
            headers: vec![],
        },
        Some(t) if handle.is_current(t) => Reply::ok_json(common::CHAT_RESPONSE),
        Some(_) => Reply::Json {
            status: 401,
            body: "{}".into(),
            headers: vec![],
        },
    })
    .await;
    let kw = Keyway::start(&route_config(&entra, &up, &s)).await;
    let c = reqwest::Client::new();
    let r = chat(&c, &kw).await;
    assert_eq!(r.status(), 200);
    assert_eq!(entra.issued(), 2);
    let seen: Vec<_> = up
        .requests()
        .iter()
        .map(|r| (bearer(r), r.body.clone()))
        .collect();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].0.as_deref(), Some("entra-tok-1"));
    assert_eq!(seen[1].0.as_deref(), Some("entra-tok-2"));
    assert_eq!(seen[0].1, seen[1].1, "the retry must carry the same body");
    assert!(kw
        .metrics()
        .await
        .contains("keyway_upstream_401_retries_total 1"));

    // A body too large to hold for a replay: the 401 passes through, the next request renews.
    let big = vec![b'x'; 200 * 1024];
    let up_count = up.requests().len();
    let entra2 = entra.handle.clone();
    let _ = entra2; // the same fake keeps issuing
    let r = c
        .post(kw.url("/openai/deployments/gpt-4o/embeddings?api-version=2024-10-21"))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "tok-2 is current, so this one passes");
    assert_eq!(up.requests().len(), up_count + 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn rejected_credentials_give_clear_errors_without_secrets() {
    let entra = FakeEntra::start(TENANT).await;
    entra.add_secret(CLIENT, "client-secret-entra-right");
    let up = azure_upstream(entra.handle.clone()).await;
    let kw = Keyway::start(&portkey_config(&entra, &up)).await;
    let c = reqwest::Client::new();
    let wrong = secret("client-secret-entra-wrong");
    let r = send(&c, &kw, &header_entra(&wrong)).await;
    let body_check = r.headers().get("content-type").cloned();
    assert_eq!(body_check.unwrap(), "application/json");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert_eq!(status, 401, "{text}");
    for needle in ["entra", "invalid_client", "AADSTS7000215"] {
        assert!(text.contains(needle), "{needle} missing in {text}");
    }
    assert!(
        !text.contains(&wrong) && !text.contains("client_secret="),
        "{text}"
    );
    assert!(up.requests().is_empty());

    // Missing fields are a 400 naming the header, before any fetch.
    let mut h = header_entra(&wrong);
    h.retain(|(k, _)| *k != "x-portkey-azure-entra-tenant-id");
    assert_failure(
        send(&c, &kw, &h).await,
        400,
        "x-portkey-azure-entra-tenant-id",
    )
    .await;
    assert_eq!(entra.requests().len(), 1);

    // A configured credential Entra rejects: never ready, requests get a 502 naming the mode.
    let bad = Keyway::start_opts(&route_config(&entra, &up, &wrong), &[], "/healthz").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ready = reqwest::get(format!("http://127.0.0.1:{}/readyz", bad.metrics_port))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    assert_failure(chat(&c, &bad).await, 502, "invalid_client").await;
    assert!(up.requests().is_empty());
    assert_log_clean(&kw, &[&wrong]);
    assert_log_clean(&bad, &[&wrong]);
}

#[tokio::test(flavor = "multi_thread")]
async fn managed_identity_from_imds_and_app_service() {
    let imds = FakeImds::start(&["user-assigned-1"]).await;
    let up = FakeUpstream::with(|r| match bearer(r) {
        Some(t) if t.starts_with("imds-tok-") || t.starts_with("appsvc-tok-") => {
            Reply::ok_json(common::CHAT_RESPONSE)
        }
        _ => Reply::Json {
            status: 401,
            body: "{}".into(),
            headers: vec![],
        },
    })
    .await;
    let cfg = format!(
        "[azure]\nimds_endpoint = \"{}\"\n[providers.azure-openai]\nbase_url = \"{}\"\n",
        imds.endpoint(),
        up.base()
    );
    let kw = Keyway::start(&cfg).await;
    let c = reqwest::Client::new();
    let managed = |client: Option<&str>| {
        let mut h = vec![
            ("x-portkey-provider", "azure-openai".to_owned()),
            ("x-portkey-azure-resource-name", "res".into()),
            ("x-portkey-azure-deployment-id", "d".into()),
            ("x-portkey-azure-auth-mode", "managed".into()),
        ];
        if let Some(id) = client {
            h.push(("x-portkey-azure-managed-client-id", id.into()));
        }
        h
    };
    assert_eq!(send(&c, &kw, &managed(None)).await.status(), 200);
    assert_eq!(
        send(&c, &kw, &managed(Some("user-assigned-1")))
            .await
            .status(),
        200
    );
    let got = imds.server.requests();
    assert_eq!(got.len(), 2);
    for (r, client) in got.iter().zip([None, Some("user-assigned-1")]) {
        assert_eq!(r.method, "GET");
        assert_eq!(r.header("metadata"), Some("true"));
        let q = common::identity::Params::query(&r.uri);
        assert_eq!(common::identity::path_of(&r.uri), IMDS_PATH);
        assert_eq!(q.get("api-version"), Some("2018-02-01"));
        assert_eq!(
            q.get("resource"),
            Some("https://cognitiveservices.azure.com/")
        );
        assert_eq!(q.get("client_id"), client);
    }
    // An unknown user-assigned identity is IMDS's 400, reported with the mode.
    assert_failure(send(&c, &kw, &managed(Some("nope"))).await, 401, "managed").await;

    // App Service / Container Apps: IDENTITY_ENDPOINT + IDENTITY_HEADER win over IMDS.
    let header_secret = secret("identity-header-secret-1");
    let app = FakeAppService::start("/msi/token", &header_secret).await;
    let kw2 = Keyway::start_with_env(
        &cfg,
        &[
            ("IDENTITY_ENDPOINT", &app.endpoint()),
            ("IDENTITY_HEADER", &header_secret),
        ],
    )
    .await;
    assert_eq!(send(&c, &kw2, &managed(None)).await.status(), 200);
    let r = app.server.only();
    assert_eq!(r.header("x-identity-header"), Some(header_secret.as_str()));
    let q = common::identity::Params::query(&r.uri);
    assert_eq!(q.get("api-version"), Some("2019-08-01"));
    assert_eq!(
        q.get("resource"),
        Some("https://cognitiveservices.azure.com/")
    );
    assert_eq!(
        imds.server.requests().len(),
        3,
        "IMDS must not be asked when App Service is configured"
    );
    assert_log_clean(&kw2, &[&header_secret]);
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_imds_fails_fast() {
    let up = FakeUpstream::start().await;
    let cfg = format!(
        "[azure]\nimds_endpoint = \"http://127.0.0.1:{}\"\n[providers.azure-openai]\nbase_url = \"{}\"\n",
        free_port(),
        up.base()
    );
    let kw = Keyway::start(&cfg).await;
    let started = Instant::now();
    let r = reqwest::Client::new()
        .post(kw.url("/v1/chat/completions"))
        .header("x-portkey-provider", "azure-openai")
        .header("x-portkey-azure-resource-name", "r")
        .header("x-portkey-azure-deployment-id", "d")
        .header("x-portkey-azure-auth-mode", "managed")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_failure(r, 502, "managed").await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert!(up.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn workload_identity_rereads_the_token_file_and_serves_several_clients() {
    let entra = FakeEntra::start(TENANT).await;
    let dir = common::log_dir().join(format!("wi-{}", free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("token");
    let first = secret("sa-token-projected-1");
    std::fs::write(&file, &first).unwrap();
    let accepted = Arc::new(std::sync::Mutex::new(vec![first.clone()]));
    for client in ["wi-a", "wi-b"] {
        let ok = accepted.clone();
        entra.add_assertion(client, move |a| ok.lock().unwrap().iter().any(|x| x == a));
    }
    entra.set_expires_in(3);
    let handle = entra.handle.clone();
    let up = azure_upstream(handle).await;
    let cfg = format!("[providers.azure-openai]\nbase_url = \"{}\"\n", up.base());
    // The webhook's variables, with its trailing '/' on the authority.
    let authority = format!("{}/", entra.authority());
    let env = [
        ("AZURE_AUTHORITY_HOST", authority.as_str()),
        ("AZURE_TENANT_ID", TENANT),
        ("AZURE_CLIENT_ID", "wi-a"),
        ("AZURE_FEDERATED_TOKEN_FILE", file.to_str().unwrap()),
    ];
    let kw = Keyway::start_with_env(&cfg, &env).await;
    let c = reqwest::Client::new();
    let wl = |client: Option<&str>| {
        let mut h = vec![
            ("x-portkey-provider", "azure-openai".to_owned()),
            ("x-portkey-azure-resource-name", "res".into()),
            ("x-portkey-azure-deployment-id", "d".into()),
            ("x-portkey-azure-auth-mode", "workload".into()),
        ];
        if let Some(id) = client {
            h.push(("x-portkey-azure-workload-client-id", id.into()));
        }
        h
    };
    assert_eq!(send(&c, &kw, &wl(None)).await.status(), 200);
    assert_eq!(send(&c, &kw, &wl(Some("wi-b"))).await.status(), 200);
    let reqs = entra.requests();
    assert_eq!(reqs.len(), 2);
    let clients: Vec<_> = reqs
        .iter()
        .map(|r| r.form.get("client_id").unwrap().to_owned())
        .collect();
    assert_eq!(clients, ["wi-a", "wi-b"]);
    for r in &reqs {
        assert_eq!(
            r.path, "/tenant-1/oauth2/v2.0/token",
            "no '//' from the trailing slash"
        );
        assert_eq!(r.form.get("client_assertion"), Some(first.as_str()));
        assert_eq!(
            r.form.get("client_assertion_type"),
            Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        );
        assert_eq!(r.form.get("client_secret"), None);
    }
    // The kubelet rotates the file: the next refresh presents the new token.
    let second = secret("sa-token-projected-2");
    accepted.lock().unwrap().push(second.clone());
    std::fs::write(&file, &second).unwrap();
    let deadline = Instant::now() + Duration::from_secs(6);
    while Instant::now() < deadline
        && !entra
            .requests()
            .iter()
            .any(|r| r.form.get("client_assertion") == Some(second.as_str()))
    {
        assert_eq!(send(&c, &kw, &wl(None)).await.status(), 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        entra
            .requests()
            .iter()
            .any(|r| r.form.get("client_assertion") == Some(second.as_str())),
        "the rotated token file was not picked up"
    );
    assert_log_clean(&kw, &[&first, &second]);
}
