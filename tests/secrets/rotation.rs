//! Rotation without a failed request (issue 9): an Entra client secret mapped from a secret
//! manager is rotated while requests run; Key Vault refuses a revoked reader token.

use super::*;

/// Requests that keep needing a token: Entra tokens live 2 s (renewed at ~1.5 s), so one is
/// fetched with the rotated-away secret while traffic flows.
#[tokio::test(flavor = "multi_thread")]
async fn rotating_a_mapped_entra_client_secret_fails_no_request() {
    const APP: &str = "app-rotating";
    let entra = FakeEntra::start(TENANT).await;
    entra.set_expires_in(2);
    let (old, new) = (
        secret("entra-client-secret-before-rotation"),
        secret("entra-client-secret-after-rotation"),
    );
    entra.add_secret(APP, &old);
    let vault = FakeVault::start().await;
    let vault_token = secret("hvs.rotation-reader-token");
    vault.add_token(&vault_token);
    vault.set("secret", "apps/sp", json!({"client_secret": old}));
    let handle = entra.handle.clone();
    let up = FakeUpstream::with(move |r| match bearer(r) {
        // Any token Entra issued and has not revoked: requests in flight may still carry the
        // previous one.
        Some(t) if t.starts_with("entra-tok-") && !handle.is_revoked(&t) => {
            Reply::ok_json(common::CHAT_RESPONSE)
        }
        _ => Reply::Json {
            status: 401,
            body: r#"{"error":{"code":"401","message":"Access denied"}}"#.into(),
            headers: vec![],
        },
    })
    .await;
    let cfg = format!(
        "{}{}\n[credentials.sp]\ntype = \"entra\"\ntenant_id = \"{TENANT}\"\nclient_id = \"{APP}\"\nsecret_mappings = [{{ target_field = \"azure_entra_client_secret\", secret_reference_id = \"sp-secret\" }}]\n\n[[routes]]\nname = \"azure\"\npath_prefix = \"/openai/\"\nprovider = \"azure-openai\"\nupstream = \"{}\"\ncredential = \"sp\"\n",
        azure(&entra),
        vault_token_reference(
            "sp-secret",
            "apps/sp",
            &vault,
            &vault_token,
            "secret_key = \"client_secret\""
        ),
        up.base()
    );
    let kw = Arc::new(Keyway::start(&cfg).await);
    assert_eq!(vault.reads("secret", "apps/sp"), 1, "prefetched once");
    let path = "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21";

    // Four clients, each in a bounded loop for five seconds (about three token renewals).
    let until = Instant::now() + Duration::from_secs(5);
    let mut workers = Vec::new();
    for _ in 0..4 {
        let kw = kw.clone();
        workers.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            while Instant::now() < until {
                statuses.push(send(&kw, path, &[], CHAT).await.status);
            }
            statuses
        }));
    }
    // Rotate before the first renewal: the manager holds the new secret, Entra accepts only it.
    tokio::time::sleep(Duration::from_millis(400)).await;
    vault.set("secret", "apps/sp", json!({"client_secret": new}));
    entra.add_secret(APP, &new);

    let mut statuses = Vec::new();
    for w in workers {
        statuses.extend(w.await.unwrap());
    }
    let failed: Vec<_> = statuses.iter().filter(|s| **s != 200).collect();
    assert!(statuses.len() > 40, "too few requests: {}", statuses.len());
    assert!(
        failed.is_empty(),
        "{} of {} failed: {failed:?}",
        failed.len(),
        statuses.len()
    );

    // Exactly one refetch of the secret: the refusal of the old one.
    assert_eq!(vault.reads("secret", "apps/sp"), 2);
    let refused = entra
        .requests()
        .iter()
        .filter(|r| r.form.get("client_secret") == Some(old.as_str()))
        .count();
    let renewals_with_new = entra
        .requests()
        .iter()
        .filter(|r| r.form.get("client_secret") == Some(new.as_str()))
        .count();
    assert!(
        refused >= 2,
        "the start-up fetch and one refused renewal used the old secret"
    );
    assert!(
        renewals_with_new >= 2,
        "renewals after the rotation use the new secret"
    );
    let m = kw.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"keyway_token_fetches_total{mode="entra",outcome="rejected"}"#
        ),
        Some(0.0),
        "the refused exchange was retried inside the same fetch: {m}"
    );
    assert_log_clean(&kw, &[&old, &new, &vault_token]);
}

/// Key Vault refuses the reader's token (revoked at Entra): the renewal fetches a fresh token
/// and reads again at once, instead of failing and serving the stale value.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_vault_renewal_with_a_revoked_token_gets_a_fresh_one_and_reads_again() {
    let k = key_vault("revoked-reader").await;
    let (v1, v2) = (
        secret("sk-kv-value-before-revocation"),
        secret("sk-kv-value-after-revocation"),
    );
    k.kv.set("api-key", &v1);
    let up = FakeUpstream::start().await;
    let cfg = format!(
        "[secrets]\nttl_seconds = 2\n{}{}{}{}",
        azure(&k.entra),
        k.reference("kv-key", "api-key", ""),
        key_credential("kvkey", "kv-key"),
        openai_route("kv", "kvkey", &up)
    );
    let kw = Keyway::start(&cfg).await;
    let a = chat(&kw, "kv").await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(bearer(&up.only()).as_deref(), Some(v1.as_str()));
    let first = k.entra.current_token(KV_READER, VAULT_SCOPE).unwrap();
    k.entra.revoke(&first);
    k.kv.set("api-key", &v2);

    // The background renewal (~1.5 s into the 2 s TTL) meets the 401 and recovers in one go.
    wait_until("the renewal", Duration::from_secs(10), || async {
        fetches(&kw.metrics().await, "azure_kv", "ok") >= 2.0
    })
    .await;
    let m = kw.metrics().await;
    assert_eq!(fetches(&m, "azure_kv", "rejected"), 0.0, "{m}");
    assert_eq!(k.kv.unauthorized(), 1);
    assert_eq!(
        k.kv.fetches("api-key"),
        3,
        "prefetch, the refused read, the read again"
    );
    let a = chat(&kw, "kv").await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(bearer(&up.only()).as_deref(), Some(v2.as_str()));
    let fresh = k.entra.current_token(KV_READER, VAULT_SCOPE).unwrap();
    assert_ne!(fresh, first);
    assert_log_clean(&kw, &[&v1, &v2, &k.reader_secret]);
}
