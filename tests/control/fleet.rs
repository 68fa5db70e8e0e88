//! Two instances, one store: what instance A's API creates serves through instance B within a
//! second, and seed 003's rules hold across the fleet. The same scenario on SQLite (two
//! processes on one database file) and on PostgreSQL.

use std::time::{Duration, Instant};

use serde_json::json;

use super::common::admin::{time_until, Admin};
use super::common::postgres::Postgres;
use super::common::{log_dir, secret, FakeUpstream, Keyway};
use super::{caller_key, chat, create_chain, fleet_config, owner_key, vault_with};

/// The bound the issue sets for a change to reach another instance.
const FLEET: Duration = Duration::from_secs(1);

/// Everything the scenario runs against.
struct Fleet {
    a: Keyway,
    b: Keyway,
    up: FakeUpstream,
}

/// The scenario: `at_rest()` dumps what the database holds, to check no credential is there
/// in the clear.
async fn scenario(f: &Fleet, at_rest: impl Fn() -> Vec<u8>) {
    let (token1, token2) = (
        secret("hvs.control-fleet-token-one"),
        secret("s.control-fleet-token-two"),
    );
    let (key1, key2) = (
        secret("sk-control-fleet-upstream-one"),
        secret("sk-control-fleet-upstream-two"),
    );
    let vault = vault_with(&token1, &key1).await;
    let admin_a = Admin::new(&f.a, &owner_key());
    let admin_b = Admin::new(&f.b, &owner_key());
    let caller = caller_key();

    // 1. Reference → integration → virtual key through A: live on A when A answers, on B
    //    within a second.
    let vk = create_chain(&admin_a, &vault, &token1).await;
    let answered = Instant::now();
    assert_eq!(
        chat(&f.a, &caller, &vk).await,
        200,
        "live on A when A answered"
    );
    let on_b = time_until(200, Duration::from_secs(5), || chat(&f.b, &caller, &vk))
        .await
        .expect("the virtual key never served through B");
    let lag = answered.elapsed();
    eprintln!(
        "virtual key created on A served through B after {on_b:?} ({lag:?} after A's answer)"
    );
    assert!(lag <= FLEET, "B served it {lag:?} after A answered");
    let sent = f.up.requests();
    assert!(sent.len() >= 2);
    for r in &sent {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {key1}").as_str())
        );
    }
    // B lists what A created, masked.
    let (s, list) = admin_b.get("/v1/secret-references").await;
    assert_eq!(s, 200);
    let got = &list["data"].as_array().unwrap()[0];
    assert_eq!(got["slug"], "openai-key");
    assert!(
        got["auth_config"]["masked_vault_token"].is_string(),
        "{got}"
    );
    assert!(got["auth_config"].get("vault_token").is_none(), "{got}");

    // 2. auth_config merge (seed 003): only the token is sent; the address stays; the
    //    reference's value is fetched again with the new token, on B too.
    vault.add_token(&token2);
    vault.set("secret", "apps/openai", json!({ "api_key": key2 }));
    let (s, put) = admin_a
        .put(
            "/v1/secret-references/openai-key",
            json!({"auth_config": {"vault_token": token2}}),
        )
        .await;
    assert_eq!(s, 200, "{put}");
    assert_eq!(
        put["auth_config"]["vault_addr"],
        vault.addr(),
        "merged, not replaced"
    );
    assert_ne!(
        put["auth_config"]["masked_vault_token"], got["auth_config"]["masked_vault_token"],
        "the new token's mask"
    );
    vault.revoke_tokens();
    vault.add_token(&token2);
    let want = format!("Bearer {key2}");
    let fresh = time_until(200, Duration::from_secs(5), || async {
        let before = f.up.requests().len();
        let s = chat(&f.b, &caller, &vk).await;
        let sent = f.up.requests();
        match sent.get(before).and_then(|r| r.header("authorization")) {
            Some(a) if s == 200 && a == want => 200,
            _ => 0,
        }
    })
    .await;
    assert!(
        fresh.is_some(),
        "B never used the value read with the new token"
    );
    assert!(
        vault
            .requests()
            .iter()
            .any(|r| r.header("x-vault-token") == Some(token2.as_str())),
        "the value was read again with the merged token"
    );

    // 3. A key made over A's API works through B; revoked over A, B refuses it within a second.
    let made = admin_a
        .create(
            "/v1/api-keys/workspace/service",
            json!({"name": "app", "workspace_id": "team-a", "role": "member"}),
        )
        .await;
    let app_key = made["key"].as_str().unwrap().to_owned();
    secret(&app_key);
    let id = made["id"].as_str().unwrap().to_owned();
    time_until(200, Duration::from_secs(5), || chat(&f.b, &app_key, &vk))
        .await
        .expect("the new key never worked through B");
    let (s, v) = admin_a
        .put(&format!("/v1/api-keys/{id}"), json!({"revoked": true}))
        .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("revoked")), "{v}");
    let answered = Instant::now();
    time_until(401, Duration::from_secs(5), || chat(&f.b, &app_key, &vk))
        .await
        .expect("B kept accepting the revoked key");
    assert!(
        answered.elapsed() <= FLEET,
        "revocation reached B after {:?}",
        answered.elapsed()
    );
    assert_eq!(chat(&f.a, &app_key, &vk).await, 401);

    // 4. Delete-in-use: refused with 409 naming the users; after they go, it goes.
    let (s, v) = admin_b.delete("/v1/secret-references/openai-key").await;
    assert_eq!(s, 409, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("openai"), "{msg}");
    let (s, v) = admin_b.delete("/v1/integrations/openai").await;
    assert_eq!(s, 409, "the virtual key still uses the integration: {v}");
    assert!(v["error"]["message"].as_str().unwrap().contains(&vk), "{v}");
    for path in [
        format!("/v1/virtual-keys/{vk}"),
        "/v1/integrations/openai".to_owned(),
        "/v1/secret-references/openai-key".to_owned(),
    ] {
        let (s, v) = admin_b.delete(&path).await;
        assert_eq!(s, 200, "DELETE {path}: {v}");
    }
    assert_eq!(admin_a.get("/v1/secret-references/openai-key").await.0, 404);
    time_until(401, Duration::from_secs(5), || chat(&f.a, &caller, &vk))
        .await
        .expect("the deleted virtual key kept serving on A");

    // 5. The audit log has every change, masked.
    let (s, log) = admin_a.get("/v1/audit-logs?page_size=100").await;
    assert_eq!(s, 200);
    let actions: Vec<String> = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["action"].as_str().unwrap(),
                e["kind"].as_str().unwrap()
            )
        })
        .collect();
    for want in [
        "create secret_reference",
        "update secret_reference",
        "create integration",
        "create virtual_key",
        "create api_key",
        "update api_key",
        "delete virtual_key",
        "delete secret_reference",
    ] {
        assert!(
            actions.iter().any(|a| a == want),
            "{want} not in {actions:?}"
        );
    }
    assert!(log["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["actor"] == "owner"));
    let text = log.to_string();
    for s in [&token1, &token2, &key1, &key2, &app_key] {
        assert!(!text.contains(s.as_str()), "the audit log shows a secret");
    }

    // 6. At rest, the database never shows a credential.
    let dump = at_rest();
    assert!(!dump.is_empty());
    for s in [&token1, &token2, &app_key] {
        assert!(
            !dump.windows(s.len()).any(|w| w == s.as_bytes()),
            "the database holds a credential in the clear"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_two_instances_share_one_store() {
    let up = FakeUpstream::start().await;
    let data = log_dir().join(format!("shared-sqlite-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let env = [("KEYWAY_DATA_DIR", data.to_str().unwrap())];
    let cfg = fleet_config(&up, "");
    let a = Keyway::start_with_env(&cfg, &env).await;
    let b = Keyway::start_with_env(&cfg, &env).await;
    let f = Fleet { a, b, up };
    scenario(&f, || {
        let mut all = Vec::new();
        for name in ["keyway.db", "keyway.db-wal"] {
            all.extend(std::fs::read(data.join(name)).unwrap_or_default());
        }
        all
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_two_instances_share_one_store() {
    let Some(pg) = Postgres::start().await else {
        return;
    };
    let up = FakeUpstream::start().await;
    let key = store_key();
    let env = [("KEYWAY_STORE_KEY", key.as_str())];
    // Version checks every 5 s: only PostgreSQL's notifications can make a change live on the
    // other instance within the second the scenario allows.
    let cfg = fleet_config(
        &up,
        &format!(
            "\n[store]\nurl = \"{}\"\npoll_interval_ms = 5000\n",
            pg.url()
        ),
    );
    let a = Keyway::start_with_env(&cfg, &env).await;
    let b = Keyway::start_with_env(&cfg, &env).await;
    let f = Fleet { a, b, up };
    scenario(&f, || {
        pg.psql("SELECT kind, id, slug, body, encode(sealed, 'escape') FROM keyway_objects; SELECT * FROM keyway_audit")
            .into_bytes()
    })
    .await;
    let lag = f.b.metric("keyway_store_change_lag_seconds").await;
    assert!(
        lag > 0.0 && lag < 1.0,
        "the last change reached B after {lag}s"
    );
}

/// A fresh 32-byte sealing key, base64.
pub fn store_key() -> String {
    use base64::Engine as _;
    let bytes: [u8; 32] = rand::random();
    secret(&base64::engine::general_purpose::STANDARD.encode(bytes))
}
