//! Workspaces, and the refetch after an upstream 401.

use super::*;

// ---------------------------------------------------------------------------------------------
// Workspaces.

fn restricted_config(vault: &FakeVault, token: &str, up: &FakeUpstream, auth: &str) -> String {
    format!(
        "{auth}[workspaces.team-a]\n[workspaces.team-b]\n{}{}{}",
        vault_token_reference(
            "team-a-only",
            "team-a/openai",
            vault,
            token,
            "secret_key = \"api_key\"\nallow_all_workspaces = false\nallowed_workspaces = [\"team-a\"]"
        ),
        key_credential("openai", "team-a-only"),
        openai_route("ta", "openai", up)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restricted_reference_is_refused_to_callers_of_other_workspaces() {
    let vault = FakeVault::start().await;
    let token = secret("hvs.static-token-restricted");
    vault.add_token(&token);
    let value = secret("sk-openai-team-a-only-value");
    vault.set("secret", "team-a/openai", json!({"api_key": value}));
    let up = FakeUpstream::start().await;
    let (ka, kb) = (
        secret("kw-secrets-restricted-key-a"),
        secret("kw-secrets-restricted-key-b"),
    );
    let keys = format!(
        "[auth]\nmode = \"enforced\"\n[[api_keys]]\nname = \"a\"\nhash = \"{}\"\nworkspace = \"team-a\"\n[[api_keys]]\nname = \"b\"\nhash = \"{}\"\nworkspace = \"team-b\"\n",
        keyway::auth::keys::hash_line(&ka),
        keyway::auth::keys::hash_line(&kb)
    );
    let kw = Keyway::start(&restricted_config(&vault, &token, &up, &keys)).await;
    let path = "/ta/v1/chat/completions";
    let b = send(&kw, path, &[("x-portkey-api-key", &kb)], CHAT).await;
    assert_eq!(b.status, 403, "{}", b.text);
    assert_eq!(
        b.json["error"]["code"], "secret_reference_forbidden",
        "{}",
        b.text
    );
    assert!(!b.text.contains(&value) && !b.text.contains(&token));
    assert!(
        up.requests().is_empty(),
        "a refused request reached the upstream"
    );
    let a = send(&kw, path, &[("x-portkey-api-key", &ka)], CHAT).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(bearer(&up.only()).as_deref(), Some(value.as_str()));
    assert_log_clean(&kw, &[&value, &token, &ka, &kb]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restricted_reference_is_refused_in_the_open_posture() {
    let vault = FakeVault::start().await;
    let token = secret("hvs.static-token-restricted-open");
    vault.add_token(&token);
    let value = secret("sk-openai-team-a-only-open");
    vault.set("secret", "team-a/openai", json!({"api_key": value}));
    let up = FakeUpstream::start().await;
    let kw = Keyway::start(&restricted_config(&vault, &token, &up, "")).await;
    let a = chat(&kw, "ta").await;
    assert_eq!(a.status, 403, "{}", a.text);
    assert_eq!(
        a.json["error"]["code"], "secret_reference_forbidden",
        "{}",
        a.text
    );
    assert!(!a.text.contains(&value));
    assert!(up.requests().is_empty());
    assert_log_clean(&kw, &[&value, &token]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_virtual_key_mapping_outside_the_references_workspaces_fails_at_start_up() {
    let vault = FakeVault::start().await;
    let token = secret("hvs.static-token-vk-outside");
    vault.add_token(&token);
    let cfg = format!(
        "[auth]\nmode = \"enforced\"\n[workspaces.team-a]\n[workspaces.team-b]\n[[api_keys]]\nname = \"b\"\nhash = \"{}\"\nworkspace = \"team-b\"\n\n[virtual_keys.vk-b]\nworkspace = \"team-b\"\nprovider = \"openai\"\nsecret_mappings = [{{ target_field = \"key\", secret_reference_id = \"team-a-only\" }}]\n{}",
        keyway::auth::keys::hash_line("kw-secrets-vk-outside-key-b"),
        vault_token_reference(
            "team-a-only",
            "team-a/openai",
            &vault,
            &token,
            "allowed_workspaces = [\"team-a\"]"
        ),
    );
    let err = config_error(&cfg, &[&token]);
    for needle in ["virtual_keys.vk-b", "team-a-only", "team-b"] {
        assert!(err.contains(needle), "{needle} missing in:\n{err}");
    }
    // The server refuses to start, before reading any secret.
    let path = log_dir().join(format!("secrets-vk-outside-{}.toml", free_port()));
    std::fs::write(&path, &cfg).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_keyway"))
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--metrics-listen", &format!("127.0.0.1:{}", free_port())])
        .arg("--config")
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("keyway started with a virtual key outside its reference's workspaces");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    assert!(vault.requests().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Upstream 401 after a rotation.

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_401_refetches_the_secret_once_and_retries_with_the_new_key() {
    let vault = FakeVault::start().await;
    let token = secret("hvs.static-token-401-rotation");
    vault.add_token(&token);
    let (old, new) = (
        secret("sk-openai-rotated-away-old"),
        secret("sk-openai-rotated-in-new"),
    );
    vault.set("secret", "llm/openai", json!({"api_key": old}));
    let accepted = Arc::new(Mutex::new(old.clone()));
    let up = strict_upstream(accepted.clone()).await;
    let cfg = format!(
        "{}{}{}",
        vault_token_reference(
            "rotating",
            "llm/openai",
            &vault,
            &token,
            "secret_key = \"api_key\""
        ),
        key_credential("openai", "rotating"),
        openai_route("rot", "openai", &up)
    );
    let kw = Keyway::start(&cfg).await;
    assert_eq!(chat(&kw, "rot").await.status, 200);
    assert_eq!(bearer(&up.only()).as_deref(), Some(old.as_str()));
    let reads = vault.all_reads();

    // The key is rotated in Vault and at the provider; keyway's cache (TTL 300 s) still holds
    // the old one.
    vault.set("secret", "llm/openai", json!({"api_key": new}));
    *accepted.lock().unwrap() = new.clone();
    let body = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"after rotation"}]}"#;
    let a = send(&kw, "/rot/v1/chat/completions", &[], body).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let seen = up.requests();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(bearer(&seen[0]).as_deref(), Some(old.as_str()));
    assert_eq!(bearer(&seen[1]).as_deref(), Some(new.as_str()));
    assert_eq!(seen[0].body, body.as_bytes());
    assert_eq!(
        seen[1].body,
        body.as_bytes(),
        "the retry must carry the same body"
    );
    assert_eq!(seen[0].uri, seen[1].uri);
    assert_eq!(vault.all_reads(), reads + 1, "exactly one refetch");
    let r = &vault.requests()[reads];
    assert_vault_read(r, "/v1/secret/data/llm/openai", &token, None);
    // The new key is cached now.
    assert_eq!(chat(&kw, "rot").await.status, 200);
    assert_eq!(
        bearer(up.requests().last().unwrap()).as_deref(),
        Some(new.as_str())
    );
    assert_eq!(vault.all_reads(), reads + 1);

    // A key the provider refuses even after a refetch: the 401 reaches the client after at most
    // one retry and one refetch; no loop.
    *accepted.lock().unwrap() = "sk-nobody-has-this-key".into();
    let before = up.requests().len();
    let a = send(&kw, "/rot/v1/chat/completions", &[], CHAT).await;
    assert_eq!(a.status, 401, "{}", a.text);
    let tries = up.requests().len() - before;
    assert!((1..=2).contains(&tries), "{tries} upstream attempts");
    assert_eq!(
        vault.all_reads(),
        reads + 2,
        "one refetch per 401, not more"
    );
    assert_log_clean(&kw, &[&old, &new, &token]);
}
