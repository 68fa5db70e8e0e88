//! Routing configs stored by slug, named in `x-portkey-config` instead of the JSON: from the
//! file and from the API, limited to their workspace's callers.

use serde_json::json;

use super::common::admin::{key_block, Admin};
use super::common::{secret, FakeUpstream, Keyway};
use super::owner_key;

async fn send(kw: &Keyway, key: &str, config: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(kw.url("/v1/chat/completions"))
        .header("x-portkey-api-key", key)
        .header("x-portkey-config", config)
        .body(r#"{"model":"gpt-4o","messages":[]}"#)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_names_a_stored_config_by_slug() {
    let up = FakeUpstream::start().await;
    let (a, b) = (
        secret("kw-control-configs-a"),
        secret("kw-control-configs-b"),
    );
    let upstream_key = secret("sk-control-configs-file");
    let cfg = format!(
        "[auth]\nmode = \"enforced\"\n[workspaces.team-a]\n[workspaces.team-b]\n{}{}{}\n[credentials.openai]\ntype = \"api_key\"\nkey = \"{upstream_key}\"\n[virtual_keys.vk-a]\nworkspace = \"team-a\"\nprovider = \"openai\"\ncredential = \"openai\"\n[configs.team-a-default]\nworkspace = \"team-a\"\nconfig = '{{\"virtual_key\":\"vk-a\"}}'\n[configs.team-a-plain]\nworkspace = \"team-a\"\nconfig = '{{\"provider\":\"openai\"}}'\n[providers.openai]\nbase_url = \"{}/v1\"\n",
        key_block("owner", &owner_key(), None, "owner"),
        key_block("a", &a, Some("team-a"), "member"),
        key_block("b", &b, Some("team-b"), "member"),
        up.base()
    );
    let kw = Keyway::start(&cfg).await;
    let (s, body) = send(&kw, &a, "team-a-default").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        up.only().header("authorization"),
        Some(format!("Bearer {upstream_key}").as_str())
    );
    let (s, body) = send(&kw, &b, "team-a-default").await;
    assert_eq!(
        s, 403,
        "another workspace's config (and virtual key): {body}"
    );
    let (s, body) = send(&kw, &b, "team-a-plain").await;
    assert_eq!(s, 403, "another workspace's config: {body}");
    assert!(body.contains("belongs to another workspace"), "{body}");
    let (s, body) = send(&kw, &a, "no-such-config").await;
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("names no stored config"), "{body}");
    assert!(up.requests().is_empty(), "refusals send nothing upstream");

    // One made over the API serves at once on this instance.
    let admin = Admin::new(&kw, &owner_key());
    let made = admin
        .create(
            "/v1/configs",
            json!({"name": "Team A via API", "workspace_id": "team-a", "config": {"virtual_key": "vk-a"}}),
        )
        .await;
    assert_eq!(made["slug"], "team-a-via-api");
    let (s, body) = send(&kw, &a, "team-a-via-api").await;
    assert_eq!(s, 200, "{body}");
    // A config naming a virtual key that does not exist is refused; one in use blocks the key.
    let (s, v) = admin
        .post(
            "/v1/configs",
            json!({"name": "ghost", "config": {"virtual_key": "nope"}}),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("virtual key 'nope'"),
        "{v}"
    );
}
