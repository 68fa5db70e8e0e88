//! The cache policy: TTL, single flight, outages, max_stale, never-fetched references, readiness.

use super::*;

// ---------------------------------------------------------------------------------------------
// Cache policy: TTL, single flight, outages, max_stale, never-fetched references, readiness.

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_secret_is_picked_up_after_the_ttl() {
    let k = key_vault("rotation").await;
    let (old, new) = (
        secret("openai-key-before-rotation-1"),
        secret("openai-key-after-rotation-2"),
    );
    k.kv.set("openai-key", &old);
    let up = FakeUpstream::start().await;
    let cfg = format!(
        "[secrets]\nttl_seconds = 1\n{}{}{}{}",
        azure(&k.entra),
        k.reference("openai-kv", "openai-key", ""),
        key_credential("openai", "openai-kv"),
        openai_route("rot", "openai", &up)
    );
    let kw = Keyway::start(&cfg).await;
    assert_eq!(chat(&kw, "rot").await.status, 200);
    assert_eq!(bearer(&up.only()).as_deref(), Some(old.as_str()));

    k.kv.set("openai-key", &new);
    let rotated = Instant::now();
    let mut sent = 0;
    loop {
        let a = chat(&kw, "rot").await;
        assert_eq!(a.status, 200, "{}", a.text);
        sent += 1;
        if bearer(&up.requests().pop().unwrap()).as_deref() == Some(new.as_str()) {
            break;
        }
        assert!(
            rotated.elapsed() < Duration::from_millis(3000),
            "the new version was not used within 3 s of a 1 s TTL"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Never back to the old value.
    for _ in 0..10 {
        assert_eq!(chat(&kw, "rot").await.status, 200);
        sent += 1;
    }
    let keys: Vec<_> = up.requests().iter().map(|r| bearer(r).unwrap()).collect();
    let first_new = keys.iter().position(|k| *k == new).unwrap();
    assert!(
        keys[first_new..].iter().all(|k| *k == new),
        "the old key came back"
    );
    // The value was cached in between: far fewer reads than requests.
    let reads = k.kv.fetches("openai-key");
    assert!(
        reads >= 2 && reads * 2 < sent,
        "{reads} reads for {sent} requests"
    );
    for r in k.kv.requests() {
        assert_kv_read(&r, &k.entra.handle, "openai-key");
    }
    assert_log_clean(&kw, &[&old, &new, &k.reader_secret]);
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_concurrent_requests_on_a_cold_reference_make_one_fetch() {
    let k = key_vault("single-flight").await;
    let value = secret("openai-key-single-flight-cold");
    k.kv.set("cold-key", &value);
    k.kv.set_delay(Some(Duration::from_millis(300)));
    let up = FakeUpstream::start().await;
    let cfg = format!(
        "[secrets]\nprefetch = false\n{}{}{}{}",
        azure(&k.entra),
        k.reference("cold", "cold-key", ""),
        key_credential("openai", "cold"),
        openai_route("cold", "openai", &up)
    );
    let kw = Keyway::start(&cfg).await;
    assert_eq!(k.kv.fetches("cold-key"), 0, "prefetch = false");

    let all = futures_util::future::join_all((0..50).map(|_| chat(&kw, "cold"))).await;
    for a in &all {
        assert_eq!(a.status, 200, "{}", a.text);
    }
    assert_eq!(
        k.kv.fetches("cold-key"),
        1,
        "50 cold requests must share one fetch"
    );
    assert_eq!(k.entra.issued(), 1, "and one vault token");
    let got = up.requests();
    assert_eq!(got.len(), 50);
    assert!(got
        .iter()
        .all(|r| bearer(r).as_deref() == Some(value.as_str())));
    let m = kw.metrics().await;
    assert_eq!(fetches(&m, "azure_kv", "ok"), 1.0, "{m}");
    let misses = metric(&m, r#"keyway_secret_cache_total{result="miss"}"#).unwrap_or(0.0);
    assert!(misses >= 1.0, "{m}");
    assert_log_clean(&kw, &[&value, &k.reader_secret]);
}

/// Requests every 100 ms for `span`: all must pass with `value`.
async fn all_pass(kw: &Keyway, prefix: &str, up: &FakeUpstream, value: &str, span: Duration) {
    let deadline = Instant::now() + span;
    while Instant::now() < deadline {
        let a = chat(kw, prefix).await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert_eq!(
            bearer(&up.requests().pop().unwrap()).as_deref(),
            Some(value)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_vault_refusing_connections_costs_no_request_while_the_value_is_cached() {
    let k = key_vault("refused").await;
    let value = secret("openai-key-through-kv-outage");
    k.kv.set("outage-key", &value);
    let up = FakeUpstream::start().await;
    let cfg = format!(
        "[secrets]\nttl_seconds = 1\n{}{}{}{}",
        azure(&k.entra),
        k.reference("outage", "outage-key", ""),
        key_credential("openai", "outage"),
        openai_route("o", "openai", &up)
    );
    let kw = Keyway::start(&cfg).await;
    assert_eq!(chat(&kw, "o").await.status, 200);
    let m = kw.metrics().await;
    assert_eq!(
        metric(&m, r#"keyway_secret_staleness_seconds{manager="azure_kv"}"#).unwrap_or(0.0),
        0.0,
        "{m}"
    );

    k.kv.set_outage(Outage::Refused).await;
    // Three TTLs with the vault unreachable: the cached value keeps serving.
    all_pass(&kw, "o", &up, &value, Duration::from_secs(3)).await;
    let m = kw.metrics().await;
    let stale = metric(&m, r#"keyway_secret_cache_total{result="stale"}"#).unwrap_or(0.0);
    assert!(stale > 0.0, "no stale serving counted:\n{m}");
    let staleness =
        metric(&m, r#"keyway_secret_staleness_seconds{manager="azure_kv"}"#).unwrap_or(0.0);
    assert!(
        staleness >= 1.0,
        "staleness {staleness} after 3 s of outage with a 1 s TTL:\n{m}"
    );
    assert!(fetches(&m, "azure_kv", "unavailable") >= 1.0, "{m}");

    // Back up: the value is refreshed and no longer stale.
    k.kv.set_outage(Outage::None).await;
    let fetched = k.kv.fetches("outage-key");
    let kwr = &kw;
    wait_until(
        "staleness back to 0",
        Duration::from_secs(10),
        move || async move {
            assert_eq!(chat(kwr, "o").await.status, 200);
            let m = kwr.metrics().await;
            metric(&m, r#"keyway_secret_staleness_seconds{manager="azure_kv"}"#) == Some(0.0)
        },
    )
    .await;
    assert!(k.kv.fetches("outage-key") > fetched);
    assert_log_clean(&kw, &[&value, &k.reader_secret]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sealed_vault_serves_stale_values_until_max_stale_then_503() {
    let vault = FakeVault::start().await;
    let token = secret("hvs.static-token-max-stale");
    vault.add_token(&token);
    let value = secret("sk-openai-max-stale-value");
    vault.set("secret", "llm/openai", json!({"api_key": value}));
    let up = FakeUpstream::start().await;
    let cfg = format!(
        "[secrets]\nttl_seconds = 1\nmax_stale_seconds = 2\n{}{}{}",
        vault_token_reference(
            "stale-ref",
            "llm/openai",
            &vault,
            &token,
            "secret_key = \"api_key\""
        ),
        key_credential("openai", "stale-ref"),
        openai_route("s", "openai", &up)
    );
    let kw = Keyway::start(&cfg).await;
    assert_eq!(chat(&kw, "s").await.status, 200);
    vault.set_outage(Outage::Unavailable).await;
    let down = Instant::now();
    // The last good fetch was at most 1 s before the outage; it serves until ttl + max_stale
    // (3 s) after that fetch, so surely until 1.8 s into the outage.
    all_pass(&kw, "s", &up, &value, Duration::from_millis(1800)).await;
    let m = kw.metrics().await;
    assert!(
        metric(&m, r#"keyway_secret_cache_total{result="stale"}"#).unwrap_or(0.0) > 0.0,
        "{m}"
    );
    assert!(fetches(&m, "hashicorp_vault", "unavailable") >= 1.0, "{m}");
    // ... and never past 3 s into the outage (plus scheduling slack).
    let last = loop {
        let a = chat(&kw, "s").await;
        if a.status != 200 {
            break a;
        }
        assert!(
            down.elapsed() < Duration::from_millis(3800),
            "a value fetched before the outage still served {:?} into it (ttl 1 s + max_stale 2 s)",
            down.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_unavailable(&last, "stale-ref");
    assert!(!last.text.contains(&value) && !last.text.contains(&token));
    let served = up.requests().len();
    assert_eq!(chat(&kw, "s").await.status, 503);
    assert_eq!(up.requests().len(), served, "a 503 reached the upstream");
    assert_log_clean(&kw, &[&value, &token]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_never_fetched_reference_with_its_manager_down_is_a_clear_503() {
    let vault = FakeVault::start().await;
    let token = secret("hvs.static-token-never-fetched");
    vault.add_token(&token);
    let (broken, other) = (
        secret("sk-openai-never-fetched-broken"),
        secret("sk-openai-never-fetched-other"),
    );
    vault.set("secret", "team/broken", json!({"api_key": broken}));
    vault.set(
        "secret",
        "team/other-secret-path",
        json!({"api_key": other}),
    );
    let up = FakeUpstream::start().await;
    let k = "secret_key = \"api_key\"";
    let cfg = format!(
        "[secrets]\nprefetch = false\nfetch_timeout_ms = 2000\n{}{}{}{}{}{}{}{}{}",
        vault_token_reference("broken-ref", "team/broken", &vault, &token, k),
        vault_token_reference("other-ref", "team/other-secret-path", &vault, &token, k),
        vault_token_reference("missing-ref", "team/not-there", &vault, &token, k),
        key_credential("broken", "broken-ref"),
        key_credential("other", "other-ref"),
        key_credential("missing", "missing-ref"),
        openai_route("broken", "broken", &up),
        openai_route("other", "other", &up),
        openai_route("missing", "missing", &up),
    );
    vault.set_outage(Outage::Refused).await;
    let kw = Keyway::start(&cfg).await;
    let t = Instant::now();
    let a = chat(&kw, "broken").await;
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    assert_unavailable(&a, "broken-ref");
    for needle in [
        broken.as_str(),
        other.as_str(),
        "team/other-secret-path",
        "other-ref",
        token.as_str(),
        "api_key",
    ] {
        assert!(
            !a.text.contains(needle),
            "the 503 carries {needle:?}: {}",
            a.text
        );
    }
    assert!(up.requests().is_empty());
    let m = kw.metrics().await;
    assert!(fetches(&m, "hashicorp_vault", "unavailable") >= 1.0, "{m}");

    // A path the manager does not have: 503 too, counted as not_found, fetched once.
    vault.set_outage(Outage::None).await;
    let a = chat(&kw, "missing").await;
    assert_unavailable(&a, "missing-ref");
    assert!(!a.text.contains(&token));
    assert_eq!(vault.reads("secret", "team/not-there"), 1);
    let m = kw.metrics().await;
    assert_eq!(fetches(&m, "hashicorp_vault", "not_found"), 1.0, "{m}");
    assert!(up.requests().is_empty());

    // Once the manager is back, the broken reference recovers.
    let kwr = &kw;
    wait_until(
        "broken-ref recovers",
        Duration::from_secs(10),
        move || async move { chat(kwr, "broken").await.status == 200 },
    )
    .await;
    assert_eq!(
        bearer(&up.requests().pop().unwrap()).as_deref(),
        Some(broken.as_str())
    );
    assert_log_clean(&kw, &[&broken, &other, &token]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_manager_is_cut_off_by_fetch_timeout_ms() {
    let vault = FakeVault::start().await;
    let token = secret("hvs.static-token-hanging");
    vault.add_token(&token);
    vault.set(
        "secret",
        "llm/openai",
        json!({"api_key": "sk-never-delivered-1234"}),
    );
    vault.set_delay(Some(Duration::from_secs(10)));
    let up = FakeUpstream::start().await;
    let cfg = format!(
        "[secrets]\nprefetch = false\nfetch_timeout_ms = 500\n{}{}{}",
        vault_token_reference(
            "slow-ref",
            "llm/openai",
            &vault,
            &token,
            "secret_key = \"api_key\""
        ),
        key_credential("openai", "slow-ref"),
        openai_route("slow", "openai", &up)
    );
    let kw = Keyway::start(&cfg).await;
    let t = Instant::now();
    let a = chat(&kw, "slow").await;
    assert!(
        t.elapsed() < Duration::from_millis(2500),
        "took {:?} with a 500 ms fetch timeout",
        t.elapsed()
    );
    assert_unavailable(&a, "slow-ref");
    assert!(up.requests().is_empty());
    let m = kw.metrics().await;
    assert!(fetches(&m, "hashicorp_vault", "unavailable") >= 1.0, "{m}");
    assert_log_clean(&kw, &[&token]);
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_waits_for_prefetched_secrets() {
    let k = key_vault("readyz").await;
    let value = secret("openai-key-readyz-prefetch");
    k.kv.set("ready-key", &value);
    k.kv.set_outage(Outage::Unavailable).await;
    let up = FakeUpstream::start().await;
    let cfg = format!(
        "{}{}{}{}",
        azure(&k.entra),
        k.reference("ready", "ready-key", ""),
        key_credential("openai", "ready"),
        openai_route("r", "openai", &up)
    );
    let kw = Keyway::start_opts(&cfg, &[], "/healthz").await;
    let kwr = &kw;
    let kvr = &k.kv;
    wait_until(
        "a prefetch attempt",
        Duration::from_secs(5),
        move || async move { kvr.fetches("ready-key") > 0 },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(readyz(&kw).await, 503, "ready without its secrets");
    // A request meanwhile: the reference has never been read, so a 503 naming it, without the
    // manager's credentials.
    let a = chat(&kw, "r").await;
    assert_unavailable(&a, "ready");
    assert!(!a.text.contains(&k.reader_secret), "{}", a.text);
    assert!(up.requests().is_empty());
    k.kv.set_outage(Outage::None).await;
    wait_until(
        "/readyz after the vault came back",
        Duration::from_secs(10),
        move || async move { readyz(kwr).await == 200 },
    )
    .await;
    let a = chat(&kw, "r").await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(bearer(&up.only()).as_deref(), Some(value.as_str()));
    assert_log_clean(&kw, &[&value, &k.reader_secret]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_entra_refusal_of_the_key_vault_reader_is_a_503_without_secrets() {
    let k = key_vault("reader-refused").await;
    k.kv.set("refused-key", &secret("openai-key-never-read-refused"));
    let wrong = secret("kv-reader-secret-wrong-one");
    let up = FakeUpstream::start().await;
    let cfg = format!(
        "[secrets]\nprefetch = false\n{}{}{}{}",
        azure(&k.entra),
        kv_reference("refused", "refused-key", &k.kv, &wrong, ""),
        key_credential("openai", "refused"),
        openai_route("rf", "openai", &up)
    );
    let kw = Keyway::start_opts(&cfg, &[], "/healthz").await;
    let a = chat(&kw, "rf").await;
    assert_unavailable(&a, "refused");
    assert!(!a.text.contains(&wrong), "{}", a.text);
    assert!(k
        .entra
        .requests()
        .iter()
        .any(|r| r.form.get("client_secret") == Some(wrong.as_str())));
    assert_eq!(k.kv.fetches("refused-key"), 0, "no read without a token");
    assert!(up.requests().is_empty());
    assert_log_clean(&kw, &[&wrong, &k.reader_secret]);
    // With prefetch = false nothing waits for the secret, so nothing waits for the credential
    // that reads it either: one broken reference must not hold the whole gateway unready (it
    // is ready as soon as the store's objects are loaded, well within 5 s; the refused
    // credential backs off for 15 s and more).
    let mut status = 0;
    for _ in 0..50 {
        status = readyz(&kw).await;
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        status, 200,
        "prefetch = false, yet /readyz waits on the Key Vault reader's token"
    );
}
