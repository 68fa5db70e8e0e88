//! The secret metrics, and the fakes on their own.

use super::*;

// ---------------------------------------------------------------------------------------------
// Metrics.

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_fetches_by_manager_and_outcome() {
    let vault = FakeVault::start().await;
    let token = secret("hvs.static-token-metrics");
    vault.add_token(&token);
    let value = secret("sk-openai-metrics-value-ok");
    vault.set("secret", "m/ok", json!({"api_key": value}));
    vault.set(
        "secret",
        "m/multi",
        json!({"a": "metrics-multi-a-1", "b": "metrics-multi-b-2"}),
    );
    vault.set(
        "secret",
        "m/down",
        json!({"api_key": "sk-metrics-down-value"}),
    );
    let up = FakeUpstream::start().await;
    let k = "secret_key = \"api_key\"";
    let mut cfg = "[secrets]\nprefetch = false\nfetch_timeout_ms = 2000\n".to_owned();
    for (slug, path, tok, key) in [
        ("ok-ref", "m/ok", token.as_str(), k),
        ("missing-ref", "m/missing", token.as_str(), k),
        ("denied-ref", "m/ok", "hvs.not-a-valid-token-metrics", k),
        ("malformed-ref", "m/multi", token.as_str(), ""),
        ("down-ref", "m/down", token.as_str(), k),
    ] {
        let short = slug.trim_end_matches("-ref");
        cfg.push_str(&vault_token_reference(slug, path, &vault, tok, key));
        cfg.push_str(&key_credential(short, slug));
        cfg.push_str(&openai_route(short, short, &up));
    }
    let kw = Keyway::start(&cfg).await;
    assert_eq!(chat(&kw, "ok").await.status, 200);
    for (route, slug) in [
        ("missing", "missing-ref"),
        ("denied", "denied-ref"),
        ("malformed", "malformed-ref"),
    ] {
        assert_unavailable(&chat(&kw, route).await, slug);
    }
    for _ in 0..3 {
        assert_eq!(chat(&kw, "ok").await.status, 200);
    }
    vault.set_outage(Outage::Refused).await;
    assert_unavailable(&chat(&kw, "down").await, "down-ref");

    let m = kw.metrics().await;
    let v = "hashicorp_vault";
    assert_eq!(fetches(&m, v, "ok"), 1.0, "{m}");
    assert_eq!(fetches(&m, v, "not_found"), 1.0, "{m}");
    assert_eq!(fetches(&m, v, "rejected"), 1.0, "{m}");
    assert_eq!(fetches(&m, v, "malformed"), 1.0, "{m}");
    assert!(fetches(&m, v, "unavailable") >= 1.0, "{m}");
    for other in ["aws_sm", "azure_kv"] {
        assert_eq!(fetches(&m, other, "ok"), 0.0, "{m}");
    }
    let n = metric(
        &m,
        r#"keyway_secret_fetch_duration_seconds_count{manager="hashicorp_vault"}"#,
    )
    .unwrap_or(0.0);
    assert!(n >= 5.0, "{n} timed fetches:\n{m}");
    let hits = metric(&m, r#"keyway_secret_cache_total{result="hit"}"#).unwrap_or(0.0);
    assert!(hits >= 3.0, "{m}");
    assert!(
        metric(&m, r#"keyway_secret_cache_total{result="miss"}"#).unwrap_or(0.0) >= 1.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, r#"keyway_secret_cache_total{result="stale"}"#),
        Some(0.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            r#"keyway_secret_staleness_seconds{manager="hashicorp_vault"}"#
        ),
        Some(0.0),
        "{m}"
    );
    // Labels are manager types and outcomes only: no slug, path or value.
    for needle in [
        "ok-ref",
        "missing-ref",
        "m/ok",
        "m/missing",
        value.as_str(),
        token.as_str(),
    ] {
        assert!(!m.contains(needle), "{needle} in the metrics");
    }
    assert_eq!(vault.reads("secret", "m/missing"), 1);
    assert_log_clean(&kw, &[&value, &token]);
}
// ---------------------------------------------------------------------------------------------
// The fakes on their own: each speaks its service's wire format (checked with a plain client).

async fn entra_token(
    entra: &FakeEntra,
    tenant: &str,
    client: &str,
    secret: &str,
    scope: &str,
) -> String {
    let r = reqwest::Client::new()
        .post(format!("{}/{tenant}/oauth2/v2.0/token", entra.authority()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client),
            ("client_secret", secret),
            ("scope", scope),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["access_token"].as_str().unwrap().to_owned()
}

async fn get(url: &str, headers: &[(&str, &str)]) -> (u16, reqwest::header::HeaderMap, Value) {
    // No pooling: a fake may have cut its connections in an outage.
    let c = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut r = c.get(url);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let h = resp.headers().clone();
    let text = resp.text().await.unwrap();
    (
        status,
        h,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn fake_key_vault_speaks_the_key_vault_wire_format() {
    const T: &str = "tenant-fake-kv";
    let entra = FakeEntra::start(T).await;
    entra.add_secret("reader", "reader-secret-fake-kv");
    entra.add_secret("stranger", "stranger-secret-fake-kv");
    let kv = FakeKeyVault::start(&entra, T).await;
    kv.allow_reader("reader");
    let v1 = kv.set("db-key", "value-one");
    let base = kv.base();
    let url = format!("{base}/secrets/db-key?api-version=7.4");

    // No token: 401 with Key Vault's challenge naming the authority and the vault resource.
    let (s, h, v) = get(&url, &[]).await;
    assert_eq!(s, 401);
    assert_eq!(v["error"]["code"], "Unauthorized", "{v}");
    let www = h["www-authenticate"].to_str().unwrap();
    assert_eq!(
        www,
        format!(
            "Bearer authorization=\"{}/{T}\", resource=\"https://vault.azure.net\"",
            entra.authority()
        )
    );
    // A token for another scope, or for a client that is no reader: 401 too.
    let cognitive = entra_token(
        &entra,
        T,
        "reader",
        "reader-secret-fake-kv",
        "https://cognitiveservices.azure.com/.default",
    )
    .await;
    let stranger = entra_token(
        &entra,
        T,
        "stranger",
        "stranger-secret-fake-kv",
        VAULT_SCOPE,
    )
    .await;
    for t in [&cognitive, &stranger] {
        let auth = format!("Bearer {t}");
        let (s, h, v) = get(&url, &[("authorization", &auth)]).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (401, Some("Unauthorized"))
        );
        assert!(h.contains_key("www-authenticate"));
    }
    assert_eq!(kv.unauthorized(), 3);
    // Any vault token issued to a reader passes, not only the newest.
    let older = entra_token(&entra, T, "reader", "reader-secret-fake-kv", VAULT_SCOPE).await;
    let token = entra_token(&entra, T, "reader", "reader-secret-fake-kv", VAULT_SCOPE).await;
    assert_ne!(older, token);
    let auth = format!("Bearer {token}");
    let with = [("authorization", auth.as_str())];
    let older_auth = format!("Bearer {older}");
    assert_eq!(get(&url, &[("authorization", &older_auth)]).await.0, 200);

    // api-version missing or other: BadParameter.
    for q in ["", "?api-version=7.3", "?api-version=2016-10-01"] {
        let (s, _, v) = get(&format!("{base}/secrets/db-key{q}"), &with).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (400, Some("BadParameter")),
            "{q}"
        );
    }
    // The current version, in Key Vault's shape.
    let (s, _, v) = get(&url, &with).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["value"], "value-one");
    assert_eq!(v["id"], format!("{base}/secrets/db-key/{v1}"));
    assert_eq!(v1.len(), 32);
    assert_eq!(v["attributes"]["enabled"], true);
    assert_eq!(v["attributes"]["recoveryLevel"], "Recoverable+Purgeable");
    assert!(v["attributes"]["created"].as_u64().unwrap() > 1_600_000_000);
    assert!(v["attributes"]["updated"].is_u64());
    assert_eq!(v["tags"], json!({}));

    // Rotation: a new current version; the old one stays readable by id.
    let v2 = kv.set("db-key", "value-two");
    assert_ne!(v1, v2);
    let (_, _, v) = get(&url, &with).await;
    assert_eq!(
        (v["value"].as_str(), v["id"].as_str()),
        (
            Some("value-two"),
            Some(format!("{base}/secrets/db-key/{v2}").as_str())
        )
    );
    let (s, _, v) = get(
        &format!("{base}/secrets/db-key/{v1}?api-version=7.4"),
        &with,
    )
    .await;
    assert_eq!((s, v["value"].as_str()), (200, Some("value-one")));

    // Unknown secret or version: SecretNotFound.
    for p in ["nope", "db-key/0123456789abcdef0123456789abcdef"] {
        let (s, _, v) = get(&format!("{base}/secrets/{p}?api-version=7.4"), &with).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (404, Some("SecretNotFound")),
            "{p}"
        );
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("was not found"));
    }
    // 1 + 2 + 1 + 3 + 1 + 2 + 1 requests addressed db-key.
    assert_eq!(kv.fetches("db-key"), 11);
    assert_eq!(kv.fetches("nope"), 1);
    let r = kv.requests().pop().unwrap();
    assert_eq!(r.method, "GET");
    assert_eq!(
        r.uri,
        "/secrets/db-key/0123456789abcdef0123456789abcdef?api-version=7.4"
    );
    assert_eq!(r.header("authorization"), Some(auth.as_str()));

    // Outages: 503, then a closed port, then back on the same address.
    kv.set_outage(Outage::Unavailable).await;
    let (s, _, v) = get(&url, &with).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (503, Some("ServiceUnavailable"))
    );
    kv.set_outage(Outage::Refused).await;
    let e = reqwest::Client::new().get(&url).send().await.unwrap_err();
    assert!(e.is_connect(), "{e:?}");
    let fetches = kv.fetches("db-key");
    kv.set_outage(Outage::None).await;
    assert_eq!(get(&url, &with).await.0, 200);
    assert_eq!(
        kv.fetches("db-key"),
        fetches + 1,
        "a refused connection is no fetch"
    );

    // Delay.
    kv.set_delay(Some(Duration::from_millis(300)));
    let t = Instant::now();
    assert_eq!(get(&url, &with).await.0, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
}

