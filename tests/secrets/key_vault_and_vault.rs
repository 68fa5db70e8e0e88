//! Azure Key Vault and HashiCorp Vault: the exact reads keyway makes and the keys the upstream gets.

use super::*;

// ---------------------------------------------------------------------------------------------
// Azure Key Vault.

#[tokio::test(flavor = "multi_thread")]
async fn a_key_vault_secret_is_the_azure_api_key() {
    let k = key_vault("azure-api-key").await;
    let value = secret("azure-openai-key-from-key-vault-1");
    k.kv.set("azure-openai-key", &value);
    let up = FakeUpstream::start().await;
    let cfg = format!(
        "{}{}{}\n[[routes]]\nname = \"azure\"\npath_prefix = \"/openai/\"\nprovider = \"azure-openai\"\nupstream = \"{}\"\ncredential = \"azure\"\n",
        azure(&k.entra),
        k.reference("azure-key", "azure-openai-key", ""),
        key_credential("azure", "azure-key"),
        up.base()
    );
    let kw = Keyway::start(&cfg).await;
    assert_eq!(
        k.kv.fetches("azure-openai-key"),
        1,
        "prefetched before /readyz"
    );

    let path = "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21";
    let a = send(&kw, path, &[("api-key", "app-own-key-ignored")], CHAT).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let got = up.only();
    assert_eq!(got.uri, path);
    assert_eq!(got.header("api-key"), Some(value.as_str()));
    assert_eq!(got.header("authorization"), None);
    assert_eq!(got.body, CHAT.as_bytes());
    assert_no_client_credentials(&got, &value);

    // The exact requests: one Entra token for the vault scope, one Key Vault read with it.
    k.assert_one_vault_token_request();
    let reads = k.kv.requests();
    assert_eq!(reads.len(), 1, "{reads:?}");
    assert_kv_read(&reads[0], &k.entra.handle, "azure-openai-key");

    // Later requests use the cached value.
    for _ in 0..5 {
        assert_eq!(send(&kw, path, &[], CHAT).await.status, 200);
    }
    assert_eq!(k.kv.fetches("azure-openai-key"), 1);
    assert_eq!(k.entra.issued(), 1);
    let m = kw.metrics().await;
    assert_eq!(fetches(&m, "azure_kv", "ok"), 1.0, "{m}");
    assert_eq!(
        metric(
            &m,
            r#"keyway_secret_fetch_duration_seconds_count{manager="azure_kv"}"#
        ),
        Some(1.0),
        "{m}"
    );
    let token = k.entra.current_token(KV_READER, VAULT_SCOPE).unwrap();
    assert_log_clean(&kw, &[&value, &k.reader_secret, &token]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pinned_key_vault_version_is_the_providers_default_key() {
    let k = key_vault("pinned").await;
    let old = secret("openai-key-pinned-version-one");
    let v1 = k.kv.set("openai-key", &old);
    k.kv.set("openai-key", &secret("openai-key-pinned-version-two"));
    let up = FakeUpstream::start().await;
    let cfg = format!(
        "{}{}\n[providers.openai]\nbase_url = \"{}/v1\"\nsecret_mappings = [{{ target_field = \"key\", secret_reference_id = \"openai-pinned\" }}]\n",
        azure(&k.entra),
        k.reference("openai-pinned", &format!("openai-key/{v1}"), ""),
        up.base()
    );
    let kw = Keyway::start(&cfg).await;
    // Portkey headers and no key: the provider's default key, from the pinned version.
    let a = send(
        &kw,
        "/v1/chat/completions",
        &[("x-portkey-provider", "openai")],
        CHAT,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let got = up.only();
    assert_eq!(got.uri, "/v1/chat/completions");
    assert_eq!(bearer(&got).as_deref(), Some(old.as_str()));
    let reads = k.kv.requests();
    assert_eq!(reads.len(), 1);
    assert_kv_read(&reads[0], &k.entra.handle, &format!("openai-key/{v1}"));
    // A client that brings its own key keeps it.
    let a = send(
        &kw,
        "/v1/chat/completions",
        &[
            ("x-portkey-provider", "openai"),
            ("authorization", "Bearer sk-client-own-key"),
        ],
        CHAT,
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(bearer(&up.only()).as_deref(), Some("sk-client-own-key"));
    assert_log_clean(&kw, &[&old, &k.reader_secret]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_entra_client_secret_comes_from_key_vault() {
    const APP: &str = "app-from-kv";
    let k = key_vault("entra-sp").await;
    let sp_secret = secret("service-principal-secret-in-key-vault");
    k.entra.add_secret(APP, &sp_secret);
    k.kv.set("sp-secret", &sp_secret);
    let handle = k.entra.handle.clone();
    let up = FakeUpstream::with(move |r| match bearer(r) {
        Some(t) if handle.current_token(APP, COGNITIVE).as_deref() == Some(t.as_str()) => {
            Reply::ok_json(common::CHAT_RESPONSE)
        }
        _ => Reply::Json {
            status: 401,
            body: r#"{"error":{"code":"401","message":"Access denied due to invalid subscription key or wrong API endpoint."}}"#.into(),
            headers: vec![],
        },
    })
    .await;
    let cfg = format!(
        "{}{}\n[credentials.sp]\ntype = \"entra\"\ntenant_id = \"{TENANT}\"\nclient_id = \"{APP}\"\nsecret_mappings = [{{ target_field = \"azure_entra_client_secret\", secret_reference_id = \"kv-sp\" }}]\n\n[[routes]]\nname = \"azure\"\npath_prefix = \"/openai/\"\nprovider = \"azure-openai\"\nupstream = \"{}\"\ncredential = \"sp\"\n",
        azure(&k.entra),
        k.reference("kv-sp", "sp-secret", ""),
        up.base()
    );
    let kw = Keyway::start(&cfg).await;
    let path = "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21";
    let a = send(&kw, path, &[], CHAT).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let token = k.entra.current_token(APP, COGNITIVE).unwrap();
    let got = up.only();
    assert_eq!(
        got.header("authorization"),
        Some(format!("Bearer {token}").as_str())
    );
    assert_eq!(got.header("api-key"), None);

    // First the vault token (KV_READER), then the cognitive-services token for APP, presenting
    // the client secret read from Key Vault.
    let reqs = k.entra.requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_vault_token_request(&reqs[0], &k.reader_secret);
    reqs[1].assert_client_secret(TENANT, APP, &sp_secret, COGNITIVE);
    let reads = k.kv.requests();
    assert_eq!(reads.len(), 1);
    assert_kv_read(&reads[0], &k.entra.handle, "sp-secret");
    let m = kw.metrics().await;
    assert_eq!(fetches(&m, "azure_kv", "ok"), 1.0, "{m}");
    assert_log_clean(&kw, &[&sp_secret, &k.reader_secret, &token]);
}

// ---------------------------------------------------------------------------------------------
// HashiCorp Vault.

#[tokio::test(flavor = "multi_thread")]
async fn vault_kv2_with_a_token_and_a_namespace() {
    let vault = FakeVault::start().await;
    let token = secret("hvs.static-token-kv2-namespace");
    vault.add_token(&token);
    vault.require_namespace("team1");
    let value = secret("sk-ant-from-vault-kv2-namespace");
    vault.set(
        "secret",
        "llm/anthropic",
        json!({"api_key": value, "org": "org-ml"}),
    );
    let up = FakeUpstream::start().await;
    let cfg = format!(
        "{}vault_namespace = \"team1\"\n{}\n[[routes]]\nname = \"anthropic\"\npath_prefix = \"/anthropic\"\nprovider = \"anthropic\"\nupstream = \"{}\"\nstrip_prefix = true\ncredential = \"anthropic\"\n",
        vault_token_reference("anthropic-vault", "llm/anthropic", &vault, &token, "secret_key = \"api_key\""),
        key_credential("anthropic", "anthropic-vault"),
        up.base()
    );
    let kw = Keyway::start(&cfg).await;
    let a = send(
        &kw,
        "/anthropic/v1/messages",
        &[
            ("x-api-key", "app-own-key-ignored"),
            ("anthropic-version", "2023-06-01"),
        ],
        r#"{"model":"claude-sonnet-4-5","max_tokens":8,"messages":[]}"#,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let got = up.only();
    assert_eq!(got.uri, "/v1/messages");
    assert_eq!(got.header("x-api-key"), Some(value.as_str()));
    assert_no_client_credentials(&got, &value);

    let reqs = vault.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_vault_read(
        &reqs[0],
        "/v1/secret/data/llm/anthropic",
        &token,
        Some("team1"),
    );
    assert_eq!(vault.denied(), 0);
    let m = kw.metrics().await;
    assert_eq!(fetches(&m, "hashicorp_vault", "ok"), 1.0, "{m}");
    assert_log_clean(&kw, &[&value, &token]);
}

#[tokio::test(flavor = "multi_thread")]
async fn vault_kv1_and_the_one_key_rule() {
    let vault = FakeVault::start().await;
    let token = secret("hvs.static-token-kv1-rule");
    vault.add_token(&token);
    vault.mount("kv", 1);
    let value = secret("sk-openai-from-vault-kv1-single");
    vault.set("kv", "openai", json!({"key": value}));
    let (a_val, b_val) = (
        secret("multi-key-value-aaaa-1"),
        secret("multi-key-value-bbbb-2"),
    );
    vault.set("kv", "multi", json!({"a": a_val, "b": b_val}));
    let up = FakeUpstream::start().await;
    let kv1 = "vault_mount = \"kv\"\nvault_kv_version = 1\n";
    let cfg = format!(
        "[secrets]\nprefetch = false\n{}{kv1}{}{kv1}{}{}{}{}",
        vault_token_reference("one-key", "openai", &vault, &token, ""),
        vault_token_reference("multi-key", "multi", &vault, &token, ""),
        key_credential("one", "one-key"),
        key_credential("multi", "multi-key"),
        openai_route("one", "one", &up),
        openai_route("multi", "multi", &up),
    );
    let kw = Keyway::start(&cfg).await;
    assert!(
        vault.requests().is_empty(),
        "prefetch = false fetches nothing at start-up"
    );

    // A map with one key: that value.
    let a = chat(&kw, "one").await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(bearer(&up.only()).as_deref(), Some(value.as_str()));
    let reqs = vault.requests();
    assert_eq!(reqs.len(), 1);
    assert_vault_read(&reqs[0], "/v1/kv/openai", &token, None);

    // Several keys and no secret_key: the reference is unusable, and says so.
    let a = chat(&kw, "multi").await;
    assert_unavailable(&a, "multi-key");
    assert!(
        !a.text.contains(&a_val) && !a.text.contains(&b_val),
        "{}",
        a.text
    );
    assert!(up.requests().is_empty());
    assert_eq!(vault.reads("kv", "multi"), 1);
    let m = kw.metrics().await;
    assert_eq!(fetches(&m, "hashicorp_vault", "malformed"), 1.0, "{m}");
    assert_log_clean(&kw, &[&value, &token, &a_val, &b_val]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_virtual_key_maps_a_vault_secret_key_in_its_workspace() {
    let vault = FakeVault::start().await;
    let token = secret("hvs.static-token-virtual-key");
    vault.add_token(&token);
    let value = secret("sk-ant-virtual-key-from-vault");
    vault.set(
        "secret",
        "team-a/anthropic",
        json!({"k": value, "other": "not-this-one"}),
    );
    let up = FakeUpstream::start().await;
    let (ka, kb) = (
        secret("kw-secrets-gateway-key-team-a"),
        secret("kw-secrets-gateway-key-team-b"),
    );
    let cfg = format!(
        "[auth]\nmode = \"enforced\"\n[workspaces.team-a]\n[workspaces.team-b]\n\n[providers.anthropic]\nbase_url = \"{}/v1\"\n\n[virtual_keys.vk-anthropic]\nworkspace = \"team-a\"\nprovider = \"anthropic\"\nsecret_mappings = [{{ target_field = \"key\", secret_reference_id = \"anthropic-vault\", secret_key = \"k\" }}]\n\n[[api_keys]]\nname = \"a\"\nhash = \"{}\"\nworkspace = \"team-a\"\n[[api_keys]]\nname = \"b\"\nhash = \"{}\"\nworkspace = \"team-b\"\n{}",
        up.base(),
        keyway::auth::keys::hash_line(&ka),
        keyway::auth::keys::hash_line(&kb),
        vault_token_reference("anthropic-vault", "team-a/anthropic", &vault, &token, ""),
    );
    let kw = Keyway::start(&cfg).await;
    let body = r#"{"model":"claude-sonnet-4-5","max_tokens":8,"messages":[]}"#;
    let a = send(
        &kw,
        "/v1/messages",
        &[
            ("x-portkey-api-key", &ka),
            ("x-portkey-virtual-key", "vk-anthropic"),
        ],
        body,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let got = up.only();
    assert_eq!(got.uri, "/v1/messages");
    assert_eq!(got.header("x-api-key"), Some(value.as_str()));
    assert_no_client_credentials(&got, &value);
    let reqs = vault.requests();
    assert_eq!(reqs.len(), 1);
    assert_vault_read(&reqs[0], "/v1/secret/data/team-a/anthropic", &token, None);
    // Team B may not use team A's virtual key.
    let a = send(
        &kw,
        "/v1/messages",
        &[
            ("x-portkey-api-key", &kb),
            ("x-portkey-virtual-key", "vk-anthropic"),
        ],
        body,
    )
    .await;
    assert_eq!(a.status, 403, "{}", a.text);
    assert!(!a.text.contains(&value));
    assert!(up.requests().is_empty());
    assert_log_clean(&kw, &[&value, &token, &ka, &kb]);
}

/// The login keyway sent: `POST /v1/auth/approle/login {"role_id","secret_id"}`, no token.
fn assert_login(r: &Recorded, role_id: &str, secret_id: &str) {
    assert_eq!(r.method, "POST");
    assert_eq!(r.uri, "/v1/auth/approle/login");
    assert_eq!(r.header("x-vault-token"), None);
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body, json!({"role_id": role_id, "secret_id": secret_id}));
}

/// An AppRole reference (role `role-llm`, 1 s TTL), optionally in a namespace.
fn approle_config(
    vault: &FakeVault,
    secret_id: &str,
    up: &FakeUpstream,
    namespace: Option<&str>,
) -> String {
    let addr = vault.addr();
    let ns = namespace.map_or(String::new(), |n| format!("vault_namespace = \"{n}\"\n"));
    format!(
        "[secrets]\nttl_seconds = 1\n{}{ns}{}{}",
        reference(
            "approle-ref",
            "hashicorp_vault",
            "llm/openai",
            "secret_key = \"api_key\"",
            &[
                ("vault_addr", &addr),
                ("vault_role_id", "role-llm"),
                ("vault_secret_id", secret_id)
            ],
        ),
        key_credential("openai", "approle-ref"),
        openai_route("ar", "openai", up)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn approle_logs_in_again_before_the_lease_ends() {
    let vault = FakeVault::start().await;
    let secret_id = secret("approle-secret-id-short-lease");
    vault.add_approle("role-llm", &secret_id, "llm");
    vault.set_lease(3);
    let value = secret("sk-openai-from-approle-lease");
    vault.set("secret", "llm/openai", json!({"api_key": value}));
    let up = FakeUpstream::start().await;
    let kw = Keyway::start(&approle_config(&vault, &secret_id, &up, None)).await;
    assert_eq!(vault.logins(), 1);

    // 7 s of traffic over 3 s leases, with the value refetched every second: keyway logs in
    // again before each lease ends, so no read is ever refused and no request fails.
    let deadline = Instant::now() + Duration::from_secs(7);
    let mut n = 0;
    while Instant::now() < deadline {
        let a = chat(&kw, "ar").await;
        assert_eq!(a.status, 200, "request {n}: {}", a.text);
        n += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        vault.logins() >= 3,
        "{} logins in 7 s of 3 s leases",
        vault.logins()
    );
    assert_eq!(vault.denied(), 0, "a read presented an expired token");
    assert_eq!(vault.failed_logins(), 0);
    let reqs = vault.requests();
    let logins: Vec<_> = reqs.iter().filter(|r| r.uri.contains("/auth/")).collect();
    assert_eq!(logins.len(), vault.logins());
    for r in &logins {
        assert_login(r, "role-llm", &secret_id);
    }
    let reads: Vec<_> = reqs.iter().filter(|r| !r.uri.contains("/auth/")).collect();
    assert!(
        reads.len() >= 4,
        "the 1 s TTL was not honoured: {} reads",
        reads.len()
    );
    assert!(
        reads.len() < n / 2,
        "{} reads for {n} requests: the cache was not used",
        reads.len()
    );
    for r in reads {
        assert_eq!(
            (r.method.as_str(), r.uri.as_str()),
            ("GET", "/v1/secret/data/llm/openai")
        );
        assert!(r
            .header("x-vault-token")
            .is_some_and(|t| t.starts_with("hvs.")));
    }
    for r in up.requests() {
        assert_eq!(bearer(&r).as_deref(), Some(value.as_str()));
    }
    assert_log_clean(&kw, &[&value, &secret_id]);
}

#[tokio::test(flavor = "multi_thread")]
async fn approle_logs_in_again_when_vault_answers_403() {
    let vault = FakeVault::start().await;
    let secret_id = secret("approle-secret-id-revoked");
    vault.add_approle("role-llm", &secret_id, "llm");
    let value = secret("sk-openai-from-approle-revoked");
    vault.set("secret", "llm/openai", json!({"api_key": value}));
    vault.require_namespace("team1");
    let up = FakeUpstream::start().await;
    let kw = Keyway::start(&approle_config(&vault, &secret_id, &up, Some("team1"))).await;
    assert_eq!(vault.logins(), 1);
    // An operator revokes the token long before its lease ends.
    vault.revoke_tokens();
    let reads_before = vault.all_reads();
    let deadline = Instant::now() + Duration::from_secs(5);
    while vault.logins() < 2 {
        assert!(
            Instant::now() < deadline,
            "no new login after Vault answered 403"
        );
        let a = chat(&kw, "ar").await;
        assert_eq!(a.status, 200, "{}", a.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(vault.denied() >= 1);
    // The read after the new login carries the new token and succeeds.
    let (kwr, vr) = (&kw, &vault);
    wait_until(
        "a read with the new token",
        Duration::from_secs(4),
        move || async move {
            chat(kwr, "ar").await;
            let reqs = vr.requests();
            let last_login = reqs.iter().rposition(|r| r.uri.contains("/auth/")).unwrap();
            reqs[last_login..].iter().any(|r| !r.uri.contains("/auth/"))
        },
    )
    .await;
    let denied = vault.denied();
    assert!(vault.all_reads() > reads_before);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(chat(&kw, "ar").await.status, 200);
    assert_eq!(
        vault.denied(),
        denied,
        "reads with the new token were refused"
    );
    assert_eq!(vault.logins(), 2, "one 403 costs one login");
    // Logins and reads all carry the namespace.
    for r in vault.requests() {
        assert_eq!(r.header("x-vault-namespace"), Some("team1"), "{}", r.uri);
        if r.uri.contains("/auth/") {
            assert_login(&r, "role-llm", &secret_id);
        }
    }
    assert_eq!(vault.failed_logins(), 0);
    assert_log_clean(&kw, &[&value, &secret_id]);
}
