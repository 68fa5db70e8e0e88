//! Who may do what (seed 003: `OWNER` or `ADMIN` with `x-portkey-api-key`): organisation owners
//! and admins touch every workspace; a workspace admin only its own; members, JWT callers
//! without an admin role, callers without a key and revoked keys are refused. Each cell of the
//! matrix is one request.

use serde_json::json;

use super::common::admin::{key_block, Admin};
use super::common::jwt::{now, RsaSigner};
use super::common::{secret, FakeUpstream, Keyway};
use super::{caller_key, owner_key};

struct Keys {
    org_admin: String,
    ws_admin: String,
    revoked: String,
    jwt_member: String,
    jwt_admin: String,
}

async fn start(up: &FakeUpstream) -> (Keyway, Keys) {
    let signer = RsaSigner::new(Some("rbac-1"));
    let token = |role: &str| {
        signer.sign(&json!({
            "iss": "https://idp.example/rbac", "aud": "api://keyway", "sub": format!("jwt-{role}"),
            "exp": now() + 600, "workspace_slug": "team-a", "scopes": role,
        }))
    };
    let keys = Keys {
        org_admin: secret("kw-control-rbac-org-admin"),
        ws_admin: secret("kw-control-rbac-ws-admin-a"),
        revoked: secret("kw-control-rbac-revoked"),
        jwt_member: token("member"),
        jwt_admin: token("admin"),
    };
    let cfg = format!(
        "[auth]\nmode = \"enforced\"\n[[auth.jwt]]\nheader = \"x-portkey-api-key\"\nkeys = [{}]\nissuers = [\"https://idp.example/rbac\"]\naudiences = [\"api://keyway\"]\n[workspaces.team-a]\n[workspaces.team-b]\n{}{}{}{}{}revoked = true\n[providers.openai]\nbase_url = \"{}/v1\"\n",
        signer.toml_key(),
        key_block("owner", &owner_key(), None, "owner"),
        key_block("org-admin", &keys.org_admin, None, "admin"),
        key_block("ws-admin-a", &keys.ws_admin, Some("team-a"), "admin"),
        key_block("member", &caller_key(), Some("team-a"), "member"),
        key_block("revoked", &keys.revoked, Some("team-a"), "admin"),
        up.base()
    );
    (Keyway::start(&cfg).await, keys)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rbac_matrix() {
    let up = FakeUpstream::start().await;
    let (kw, k) = start(&up).await;
    let owner = Admin::new(&kw, &owner_key());
    let upstream_key = secret("sk-control-rbac-upstream");
    let vk = |name: &str, ws: &str| json!({"name": name, "provider": "openai", "key": upstream_key, "workspace_id": ws});
    owner
        .create("/v1/virtual-keys", vk("b key", "team-b"))
        .await;
    let member = caller_key();
    let owner_k = owner_key();
    let who: [(&str, Option<&str>); 8] = [
        ("owner", Some(&owner_k)),
        ("org admin", Some(&k.org_admin)),
        ("workspace admin of A", Some(&k.ws_admin)),
        ("member", Some(&member)),
        ("no key", None),
        ("revoked key", Some(&k.revoked)),
        ("JWT member", Some(&k.jwt_member)),
        ("JWT admin of A", Some(&k.jwt_admin)),
    ]
    .map(|(n, key)| (n, key.map(|s| s.as_str())));
    // (create in team-b, read team-b's, create in team-a, create a workspace)
    let want: [(u16, u16, u16, u16); 8] = [
        (200, 200, 200, 200),
        (200, 200, 200, 200),
        (403, 403, 200, 403),
        (403, 403, 403, 403),
        (401, 401, 401, 401),
        (401, 401, 401, 401),
        (403, 403, 403, 403),
        (403, 403, 200, 403),
    ];
    for (i, ((name, key), want)) in who.iter().zip(want).enumerate() {
        let a = owner.with_key(*key);
        let got = (
            a.post("/v1/virtual-keys", vk(&format!("b {i}"), "team-b"))
                .await
                .0,
            a.get("/v1/virtual-keys/b-key").await.0,
            a.post("/v1/virtual-keys", vk(&format!("a {i}"), "team-a"))
                .await
                .0,
            a.post("/v1/admin/workspaces", json!({"name": format!("ws {i}")}))
                .await
                .0,
        );
        assert_eq!(got, want, "{name}");
    }

    // A workspace admin lists only its workspace's objects, and its audit log only theirs.
    let ws = owner.with_key(Some(&k.ws_admin));
    let (s, list) = ws.get("/v1/virtual-keys").await;
    assert_eq!(s, 200);
    let items = list["data"].as_array().unwrap();
    assert!(!items.is_empty());
    assert!(
        items.iter().all(|v| v["workspace_id"] == "team-a"),
        "{list}"
    );
    let (s, all) = owner.get("/v1/virtual-keys").await;
    assert_eq!(s, 200);
    assert!(all["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v["workspace_id"] == "team-b"));
    let (s, log) = ws.get("/v1/audit-logs").await;
    assert_eq!(s, 200);
    let entries = log["data"].as_array().unwrap();
    assert!(!entries.is_empty());
    assert!(entries.iter().all(|e| e["workspace"] == "team-a"), "{log}");

    // Organisation keys and owner keys are the organisation's and the owner's to make.
    let (s, _) = ws
        .post(
            "/v1/api-keys/organisation/service",
            json!({"name": "sneaky"}),
        )
        .await;
    assert_eq!(s, 403);
    let org_admin = owner.with_key(Some(&k.org_admin));
    let (s, v) = org_admin
        .post(
            "/v1/api-keys/workspace/service",
            json!({"name": "new owner", "workspace_id": "team-a", "role": "owner"}),
        )
        .await;
    assert_eq!(s, 403, "{v}");
    let (s, _) = ws
        .post(
            "/v1/api-keys/workspace/service",
            json!({"name": "ws key", "workspace_id": "team-b"}),
        )
        .await;
    assert_eq!(s, 403, "a workspace admin cannot make keys elsewhere");

    // Every refusal was counted.
    let m = kw.metrics().await;
    for series in [
        "keyway_admin_requests_total{outcome=\"forbidden\",route=\"virtual-keys\"}",
        "keyway_admin_requests_total{outcome=\"unauthorized\",route=\"virtual-keys\"}",
        "keyway_admin_requests_total{outcome=\"ok\",route=\"workspaces\"}",
    ] {
        let v: f64 = m
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0.0);
        assert!(v > 0.0, "{series} is 0");
    }
}
