//! Bad input gets a clear 4xx naming the field, and leaves nothing behind; concurrent creates of
//! one slug have exactly one winner; no read shows a credential; the config file's objects are
//! listed read-only and keep their slugs.

use serde_json::{json, Value};

use super::common::admin::{key_block, Admin};
use super::common::{secret, FakeUpstream, Keyway};
use super::{caller_key, owner_key};

/// One instance with a file-declared virtual key `file-vk` and secret reference `file-ref`.
async fn start(up: &FakeUpstream) -> Keyway {
    let cfg = format!(
        "[auth]\nmode = \"enforced\"\n[workspaces.team-a]\n[workspaces.team-b]\n{}{}\n[credentials.openai]\ntype = \"api_key\"\nkey = \"{}\"\n[virtual_keys.file-vk]\nworkspace = \"team-a\"\nprovider = \"openai\"\ncredential = \"openai\"\n[[secret_references]]\nname = \"file ref\"\nslug = \"file-ref\"\nmanager_type = \"hashicorp_vault\"\nsecret_path = \"x\"\nauth_config = {{ vault_addr = \"http://127.0.0.1:9\", vault_token = \"{}\" }}\n[secrets]\nprefetch = false\n[providers.openai]\nbase_url = \"{}/v1\"\n",
        key_block("owner", &owner_key(), None, "owner"),
        key_block("caller", &caller_key(), Some("team-a"), "member"),
        secret("sk-control-input-file-key"),
        secret("hvs.control-input-file-token"),
        up.base()
    );
    Keyway::start(&cfg).await
}

fn reference(name: &str) -> Value {
    json!({
        "name": name,
        "manager_type": "hashicorp_vault",
        "auth_config": {"vault_addr": "http://127.0.0.1:9", "vault_token": "hvs.input-token"},
        "secret_path": "apps/x",
    })
}

/// `reference` with `field` set to `value` (`Null` removes it).
fn reference_with(field: &str, value: Value) -> String {
    let mut r = reference("bad one");
    match value {
        Value::Null => {
            r.as_object_mut().unwrap().remove(field);
        }
        v => r[field] = v,
    }
    r.to_string()
}

