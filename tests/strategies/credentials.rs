//! Every target carries its own credential, whatever its source: an Entra token beside a key
//! read from Vault on a front-door route, two virtual keys of one workspace in a Portkey config,
//! an Azure key beside an Anthropic key in the config JSON. Each fake must receive its own
//! credential in its provider's header style and nothing of another target's or the client's.

use serde_json::json;

use super::common::identity::FakeEntra;
use super::common::secrets::FakeVault;
use super::common::{assert_no_client_credentials, secret, FakeUpstream, Keyway, Reply};
use super::{post, toml, BODY, ERR_503, LAST_USED, OK_A, OK_B};

const TENANT: &str = "tenant-strat-creds";
const CLIENT: &str = "app-strat-creds";
const COGNITIVE: &str = "https://cognitiveservices.azure.com/.default";

/// A route falling back from Azure OpenAI with an Entra token to OpenAI with a Vault key.
fn entra_then_vault_route(
    entra: &FakeEntra,
    sp_secret: &str,
    vault: &FakeVault,
    vault_token: &str,
    a: &FakeUpstream,
    b: &FakeUpstream,
) -> String {
    format!(
        r#"
[upstream]
retry_backoff_ms = 10

[azure]
authority_host = "{authority}"

[[secret_references]]
name = "openai in vault"
slug = "openai-vault"
manager_type = "hashicorp_vault"
secret_path = "llm/openai"
secret_key = "api_key"
[secret_references.auth_config]
vault_addr = "{vault_addr}"
vault_token = "{vault_token}"

[credentials.azure-sp]
type = "entra"
tenant_id = "{TENANT}"
client_id = "{CLIENT}"
client_secret = "{sp_secret}"

[credentials.openai]
type = "api_key"
secret_mappings = [{{ target_field = "key", secret_reference_id = "openai-vault" }}]

[[routes]]
name = "pool"
path_prefix = "/openai/"
provider = "azure-openai"
strategy = {{ mode = "fallback" }}

[[routes.targets]]
upstream = "{a}"
credential = "azure-sp"

[[routes.targets]]
provider = "openai"
upstream = "{b}"
credential = "openai"
"#,
        authority = entra.authority(),
        vault_addr = vault.addr(),
        a = a.base(),
        b = b.base(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_route_falls_back_from_an_entra_token_to_a_vault_key() {
    let entra = FakeEntra::start(TENANT).await;
    let sp_secret = secret("client-secret-strat-entra-sp");
    entra.add_secret(CLIENT, &sp_secret);
    let vault = FakeVault::start().await;
    let vault_token = secret("hvs.strat-creds-vault-token");
    vault.add_token(&vault_token);
    let oai = secret("sk-strat-creds-openai-from-vault");
    vault.set(
        "secret",
        "llm/openai",
        json!({"api_key": oai, "org": "org-x"}),
    );
    let a = FakeUpstream::with(|_| Reply::status(503, ERR_503)).await;
    let b = FakeUpstream::with(|_| Reply::ok_json(OK_B)).await;
    let cfg = entra_then_vault_route(&entra, &sp_secret, &vault, &vault_token, &a, &b);
    let kw = Keyway::start(&cfg).await;

    let path = "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21";
    let client = [
        ("api-key", "client-secret-app-azure-key"),
        ("authorization", "Bearer client-secret-app-bearer"),
    ];
    let r = post(&kw, path, BODY, &client).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), OK_B);

    // Exactly one token for the cognitive-services scope, with the service principal's secret.
    let reqs = entra.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    reqs[0].assert_client_secret(TENANT, CLIENT, &sp_secret, COGNITIVE);
    let token = entra.current_token(CLIENT, COGNITIVE).unwrap();
    assert_eq!(vault.reads("secret", "llm/openai"), 1);
    assert_eq!(vault.denied(), 0);

    let ra = a.only();
    let entra_bearer = format!("Bearer {token}");
    assert_eq!(ra.uri, path);
    assert_eq!(ra.header("authorization"), Some(entra_bearer.as_str()));
    assert_eq!(ra.header("api-key"), None);
    assert_no_client_credentials(&ra, &entra_bearer);
    assert_eq!(ra.body, BODY.as_bytes());

    let rb = b.only();
    let key_bearer = format!("Bearer {oai}");
    assert!(ra.at <= rb.at, "target 0 is tried first");
    assert_eq!(rb.uri, path);
    assert_eq!(rb.header("authorization"), Some(key_bearer.as_str()));
    assert_eq!(rb.header("api-key"), None);
    assert_no_client_credentials(&rb, &key_bearer);
    assert_eq!(rb.body, BODY.as_bytes());

    // Neither saw the other's credential, nor the secrets that obtained them, anywhere.
    for (r, others) in [
        (
            &ra,
            [oai.as_str(), vault_token.as_str(), sp_secret.as_str()],
        ),
        (
            &rb,
            [token.as_str(), vault_token.as_str(), sp_secret.as_str()],
        ),
    ] {
        for (name, v) in &r.headers {
            let v = v.to_str().unwrap_or("");
            for o in others {
                assert!(!v.contains(o), "{name} carried another target's secret");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn each_virtual_key_of_a_fallback_reaches_its_own_target_only() {
    let (ka, kb, kc) = (
        secret("sk-strat-vk-upstream-a"),
        secret("sk-strat-vk-upstream-b"),
        secret("sk-strat-vk-upstream-other"),
    );
    let gw = secret("kw-strat-vk-gateway-key-team-a");
    let a = FakeUpstream::with(|_| Reply::Json {
        status: 429,
        body: r#"{"error":{"message":"slow down"}}"#.into(),
        headers: vec![],
    })
    .await;
    let b = FakeUpstream::with(|_| Reply::ok_json(OK_B)).await;
    let rest = format!(
        r#"
[auth]
mode = "enforced"
[workspaces.team-a]
[workspaces.team-b]

[credentials.openai-a]
type = "api_key"
key = "{ka}"
[credentials.openai-b]
type = "api_key"
key = "{kb}"
[credentials.openai-other]
type = "api_key"
key = "{kc}"

[virtual_keys.vk-a]
workspace = "team-a"
provider = "openai"
credential = "openai-a"
[virtual_keys.vk-b]
workspace = "team-a"
provider = "openai"
credential = "openai-b"
[virtual_keys.vk-other]
workspace = "team-b"
provider = "openai"
credential = "openai-other"

[[api_keys]]
name = "a"
hash = "{}"
workspace = "team-a"
"#,
        keyway::auth::keys::hash_line(&gw)
    );
    let kw = Keyway::start(&toml("", &rest)).await;
    let vk = |id: &str, fake: &FakeUpstream| json!({"virtual_key": id, "custom_host": format!("{}/v1", fake.base())});
    let fallback = |second: &str| {
        json!({"strategy": {"mode": "fallback"}, "targets": [vk("vk-a", &a), vk(second, &b)]})
            .to_string()
    };

    let cfg = fallback("vk-b");
    let headers = [
        ("x-portkey-api-key", gw.as_str()),
        ("x-portkey-config", &cfg),
    ];
    let r = post(&kw, "/v1/chat/completions", BODY, &headers).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), OK_B);
    assert_eq!(r.header(LAST_USED), Some("config.targets[1]"));
    let (ra, rb) = (a.only(), b.only());
    assert!(ra.at <= rb.at, "target 0 is tried first");
    for (r, key, other) in [(&ra, &ka, &kb), (&rb, &kb, &ka)] {
        let bearer = format!("Bearer {key}");
        assert_eq!(r.uri, "/v1/chat/completions");
        assert_eq!(r.header("authorization"), Some(bearer.as_str()), "{r:?}");
        assert_no_client_credentials(r, &bearer);
        assert_eq!(r.body, BODY.as_bytes());
        for (name, v) in &r.headers {
            let v = v.to_str().unwrap_or("");
            assert!(!v.contains(other.as_str()), "{name}: the other key leaked");
            assert!(!v.contains(gw.as_str()), "{name}: the gateway key leaked");
            assert!(!v.contains(kc.as_str()), "{name}: team-b's key leaked");
        }
    }

    // A second target naming another workspace's virtual key refuses the whole config.
    let cfg = fallback("vk-other");
    let headers = [
        ("x-portkey-api-key", gw.as_str()),
        ("x-portkey-config", &cfg),
    ];
    let r = post(&kw, "/v1/chat/completions", BODY, &headers).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(!r.text().contains(&kc) && !r.text().contains(&ka));
    assert!(a.requests().is_empty(), "nothing may be sent to target 0");
    assert!(b.requests().is_empty(), "nothing may be sent to target 1");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_azure_key_and_an_anthropic_key_each_in_their_providers_header() {
    let (kaz, kant) = (
        secret("az-strat-creds-azure-key"),
        secret("sk-ant-strat-creds-anthropic"),
    );
    let a = FakeUpstream::with(|_| Reply::status(503, ERR_503)).await;
    let b = FakeUpstream::with(|_| Reply::ok_json(OK_A)).await;
    let kw = Keyway::start(&toml("", "")).await;
    let cfg = json!({
        "strategy": {"mode": "fallback"},
        "targets": [
            {
                "provider": "azure-openai",
                "api_key": kaz,
                "custom_host": a.base(),
                "resource_name": "res-east",
                "deployment_id": "gpt-4o",
                "api_version": "2024-10-21",
            },
            {
                "provider": "anthropic",
                "api_key": kant,
                "custom_host": format!("{}/v1", b.base()),
            },
        ],
    })
    .to_string();
    let body = r#"{"model":"claude-sonnet-4-5","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}"#;
    let headers = [
        ("x-portkey-config", cfg.as_str()),
        ("x-api-key", "client-secret-app-anthropic"),
        ("api-key", "client-secret-app-azure"),
    ];
    let r = post(&kw, "/v1/messages", body, &headers).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), OK_A);
    assert_eq!(r.header(LAST_USED), Some("config.targets[1]"));

    let ra = a.only();
    assert_eq!(
        ra.uri,
        "/openai/deployments/gpt-4o/messages?api-version=2024-10-21"
    );
    assert_eq!(ra.header("api-key"), Some(kaz.as_str()));
    assert_eq!(ra.header("authorization"), None);
    assert_eq!(ra.header("x-api-key"), None);
    assert_eq!(ra.header("anthropic-version"), None);
    assert_no_client_credentials(&ra, &kaz);
    assert_eq!(ra.body, body.as_bytes());

    let rb = b.only();
    assert!(ra.at <= rb.at, "target 0 is tried first");
    assert_eq!(rb.uri, "/v1/messages");
    assert_eq!(rb.header("x-api-key"), Some(kant.as_str()));
    assert_eq!(rb.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(rb.header("authorization"), None);
    assert_eq!(rb.header("api-key"), None);
    assert_no_client_credentials(&rb, &kant);
    assert_eq!(rb.body, body.as_bytes());
}