#[tokio::test(flavor = "multi_thread")]
async fn fake_vault_speaks_the_vault_wire_format() {
    let vault = FakeVault::start().await;
    vault.add_token("root-token-fake-vault");
    vault.require_namespace("team1");
    vault.set(
        "secret",
        "llm/openai",
        json!({"api_key": "sk-one", "org": "org-1"}),
    );
    vault.mount("kv", 1);
    vault.set("kv", "legacy/anthropic", json!({"key": "sk-ant"}));
    let addr = vault.addr();
    let tok = [
        ("x-vault-token", "root-token-fake-vault"),
        ("x-vault-namespace", "team1"),
    ];

    // KV v2.
    let url = format!("{addr}/v1/secret/data/llm/openai");
    let (s, _, v) = get(&url, &tok).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["data"]["data"],
        json!({"api_key": "sk-one", "org": "org-1"})
    );
    let md = &v["data"]["metadata"];
    assert_eq!(
        (
            md["version"].as_u64(),
            md["destroyed"].as_bool(),
            md["deletion_time"].as_str()
        ),
        (Some(1), Some(false), Some(""))
    );
    assert!(md["created_time"].as_str().unwrap().ends_with('Z'));
    for (k, want) in [
        ("lease_id", json!("")),
        ("renewable", json!(false)),
        ("lease_duration", json!(0)),
        ("wrap_info", Value::Null),
        ("warnings", Value::Null),
        ("auth", Value::Null),
    ] {
        assert_eq!(v[k], want, "{k}");
    }
    assert_eq!(v["request_id"].as_str().unwrap().len(), 36);
    assert_eq!(
        vault.set("secret", "llm/openai", json!({"api_key": "sk-two"})),
        2
    );
    let (_, _, v) = get(&url, &tok).await;
    assert_eq!(
        (
            v["data"]["data"]["api_key"].as_str(),
            v["data"]["metadata"]["version"].as_u64()
        ),
        (Some("sk-two"), Some(2))
    );
    let (_, _, v) = get(&format!("{url}?version=1"), &tok).await;
    assert_eq!(v["data"]["data"]["api_key"], "sk-one");
    // A v2 mount read without data/: 404 with Vault's warning.
    let (s, _, v) = get(&format!("{addr}/v1/secret/llm/openai"), &tok).await;
    assert_eq!(s, 404);
    assert!(v["warnings"][0].as_str().unwrap().contains("versioned K/V"));

    // KV v1.
    let (s, _, v) = get(&format!("{addr}/v1/kv/legacy/anthropic"), &tok).await;
    assert_eq!(s, 200);
    assert_eq!(v["data"], json!({"key": "sk-ant"}));
    assert_eq!(v["lease_duration"], 2764800);

    // Missing: 404 {"errors":[]}.
    for p in ["secret/data/nope", "kv/nope"] {
        let (s, _, v) = get(&format!("{addr}/v1/{p}"), &tok).await;
        assert_eq!((s, v), (404, json!({"errors": []})), "{p}");
    }
    // Wrong token, no token, no namespace: 403 permission denied.
    for h in [
        vec![("x-vault-token", "nope"), ("x-vault-namespace", "team1")],
        vec![("x-vault-namespace", "team1")],
        vec![("x-vault-token", "root-token-fake-vault")],
        vec![
            ("x-vault-token", "root-token-fake-vault"),
            ("x-vault-namespace", "team2"),
        ],
    ] {
        let (s, _, v) = get(&url, &h).await;
        assert_eq!(
            (s, v),
            (403, json!({"errors": ["permission denied"]})),
            "{h:?}"
        );
    }
    assert_eq!(vault.denied(), 4);
    // Three reads, one without data/, four refused.
    assert_eq!(vault.reads("secret", "llm/openai"), 3 + 1 + 4);
    assert_eq!(vault.reads("kv", "legacy/anthropic"), 1);

    // AppRole: a token that lives lease_duration seconds.
    vault.add_approle("role-1", "secret-id-fake-vault", "llm-reader");
    vault.set_lease(1);
    let login = |body: Value, ns: Option<&'static str>| {
        let addr = addr.clone();
        async move {
            let mut r = reqwest::Client::new()
                .post(format!("{addr}/v1/auth/approle/login"))
                .json(&body);
            if let Some(ns) = ns {
                r = r.header("x-vault-namespace", ns);
            }
            let resp = r.send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let (s, v) = login(
        json!({"role_id": "role-1", "secret_id": "wrong"}),
        Some("team1"),
    )
    .await;
    assert_eq!(
        (s, v),
        (400, json!({"errors": ["invalid role or secret ID"]}))
    );
    let (s, _) = login(
        json!({"role_id": "role-1", "secret_id": "secret-id-fake-vault"}),
        None,
    )
    .await;
    assert_eq!(s, 400, "the role lives in the namespace");
    let (s, v) = login(json!({"secret_id": "x"}), Some("team1")).await;
    assert_eq!((s, v), (400, json!({"errors": ["missing role_id"]})));
    let (s, v) = login(
        json!({"role_id": "role-1", "secret_id": "secret-id-fake-vault"}),
        Some("team1"),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let a = &v["auth"];
    let token = a["client_token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("hvs.") && token.len() == 28, "{token}");
    assert_eq!(a["lease_duration"], 1);
    assert_eq!(a["renewable"], true);
    assert_eq!(a["policies"], json!(["default"]));
    assert_eq!(a["token_policies"], json!(["default"]));
    assert_eq!(a["metadata"], json!({"role_name": "llm-reader"}));
    assert!(a["accessor"].is_string());
    assert_eq!((vault.logins(), vault.failed_logins()), (1, 3));
    let h = [
        ("x-vault-token", token.as_str()),
        ("x-vault-namespace", "team1"),
    ];
    assert_eq!(get(&url, &h).await.0, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get(&url, &h).await.0, 403, "the lease ended");

    // Outages, and the tokens are revoked on demand.
    vault.set_outage(Outage::Unavailable).await;
    let (s, _, v) = get(&url, &tok).await;
    assert_eq!((s, v), (503, json!({"errors": ["Vault is sealed"]})));
    vault.set_outage(Outage::Refused).await;
    assert!(reqwest::Client::new()
        .get(&url)
        .send()
        .await
        .unwrap_err()
        .is_connect());
    vault.set_outage(Outage::None).await;
    assert_eq!(get(&url, &tok).await.0, 200);
    vault.revoke_tokens();
    assert_eq!(get(&url, &tok).await.0, 403);
}