/// The number of stored objects and audit entries, as the owner sees them.
async fn counts(admin: &Admin) -> (usize, usize) {
    let mut objects = 0;
    for path in [
        "/v1/secret-references",
        "/v1/integrations",
        "/v1/virtual-keys",
        "/v1/configs",
        "/v1/admin/workspaces",
    ] {
        let (s, v) = admin.get(&format!("{path}?page_size=100")).await;
        assert_eq!(s, 200, "{path}: {v}");
        objects += v["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["source"] == "api")
            .count();
    }
    let (s, log) = admin.get("/v1/audit-logs").await;
    assert_eq!(s, 200);
    (objects, log["total"].as_u64().unwrap() as usize)
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_clearly_and_nothing_is_half_written() {
    let up = FakeUpstream::start().await;
    let kw = start(&up).await;
    let admin = Admin::new(&kw, &owner_key());
    admin
        .create("/v1/secret-references", reference("good"))
        .await;
    let mut b_only = reference("team b only");
    b_only["allowed_workspaces"] = json!(["team-b"]);
    admin.create("/v1/secret-references", b_only).await;
    let before = counts(&admin).await;

    let long = |n: usize| "x".repeat(n);
    let refs = "/v1/secret-references";
    let cases: Vec<(&str, String, String, u16, &str)> = vec![
        ("POST", refs.into(), "{\"name\":".into(), 400, ""),
        ("POST", refs.into(), "[1,2]".into(), 400, ""),
        ("POST", refs.into(), reference_with("colour", json!("red")), 400, "colour"),
        ("POST", refs.into(), reference_with("name", Value::Null), 400, "name"),
        ("POST", refs.into(), reference_with("name", json!(long(256))), 400, "name"),
        ("POST", refs.into(), reference_with("slug", json!("bad slug!")), 400, "slug"),
        ("POST", refs.into(), reference_with("description", json!(long(1025))), 400, "description"),
        ("POST", refs.into(), reference_with("manager_type", json!("gcp_sm")), 400, "manager_type"),
        ("POST", refs.into(), reference_with("manager_type", Value::Null), 400, "manager_type"),
        ("POST", refs.into(), reference_with("auth_config", Value::Null), 400, "auth_config"),
        ("POST", refs.into(), reference_with("auth_config", json!("x")), 400, "auth_config"),
        ("POST", refs.into(), reference_with("secret_path", Value::Null), 400, "secret_path"),
        ("POST", refs.into(), reference_with("tags", json!([1])), 400, "tags"),
        ("POST", refs.into(), reference_with("allowed_workspaces", json!(["nowhere"])), 400, "allowed_workspaces"),
        (
            "POST",
            refs.into(),
            {
                let mut r = reference("both");
                r["allow_all_workspaces"] = json!(true);
                r["allowed_workspaces"] = json!(["team-a"]);
                r.to_string()
            },
            400,
            "allowed_workspaces",
        ),
        (
            "POST",
            refs.into(),
            json!({"name": "aws", "manager_type": "aws_sm", "secret_path": "p",
                   "auth_config": {"aws_auth_type": "accessKey", "aws_access_key_id": "AKIA", "aws_region": "us-east-1"}})
            .to_string(),
            400,
            "aws_secret_access_key",
        ),
        ("POST", refs.into(), reference_with("name", json!("good")), 409, ""),
        ("POST", refs.into(), reference_with("slug", json!("file-ref")), 409, ""),
        ("PUT", format!("{refs}/good"), "{}".into(), 400, ""),
        ("PUT", format!("{refs}/good"), json!({"manager_type": "nope"}).to_string(), 400, "manager_type"),
        ("PUT", format!("{refs}/file-ref"), json!({"secret_path": "y"}).to_string(), 403, ""),
        ("PUT", format!("{refs}/missing"), json!({"secret_path": "y"}).to_string(), 404, ""),
        ("DELETE", format!("{refs}/missing"), String::new(), 404, ""),
        (
            "POST",
            "/v1/integrations".into(),
            json!({"name": "i", "ai_provider_id": "openai", "secret_mappings": "key"}).to_string(),
            400,
            "secret_mappings",
        ),
        (
            "POST",
            "/v1/integrations".into(),
            json!({"name": "i", "ai_provider_id": "openai",
                   "secret_mappings": [{"target_field": "bogus", "secret_reference_id": "good"}]})
            .to_string(),
            400,
            "secret_mappings",
        ),
        (
            "POST",
            "/v1/integrations".into(),
            json!({"name": "i", "ai_provider_id": "openai", "secret_mappings": [
                {"target_field": "key", "secret_reference_id": "good"},
                {"target_field": "key", "secret_reference_id": "good"}]})
            .to_string(),
            400,
            "target_field",
        ),
        (
            "POST",
            "/v1/integrations".into(),
            json!({"name": "i", "ai_provider_id": "openai",
                   "secret_mappings": [{"target_field": "key", "secret_reference_id": "nothing-here"}]})
            .to_string(),
            400,
            "secret_reference_id",
        ),
        (
            "POST",
            "/v1/integrations".into(),
            json!({"name": "i", "ai_provider_id": "no-such-provider", "key": "sk-x"}).to_string(),
            400,
            "ai_provider_id",
        ),
        (
            "POST",
            "/v1/virtual-keys".into(),
            json!({"name": "v", "provider": "openai", "workspace_id": "team-a",
                   "secret_mappings": [{"target_field": "key", "secret_reference_id": "team-b-only"}]})
            .to_string(),
            400,
            "secret_reference_id",
        ),
        (
            "POST",
            "/v1/virtual-keys".into(),
            json!({"name": "v", "provider": "openai", "workspace_id": "team-a"}).to_string(),
            400,
            "key",
        ),
        (
            "POST",
            "/v1/virtual-keys".into(),
            json!({"name": "file-vk", "provider": "openai", "key": "sk-x", "workspace_id": "team-a"})
                .to_string(),
            409,
            "",
        ),
        (
            "POST",
            "/v1/configs".into(),
            json!({"name": "c", "config": "not json"}).to_string(),
            400,
            "config",
        ),
        ("POST", "/v1/api-keys/team/service".into(), json!({"name": "k"}).to_string(), 400, "type"),
        ("GET", "/v1/virtual-keys?page_size=0".into(), String::new(), 400, "page_size"),
        ("PATCH", "/v1/audit-logs".into(), "{}".into(), 405, ""),
        ("GET", "/v1/nothing-here".into(), String::new(), 404, ""),
    ];
    for (method, path, body, status, param) in &cases {
        let b = (!body.is_empty()).then_some(body.as_str());
        let (s, v) = admin.raw(method, path, b).await;
        let what = format!("{method} {path} {}", &body[..body.len().min(160)]);
        assert_eq!(s, *status, "{what}: {v}");
        let e = &v["error"];
        assert!(
            e["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {v}"
        );
        if !param.is_empty() {
            let named = e["param"].as_str().unwrap_or_default();
            assert!(
                named.contains(param),
                "{what}: param {named:?}, want {param:?}: {v}"
            );
        }
    }
    assert_eq!(
        counts(&admin).await,
        before,
        "a refused write left something behind"
    );

    // seed 003's normalisation: a mapping's target field without its prefix gets it.
    let i = admin
        .create(
            "/v1/integrations",
            json!({"name": "azure sp", "ai_provider_id": "azure-openai",
                   "configurations": {"azure_auth_mode": "entra", "azure_entra_tenant_id": "t", "azure_entra_client_id": "c", "azure_resource_name": "r"},
                   "secret_mappings": [{"target_field": "azure_entra_client_secret", "secret_reference_id": "good"}]}),
        )
        .await;
    assert_eq!(
        i["secret_mappings"][0]["target_field"], "configurations.azure_entra_client_secret",
        "{i}"
    );
    // PUT with allow_all_workspaces purges the list; allowed_workspaces turns it off again.
    let (s, v) = admin
        .put(
            "/v1/secret-references/team-b-only",
            json!({"allow_all_workspaces": true}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (
            v["allow_all_workspaces"].clone(),
            v["allowed_workspaces"].clone()
        ),
        (json!(true), json!([])),
        "{v}"
    );
    let (s, v) = admin
        .put(
            "/v1/secret-references/team-b-only",
            json!({"allowed_workspaces": ["team-b"]}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["allow_all_workspaces"], false, "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_concurrent_creates_of_one_slug_have_one_winner() {
    let up = FakeUpstream::start().await;
    let kw = start(&up).await;
    let admin = Admin::new(&kw, &owner_key());
    let (objects, entries) = counts(&admin).await;
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let a = admin.clone();
            tokio::spawn(async move {
                a.post("/v1/secret-references", reference("contested"))
                    .await
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap().0);
    }
    let won = statuses.iter().filter(|s| **s == 200).count();
    let conflicts = statuses.iter().filter(|s| **s == 409).count();
    assert_eq!((won, conflicts), (1, 49), "{statuses:?}");
    assert_eq!(counts(&admin).await, (objects + 1, entries + 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn no_read_shows_a_credential() {
    let up = FakeUpstream::start().await;
    let kw = start(&up).await;
    let admin = Admin::new(&kw, &owner_key());
    let secrets = [
        secret("hvs.control-mask-vault-token"),
        secret("AKIAMASKTESTKEY00001"),
        secret("aws-secret-control-mask-0001"),
        secret("sk-control-mask-integration"),
        secret("entra-secret-control-mask"),
        secret("sk-control-mask-virtual-key"),
        secret("sk-control-mask-config-key"),
    ];
    let mut seen = Vec::new();
    let mut keep = |v: Value| {
        seen.push(v.to_string());
        v
    };
    keep(
        admin
            .create(
                "/v1/secret-references",
                json!({"name": "vault", "manager_type": "hashicorp_vault", "secret_path": "p",
                       "auth_config": {"vault_addr": "http://127.0.0.1:9", "vault_token": secrets[0]}}),
            )
            .await,
    );
    let aws = keep(
        admin
            .create(
                "/v1/secret-references",
                json!({"name": "aws", "manager_type": "aws_sm", "secret_path": "p",
                       "auth_config": {"aws_auth_type": "accessKey", "aws_access_key_id": secrets[1],
                                       "aws_secret_access_key": secrets[2], "aws_region": "us-east-1"}}),
            )
            .await,
    );
    assert!(
        aws["auth_config"]["masked_aws_access_key_id"].is_string(),
        "{aws}"
    );
    assert!(
        aws["auth_config"]["masked_aws_secret_access_key"].is_string(),
        "{aws}"
    );
    keep(
        admin
            .create(
                "/v1/integrations",
                json!({"name": "openai direct", "ai_provider_id": "openai", "key": secrets[3]}),
            )
            .await,
    );
    keep(
        admin
            .create(
                "/v1/integrations",
                json!({"name": "azure", "ai_provider_id": "azure-openai",
                       "configurations": {"azure_auth_mode": "entra", "azure_entra_tenant_id": "t",
                                          "azure_entra_client_id": "c", "azure_entra_client_secret": secrets[4],
                                          "azure_resource_name": "r"}}),
            )
            .await,
    );
    keep(
        admin
            .create(
                "/v1/virtual-keys",
                json!({"name": "own key", "provider": "openai", "key": secrets[5], "workspace_id": "team-a"}),
            )
            .await,
    );
    keep(
        admin
            .create(
                "/v1/configs",
                json!({"name": "with key", "config": {"provider": "openai", "api_key": secrets[6]}}),
            )
            .await,
    );
    keep(
        admin
            .put(
                "/v1/secret-references/aws",
                json!({"auth_config": {"aws_region": "eu-west-1"}}),
            )
            .await
            .1,
    );
    for path in [
        "/v1/secret-references",
        "/v1/integrations",
        "/v1/virtual-keys",
        "/v1/configs",
    ] {
        let (s, list) = admin.get(path).await;
        assert_eq!(s, 200);
        for item in list["data"].as_array().unwrap() {
            let slug = item["slug"].as_str().unwrap();
            let (s, one) = admin.get(&format!("{path}/{slug}")).await;
            assert_eq!(s, 200, "{path}/{slug}");
            seen.push(one.to_string());
        }
        seen.push(list.to_string());
    }
    seen.push(
        admin
            .get("/v1/audit-logs?page_size=100")
            .await
            .1
            .to_string(),
    );
    let all = seen.join("\n");
    for s in &secrets {
        assert!(!all.contains(s.as_str()), "a read shows {s}");
    }
    assert!(all.contains("masked_vault_token"));
    assert!(all.contains("masked_azure_entra_client_secret"));
    // The masks are the value's first characters, not the value.
    assert!(
        all.contains("\"masked_key\""),
        "virtual key and integration keys are masked"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn file_objects_are_listed_read_only() {
    let up = FakeUpstream::start().await;
    let kw = start(&up).await;
    let admin = Admin::new(&kw, &owner_key());
    let (s, list) = admin.get("/v1/virtual-keys").await;
    assert_eq!(s, 200);
    let file = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["slug"] == "file-vk")
        .unwrap_or_else(|| panic!("file-vk not listed: {list}"))
        .clone();
    assert_eq!(
        (file["source"].clone(), file["read_only"].clone()),
        (json!("file"), json!(true))
    );
    let (s, v) = admin
        .put("/v1/virtual-keys/file-vk", json!({"note": "x"}))
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (403, Some("read_only")),
        "{v}"
    );
    let (s, _) = admin.delete("/v1/virtual-keys/file-vk").await;
    assert_eq!(s, 403);
    let (s, one) = admin.get("/v1/secret-references/file-ref").await;
    assert_eq!(s, 200, "{one}");
    assert!(
        !one.to_string().contains("hvs.control-input-file-token"),
        "{one}"
    );
}
