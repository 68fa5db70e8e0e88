//! The control plane end to end: keyway processes sharing a store (SQLite, and a real
//! PostgreSQL started by the test), managed over the admin API. Objects created through one
//! instance serve traffic through the other within a second; seed 003's merge, revocation and
//! delete-in-use rules; the database going away mid-run (zero failed requests, writes 503,
//! catch-up after it returns); the RBAC matrix; masking on every read; and bad input.

#[path = "../common/mod.rs"]
mod common;

mod configs;
mod fleet;
mod input;
mod outage;
mod rbac;

use std::time::Duration;

use serde_json::{json, Value};

use common::admin::{key_block, Admin};
use common::secrets::FakeVault;
use common::{secret, FakeUpstream, Keyway};

/// The organisation owner's key (declared in the file: the first owner comes from there).
fn owner_key() -> String {
    secret("kw-control-owner-key-0001")
}

/// A member key of team-a, for traffic.
fn caller_key() -> String {
    secret("kw-control-caller-key-0001")
}

/// The config every instance of a fleet runs: enforced, two workspaces, the owner and a
/// caller, OpenAI at the fake upstream, and `store` (a `[store]` section, or nothing).
fn fleet_config(up: &FakeUpstream, store: &str) -> String {
    format!(
        "[auth]\nmode = \"enforced\"\n[workspaces.team-a]\n[workspaces.team-b]\n{}{}\n[providers.openai]\nbase_url = \"{}/v1\"\n{store}",
        key_block("owner", &owner_key(), None, "owner"),
        key_block("caller", &caller_key(), Some("team-a"), "member"),
        up.base()
    )
}

/// A chat completion through `kw` with gateway key `key` and virtual key `vk`; the status.
async fn chat(kw: &Keyway, key: &str, vk: &str) -> u16 {
    reqwest::Client::new()
        .post(kw.url("/v1/chat/completions"))
        .header("x-portkey-api-key", key)
        .header("x-portkey-virtual-key", vk)
        .body(r#"{"model":"gpt-4o","messages":[]}"#)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

/// A Vault that holds `apps/openai` = {api_key: value} for `token`.
async fn vault_with(token: &str, value: &str) -> FakeVault {
    let vault = FakeVault::start().await;
    vault.add_token(token);
    vault.set("secret", "apps/openai", json!({ "api_key": value }));
    vault
}

/// The body of a Vault secret reference to `apps/openai`.
fn vault_reference(name: &str, vault: &FakeVault, token: &str) -> Value {
    json!({
        "name": name,
        "manager_type": "hashicorp_vault",
        "auth_config": {"vault_addr": vault.addr(), "vault_token": token},
        "secret_path": "apps/openai",
        "secret_key": "api_key",
    })
}

/// Creates reference → integration mapped to it → virtual key in team-a, through `admin`;
/// the virtual key's slug.
async fn create_chain(admin: &Admin, vault: &FakeVault, token: &str) -> String {
    let r = admin
        .create(
            "/v1/secret-references",
            vault_reference("OpenAI key", vault, token),
        )
        .await;
    assert_eq!(r["slug"], "openai-key", "{r}");
    let i = admin
        .create(
            "/v1/integrations",
            json!({
                "name": "OpenAI",
                "ai_provider_id": "openai",
                "secret_mappings": [{"target_field": "key", "secret_reference_id": "openai-key"}],
            }),
        )
        .await;
    assert_eq!(i["slug"], "openai", "{i}");
    let v = admin
        .create(
            "/v1/virtual-keys",
            json!({"name": "Team A OpenAI", "integration": "openai", "workspace_id": "team-a"}),
        )
        .await;
    assert_eq!(v["workspace_id"], "team-a", "{v}");
    v["slug"].as_str().unwrap().to_owned()
}
