//! Secret managers through a real keyway (issue 5): credentials, virtual keys and provider
//! defaults whose keys live in Azure Key Vault or HashiCorp Vault. Each test asserts the exact
//! request keyway sent to the manager (path, query, headers, login body) and what the provider
//! upstream received; the fakes check requests the way the real services do. Then the cache
//! policy (TTL, single flight, stale values through an outage, max_stale), workspace
//! restrictions, the refetch after an upstream 401, masking in `--check-config`, config errors
//! that name the reference and field, and the metrics. Last, the fakes on their own.

mod common;

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::identity::{EntraHandle, FakeEntra};
use common::secrets::{FakeKeyVault, FakeVault, Outage, VAULT_SCOPE};
use common::{
    assert_no_client_credentials, free_port, log_dir, secret, FakeUpstream, Keyway, Recorded, Reply,
};
use serde_json::{json, Value};

const TENANT: &str = "tenant-secrets";
const KV_READER: &str = "kv-reader-app";
const COGNITIVE: &str = "https://cognitiveservices.azure.com/.default";
const CHAT: &str = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;

// ---------------------------------------------------------------------------------------------
// Config and request helpers.

fn quoted(v: &str) -> String {
    toml::Value::String(v.to_owned()).to_string()
}

/// A `[[secret_references]]` block; `extra` goes before the auth table (secret_key, workspaces),
/// `auth` into `[secret_references.auth_config]`, last in the block so callers may append raw
/// auth lines.
fn reference(slug: &str, manager: &str, path: &str, extra: &str, auth: &[(&str, &str)]) -> String {
    let mut s = format!(
        "\n[[secret_references]]\nname = \"{slug} reference\"\nslug = \"{slug}\"\nmanager_type = \"{manager}\"\nsecret_path = \"{path}\"\n{extra}\n[secret_references.auth_config]\n"
    );
    for (k, v) in auth {
        s.push_str(&format!("{k} = {}\n", quoted(v)));
    }
    s
}

/// A Key Vault read with the entra client `KV_READER`.
fn kv_reference(
    slug: &str,
    path: &str,
    kv: &FakeKeyVault,
    reader_secret: &str,
    extra: &str,
) -> String {
    let url = kv.base();
    reference(
        slug,
        "azure_kv",
        path,
        extra,
        &[
            ("azure_vault_url", &url),
            ("azure_auth_mode", "entra"),
            ("azure_entra_tenant_id", TENANT),
            ("azure_entra_client_id", KV_READER),
            ("azure_entra_client_secret", reader_secret),
        ],
    )
}

fn vault_token_reference(
    slug: &str,
    path: &str,
    vault: &FakeVault,
    token: &str,
    extra: &str,
) -> String {
    let addr = vault.addr();
    reference(
        slug,
        "hashicorp_vault",
        path,
        extra,
        &[("vault_addr", &addr), ("vault_token", token)],
    )
}

fn key_credential(name: &str, slug: &str) -> String {
    format!(
        "\n[credentials.{name}]\ntype = \"api_key\"\nsecret_mappings = [{{ target_field = \"key\", secret_reference_id = \"{slug}\" }}]\n"
    )
}

/// An OpenAI route under `/{prefix}` (stripped) with credential `cred`.
fn openai_route(prefix: &str, cred: &str, up: &FakeUpstream) -> String {
    format!(
        "\n[[routes]]\nname = \"{prefix}\"\npath_prefix = \"/{prefix}\"\nprovider = \"openai\"\nupstream = \"{}\"\nstrip_prefix = true\ncredential = \"{cred}\"\n",
        up.base()
    )
}

fn azure(entra: &FakeEntra) -> String {
    format!("[azure]\nauthority_host = \"{}\"\n", entra.authority())
}

struct Answer {
    status: u16,
    json: Value,
    text: String,
    content_type: Option<String>,
}

async fn send(kw: &Keyway, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut r = reqwest::Client::new()
        .post(kw.url(path))
        .body(body.to_owned());
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = resp.text().await.unwrap();
    Answer {
        status,
        json: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
        content_type,
    }
}

/// A chat completion through the OpenAI route under `/{prefix}`.
async fn chat(kw: &Keyway, prefix: &str) -> Answer {
    send(kw, &format!("/{prefix}/v1/chat/completions"), &[], CHAT).await
}

fn bearer(r: &Recorded) -> Option<String> {
    r.header("authorization")?
        .strip_prefix("Bearer ")
        .map(str::to_owned)
}

/// The value of one series (`name{labels}` exactly as Prometheus prints it), if present.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .map(|v| v.trim().parse().unwrap())
    })
}

fn fetches(m: &str, manager: &str, outcome: &str) -> f64 {
    metric(
        m,
        &format!(r#"keyway_secret_fetches_total{{manager="{manager}",outcome="{outcome}"}}"#),
    )
    .unwrap_or(0.0)
}

fn assert_log_clean(kw: &Keyway, secrets: &[&str]) {
    let log = kw.log_text();
    for s in secrets {
        assert!(
            !log.contains(s),
            "a secret reached keyway's log ({} chars)",
            s.len()
        );
    }
}

/// keyway's 503 for a reference it cannot read: JSON naming the slug.
fn assert_unavailable(a: &Answer, slug: &str) {
    assert_eq!(a.status, 503, "{}", a.text);
    assert_eq!(a.content_type.as_deref(), Some("application/json"));
    let e = &a.json["error"];
    assert_eq!(e["code"], "secret_unavailable", "{}", a.text);
    assert_eq!(e["type"], "secret_unavailable", "{}", a.text);
    assert!(e.get("param").is_some_and(Value::is_null), "{}", a.text);
    let msg = e["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!("secret reference '{slug}' is unavailable")),
        "{msg}"
    );
}

/// A Key Vault behind a FakeEntra that knows `KV_READER` (with a fresh registered secret).
struct Kv {
    entra: FakeEntra,
    kv: FakeKeyVault,
    reader_secret: String,
}

async fn key_vault(label: &str) -> Kv {
    let entra = FakeEntra::start(TENANT).await;
    let reader_secret = secret(&format!("kv-reader-secret-{label}"));
    entra.add_secret(KV_READER, &reader_secret);
    let kv = FakeKeyVault::start(&entra, TENANT).await;
    kv.allow_reader(KV_READER);
    Kv {
        entra,
        kv,
        reader_secret,
    }
}

impl Kv {
    fn reference(&self, slug: &str, path: &str, extra: &str) -> String {
        kv_reference(slug, path, &self.kv, &self.reader_secret, extra)
    }

    /// The one Entra request keyway made: the vault scope, for `KV_READER`.
    fn assert_one_vault_token_request(&self) {
        let reqs = self.entra.requests();
        assert_eq!(reqs.len(), 1, "{reqs:?}");
        assert_vault_token_request(&reqs[0], &self.reader_secret);
    }
}

fn assert_vault_token_request(t: &common::identity::TokenRequest, reader_secret: &str) {
    assert_eq!(
        (t.method.as_str(), t.path.as_str()),
        ("POST", format!("/{TENANT}/oauth2/v2.0/token").as_str())
    );
    assert_eq!(
        t.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    let mut keys = t.form.keys();
    keys.sort();
    assert_eq!(keys, ["client_id", "client_secret", "grant_type", "scope"]);
    assert_eq!(t.form.get("grant_type"), Some("client_credentials"));
    assert_eq!(t.form.get("client_id"), Some(KV_READER));
    assert_eq!(t.form.get("client_secret"), Some(reader_secret));
    assert_eq!(t.form.get("scope"), Some(VAULT_SCOPE));
}

/// The exact Key Vault read: `GET /secrets/{name_and_version}?api-version=7.4` with the current
/// vault-scope token of `KV_READER`.
fn assert_kv_read(r: &Recorded, entra: &EntraHandle, name_and_version: &str) {
    assert_eq!(r.method, "GET");
    assert_eq!(
        r.uri,
        format!("/secrets/{name_and_version}?api-version=7.4")
    );
    let token = entra.current_token(KV_READER, VAULT_SCOPE).unwrap();
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {token}").as_str())
    );
    assert!(r.body.is_empty());
}

/// The exact Vault read.
fn assert_vault_read(r: &Recorded, uri: &str, token: &str, namespace: Option<&str>) {
    assert_eq!((r.method.as_str(), r.uri.as_str()), ("GET", uri));
    assert_eq!(r.header("x-vault-token"), Some(token));
    assert_eq!(r.header("x-vault-namespace"), namespace);
}

/// An upstream that answers 200 only to `Authorization: Bearer <the current value of accepted>`,
/// else OpenAI's 401.
async fn strict_upstream(accepted: Arc<Mutex<String>>) -> FakeUpstream {
    FakeUpstream::with(move |r| {
        let ok = bearer(r).is_some_and(|b| *accepted.lock().unwrap() == b);
        if ok {
            Reply::ok_json(common::CHAT_RESPONSE)
        } else {
            Reply::Json {
                status: 401,
                body: r#"{"error":{"message":"Incorrect API key provided.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#.into(),
                headers: vec![],
            }
        }
    })
    .await
}

/// `keyway --check-config --config FILE`: (exit code, stdout, stderr).
fn check_config(cfg: &str, env: &[(&str, &str)]) -> (i32, String, String) {
    let path = log_dir().join(format!("secrets-check-{}.toml", free_port()));
    std::fs::write(&path, cfg).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_keyway"))
        .args(["--check-config", "--config", path.to_str().unwrap()])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The config error `--check-config` prints (exit non-zero); never any of `secrets`.
fn config_error(cfg: &str, secrets: &[&str]) -> String {
    let (code, out, err) = check_config(cfg, &[]);
    let all = format!("{out}{err}");
    assert_ne!(code, 0, "the config was accepted:\n{all}");
    for s in secrets {
        assert!(!all.contains(s), "a secret is in the error:\n{all}");
    }
    all
}

/// The JSON object `--check-config` printed for reference `slug`, one line per reference (a
/// label such as `secret_reference ` may precede the object).
fn shown_reference(out: &str, slug: &str) -> Value {
    out.lines()
        .filter_map(|l| l.find('{').map(|i| &l[i..]))
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .find(|v| v.get("slug").and_then(Value::as_str) == Some(slug))
        .unwrap_or_else(|| panic!("no JSON line for reference {slug} in:\n{out}"))
}

fn find_key<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    match v {
        Value::Object(m) => m
            .get(key)
            .or_else(|| m.values().find_map(|x| find_key(x, key))),
        Value::Array(a) => a.iter().find_map(|x| find_key(x, key)),
        _ => None,
    }
}

async fn wait_until<F, Fut>(what: &str, within: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !cond().await {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn readyz(kw: &Keyway) -> u16 {
    reqwest::get(format!("http://127.0.0.1:{}/readyz", kw.metrics_port))
        .await
        .unwrap()
        .status()
        .as_u16()
}

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
    let t = &reqs[1];
    assert_eq!(t.path, format!("/{TENANT}/oauth2/v2.0/token"));
    let mut keys = t.form.keys();
    keys.sort();
    assert_eq!(keys, ["client_id", "client_secret", "grant_type", "scope"]);
    assert_eq!(t.form.get("client_id"), Some(APP));
    assert_eq!(t.form.get("client_secret"), Some(sp_secret.as_str()));
    assert_eq!(t.form.get("scope"), Some(COGNITIVE));
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
    // that reads it either: one broken reference must not hold the whole gateway unready.
    assert_eq!(
        readyz(&kw).await,
        200,
        "prefetch = false, yet /readyz waits on the Key Vault reader's token"
    );
}

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

// ---------------------------------------------------------------------------------------------
// Masking in `--check-config`: `masked_<field>` = first 4 characters + "****" (12+ characters),
// never the value.

/// A valid reference (slug `masked-ref`) of `manager` whose auth_config is `auth` (raw TOML).
fn masked_config(manager: &str, auth: &str) -> String {
    format!(
        "[[secret_references]]\nname = \"Masked\"\nslug = \"masked-ref\"\nmanager_type = \"{manager}\"\nsecret_path = \"prod/openai\"\n[secret_references.auth_config]\n{auth}\n"
    )
}

const AWS_KEYS: &str = "aws_auth_type = \"accessKey\"\naws_region = \"us-east-1\"\naws_access_key_id = \"AKIAKEYWAYSECRETS001\"\naws_secret_access_key = \"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\"\n";
const AWS_ROLE: &str = "aws_auth_type = \"assumedRole\"\naws_region = \"us-east-1\"\naws_role_arn = \"arn:aws:iam::123456789012:role/keyway-secrets\"\naws_external_id = \"external-id-for-keyway-42\"\n";
const KV_ENTRA: &str = "azure_vault_url = \"https://myvault.vault.azure.net\"\nazure_auth_mode = \"entra\"\nazure_entra_tenant_id = \"t\"\nazure_entra_client_id = \"c\"\nazure_entra_client_secret = \"kv-entra-client-secret-masked\"\n";
const VAULT_TOKEN: &str =
    "vault_addr = \"http://127.0.0.1:1\"\nvault_token = \"hvs.masked-vault-token-value\"\n";
const VAULT_APPROLE: &str = "vault_addr = \"http://127.0.0.1:1\"\nvault_role_id = \"role-masked\"\nvault_secret_id = \"approle-secret-id-masked-value\"\n";

fn assert_masked(manager: &str, auth: &str, field: &str, value: &str, env: &[(&str, &str)]) {
    secret(value);
    let (code, out, err) = check_config(&masked_config(manager, auth), env);
    assert_eq!(code, 0, "{out}{err}");
    let all = format!("{out}{err}");
    assert!(
        !all.contains(value),
        "the whole {field} was printed:\n{all}"
    );
    let shown = shown_reference(&out, "masked-ref");
    let expected = match value.chars().count() {
        n if n >= 12 => format!("{}****", value.chars().take(4).collect::<String>()),
        _ => "****".to_owned(),
    };
    assert_eq!(
        find_key(&shown, &format!("masked_{field}")),
        Some(&json!(expected)),
        "{shown}"
    );
    assert!(
        find_key(&shown, field).is_none(),
        "{field} shown unmasked: {shown}"
    );
    assert_eq!(shown["manager_type"], manager, "{shown}");
    assert_eq!(shown["secret_path"], "prod/openai", "{shown}");
}

#[test]
fn check_config_masks_aws_secret_access_key() {
    assert_masked(
        "aws_sm",
        AWS_KEYS,
        "aws_secret_access_key",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        &[],
    );
}

#[test]
fn check_config_masks_aws_access_key_id() {
    assert_masked(
        "aws_sm",
        AWS_KEYS,
        "aws_access_key_id",
        "AKIAKEYWAYSECRETS001",
        &[],
    );
}

#[test]
fn check_config_masks_aws_role_arn() {
    assert_masked(
        "aws_sm",
        AWS_ROLE,
        "aws_role_arn",
        "arn:aws:iam::123456789012:role/keyway-secrets",
        &[],
    );
}

#[test]
fn check_config_masks_aws_external_id() {
    assert_masked(
        "aws_sm",
        AWS_ROLE,
        "aws_external_id",
        "external-id-for-keyway-42",
        &[],
    );
}

#[test]
fn check_config_masks_azure_entra_client_secret() {
    assert_masked(
        "azure_kv",
        KV_ENTRA,
        "azure_entra_client_secret",
        "kv-entra-client-secret-masked",
        &[],
    );
}

#[test]
fn check_config_masks_vault_token() {
    assert_masked(
        "hashicorp_vault",
        VAULT_TOKEN,
        "vault_token",
        "hvs.masked-vault-token-value",
        &[],
    );
}

#[test]
fn check_config_masks_vault_secret_id() {
    assert_masked(
        "hashicorp_vault",
        VAULT_APPROLE,
        "vault_secret_id",
        "approle-secret-id-masked-value",
        &[],
    );
}

#[test]
fn check_config_masks_short_values_entirely() {
    let auth = "vault_addr = \"http://127.0.0.1:1\"\nvault_token = \"hvs.short\"\n";
    assert_masked("hashicorp_vault", auth, "vault_token", "hvs.short", &[]);
}

#[test]
fn check_config_masks_values_read_from_the_environment() {
    let auth =
        "vault_addr = \"http://127.0.0.1:1\"\nvault_token_env = \"KW_TEST_SECRETS_VAULT_TOKEN\"\n";
    let value = "hvs.vault-token-from-the-env";
    assert_masked(
        "hashicorp_vault",
        auth,
        "vault_token",
        value,
        &[("KW_TEST_SECRETS_VAULT_TOKEN", value)],
    );
}

#[test]
fn check_config_shows_every_reference_and_makes_slugs_from_names() {
    let cfg = format!(
        "[workspaces.team-a]\n[[secret_references]]\nname = \"OpenAI Production Key\"\ndescription = \"the prod key\"\nmanager_type = \"hashicorp_vault\"\nsecret_path = \"prod/openai\"\nsecret_key = \"api_key\"\nallowed_workspaces = [\"team-a\"]\ntags = {{ team = \"ml\" }}\n[secret_references.auth_config]\n{VAULT_TOKEN}\n{}{}",
        masked_config("azure_kv", KV_ENTRA),
        key_credential("openai", "openai-production-key")
    );
    secret("hvs.masked-vault-token-value");
    secret("kv-entra-client-secret-masked");
    let (code, out, err) = check_config(&cfg, &[]);
    assert_eq!(code, 0, "{out}{err}");
    let shown = shown_reference(&out, "openai-production-key");
    assert_eq!(shown["name"], "OpenAI Production Key", "{shown}");
    assert_eq!(shown["secret_key"], "api_key", "{shown}");
    assert_eq!(
        find_key(&shown, "allowed_workspaces"),
        Some(&json!(["team-a"])),
        "{shown}"
    );
    assert_eq!(
        find_key(&shown, "masked_vault_token"),
        Some(&json!("hvs.****")),
        "{shown}"
    );
    assert_eq!(
        find_key(&shown, "vault_addr"),
        Some(&json!("http://127.0.0.1:1")),
        "{shown}"
    );
    let kv = shown_reference(&out, "masked-ref");
    assert_eq!(
        find_key(&kv, "azure_entra_client_id"),
        Some(&json!("c")),
        "{kv}"
    );
    assert!(
        !out.contains("hvs.masked-vault-token-value")
            && !out.contains("kv-entra-client-secret-masked")
    );
}

#[test]
fn check_config_accepts_every_spelling_of_the_entra_secret_target() {
    let vault = "vault_addr = \"http://127.0.0.1:1\"\nvault_token = \"hvs.spelling-token-12345\"\n";
    let mut cfg = masked_config("hashicorp_vault", vault);
    for (name, target) in [
        ("a", "azure_entra_client_secret"),
        ("b", "configurations.azure_entra_client_secret"),
        ("c", "client_secret"),
    ] {
        cfg.push_str(&format!(
            "\n[credentials.{name}]\ntype = \"entra\"\ntenant_id = \"t\"\nclient_id = \"c\"\nsecret_mappings = [{{ target_field = \"{target}\", secret_reference_id = \"masked-ref\" }}]\n"
        ));
    }
    let (code, out, err) = check_config(&cfg, &[]);
    assert_eq!(code, 0, "{out}{err}");
}

// ---------------------------------------------------------------------------------------------
// Config errors name the reference (`secret_references[i] (slug)`) and the field.

const OK_VAULT_AUTH: &str =
    "vault_addr = \"http://127.0.0.1:1\"\nvault_token = \"hvs.config-error-token-1\"\n";

/// A vault reference with `lines` before its auth table.
fn vault_ref(slug_line: &str, lines: &str) -> String {
    format!(
        "\n[[secret_references]]\nname = \"a reference\"\n{slug_line}\nmanager_type = \"hashicorp_vault\"\nsecret_path = \"p\"\n{lines}\n[secret_references.auth_config]\n{OK_VAULT_AUTH}"
    )
}

fn assert_error_names(cfg: &str, needles: &[&str]) {
    let err = config_error(cfg, &["hvs.config-error-token-1"]);
    for n in needles {
        assert!(err.contains(n), "{n:?} missing in:\n{err}");
    }
}

#[test]
fn config_error_bad_slug() {
    let cfg = vault_ref("slug = \"bad slug!\"", "");
    assert_error_names(&cfg, &["secret_references[0]", ".slug", "^[a-zA-Z0-9_-]+$"]);
}

#[test]
fn config_error_allow_all_workspaces_with_allowed_workspaces() {
    let cfg = format!(
        "[workspaces.team-a]\n{}",
        vault_ref(
            "slug = \"both-ref\"",
            "allow_all_workspaces = true\nallowed_workspaces = [\"team-a\"]"
        )
    );
    assert_error_names(&cfg, &["secret_references[0] (both-ref).", "allow"]);
    let err = config_error(&cfg, &[]);
    assert!(
        err.contains("allowed_workspaces") || err.contains("allow_all_workspaces"),
        "{err}"
    );
}

#[test]
fn config_error_restricted_without_workspaces() {
    let cfg = vault_ref("slug = \"closed-ref\"", "allow_all_workspaces = false");
    assert_error_names(
        &cfg,
        &["secret_references[0] (closed-ref).", "allowed_workspaces"],
    );
}

#[test]
fn config_error_unknown_allowed_workspace() {
    let cfg = format!(
        "[workspaces.team-a]\n{}",
        vault_ref(
            "slug = \"ghost-ref\"",
            "allowed_workspaces = [\"ghost-team\"]"
        )
    );
    assert_error_names(
        &cfg,
        &[
            "secret_references[0] (ghost-ref).allowed_workspaces",
            "ghost-team",
        ],
    );
}

#[test]
fn config_error_name_too_long() {
    let cfg = vault_ref("slug = \"long-ref\"", "").replace("a reference", &"n".repeat(256));
    assert_error_names(&cfg, &["secret_references[0] (long-ref).name", "255"]);
    // 255 is fine.
    let ok = vault_ref("slug = \"long-ref\"", "").replace("a reference", &"n".repeat(255));
    let (code, out, err) = check_config(&ok, &[]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn config_error_description_too_long() {
    let cfg = vault_ref(
        "slug = \"desc-ref\"",
        &format!("description = \"{}\"", "d".repeat(1025)),
    );
    assert_error_names(&cfg, &["secret_references[0] (desc-ref).description"]);
}

#[test]
fn config_error_unknown_manager_type() {
    let cfg = vault_ref("slug = \"gcp-ref\"", "").replace("hashicorp_vault", "gcp_sm");
    assert_error_names(
        &cfg,
        &["secret_references[0] (gcp-ref).manager_type", "gcp_sm"],
    );
}

#[test]
fn config_error_missing_aws_region_for_access_key() {
    // The second reference, so the index is checked too.
    let cfg = format!(
        "{}\n[[secret_references]]\nname = \"aws\"\nslug = \"aws-ref\"\nmanager_type = \"aws_sm\"\nsecret_path = \"prod/openai\"\n[secret_references.auth_config]\naws_auth_type = \"accessKey\"\naws_access_key_id = \"AKIAKEYWAYSECRETS001\"\naws_secret_access_key = \"aws-secret-in-config-error-1\"\n",
        vault_ref("slug = \"first-ref\"", "")
    );
    assert_error_names(
        &cfg,
        &["secret_references[1] (aws-ref).auth_config.aws_region"],
    );
    let err = config_error(
        &cfg,
        &["aws-secret-in-config-error-1", "AKIAKEYWAYSECRETS001"],
    );
    assert!(!err.contains("first-ref"), "{err}");
}

#[test]
fn config_error_duplicate_slug() {
    let cfg = format!(
        "{}{}",
        vault_ref("slug = \"dup-ref\"", ""),
        vault_ref("slug = \"dup-ref\"", "")
    );
    assert_error_names(&cfg, &["secret_references[1] (dup-ref).slug"]);
}

#[test]
fn config_error_duplicate_target_field() {
    let cfg = format!(
        "{}\n[credentials.openai]\ntype = \"api_key\"\nsecret_mappings = [{{ target_field = \"key\", secret_reference_id = \"one-ref\" }}, {{ target_field = \"key\", secret_reference_id = \"one-ref\" }}]\n",
        vault_ref("slug = \"one-ref\"", "")
    );
    assert_error_names(
        &cfg,
        &["credentials.openai", "secret_mappings", "target_field"],
    );
}

#[test]
fn config_error_mapping_to_an_unknown_slug() {
    let cfg = format!(
        "{}{}",
        vault_ref("slug = \"one-ref\"", ""),
        key_credential("openai", "nope-slug")
    );
    assert_error_names(
        &cfg,
        &["credentials.openai", "secret_mappings", "nope-slug"],
    );
}

#[test]
fn config_error_auth_field_of_another_manager() {
    let cfg = vault_ref("slug = \"mixed-ref\"", "") + "aws_region = \"us-east-1\"\n";
    assert_error_names(
        &cfg,
        &["secret_references[0] (mixed-ref).auth_config.aws_region"],
    );
}

// ---------------------------------------------------------------------------------------------
// Metrics.

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_fetches_by_manager_and_outcome() {
    let vault = FakeVault::start().await;
    let token = secret("hvs.static-token-metrics");
    vault.add_token(&token);
    let value = secret("sk-openai-metrics-value-ok");
    vault.set("secret", "m/ok", json!({"api_key": value}));
    vault.set(
        "secret",
        "m/multi",
        json!({"a": "metrics-multi-a-1", "b": "metrics-multi-b-2"}),
    );
    vault.set(
        "secret",
        "m/down",
        json!({"api_key": "sk-metrics-down-value"}),
    );
    let up = FakeUpstream::start().await;
    let k = "secret_key = \"api_key\"";
    let mut cfg = "[secrets]\nprefetch = false\nfetch_timeout_ms = 2000\n".to_owned();
    for (slug, path, tok, key) in [
        ("ok-ref", "m/ok", token.as_str(), k),
        ("missing-ref", "m/missing", token.as_str(), k),
        ("denied-ref", "m/ok", "hvs.not-a-valid-token-metrics", k),
        ("malformed-ref", "m/multi", token.as_str(), ""),
        ("down-ref", "m/down", token.as_str(), k),
    ] {
        let short = slug.trim_end_matches("-ref");
        cfg.push_str(&vault_token_reference(slug, path, &vault, tok, key));
        cfg.push_str(&key_credential(short, slug));
        cfg.push_str(&openai_route(short, short, &up));
    }
    let kw = Keyway::start(&cfg).await;
    assert_eq!(chat(&kw, "ok").await.status, 200);
    for (route, slug) in [
        ("missing", "missing-ref"),
        ("denied", "denied-ref"),
        ("malformed", "malformed-ref"),
    ] {
        assert_unavailable(&chat(&kw, route).await, slug);
    }
    for _ in 0..3 {
        assert_eq!(chat(&kw, "ok").await.status, 200);
    }
    vault.set_outage(Outage::Refused).await;
    assert_unavailable(&chat(&kw, "down").await, "down-ref");

    let m = kw.metrics().await;
    let v = "hashicorp_vault";
    assert_eq!(fetches(&m, v, "ok"), 1.0, "{m}");
    assert_eq!(fetches(&m, v, "not_found"), 1.0, "{m}");
    assert_eq!(fetches(&m, v, "rejected"), 1.0, "{m}");
    assert_eq!(fetches(&m, v, "malformed"), 1.0, "{m}");
    assert!(fetches(&m, v, "unavailable") >= 1.0, "{m}");
    for other in ["aws_sm", "azure_kv"] {
        assert_eq!(fetches(&m, other, "ok"), 0.0, "{m}");
    }
    let n = metric(
        &m,
        r#"keyway_secret_fetch_duration_seconds_count{manager="hashicorp_vault"}"#,
    )
    .unwrap_or(0.0);
    assert!(n >= 5.0, "{n} timed fetches:\n{m}");
    let hits = metric(&m, r#"keyway_secret_cache_total{result="hit"}"#).unwrap_or(0.0);
    assert!(hits >= 3.0, "{m}");
    assert!(
        metric(&m, r#"keyway_secret_cache_total{result="miss"}"#).unwrap_or(0.0) >= 1.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, r#"keyway_secret_cache_total{result="stale"}"#),
        Some(0.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            r#"keyway_secret_staleness_seconds{manager="hashicorp_vault"}"#
        ),
        Some(0.0),
        "{m}"
    );
    // Labels are manager types and outcomes only: no slug, path or value.
    for needle in [
        "ok-ref",
        "missing-ref",
        "m/ok",
        "m/missing",
        value.as_str(),
        token.as_str(),
    ] {
        assert!(!m.contains(needle), "{needle} in the metrics");
    }
    assert_eq!(vault.reads("secret", "m/missing"), 1);
    assert_log_clean(&kw, &[&value, &token]);
}
// ---------------------------------------------------------------------------------------------
// The fakes on their own: each speaks its service's wire format (checked with a plain client).

async fn entra_token(
    entra: &FakeEntra,
    tenant: &str,
    client: &str,
    secret: &str,
    scope: &str,
) -> String {
    let r = reqwest::Client::new()
        .post(format!("{}/{tenant}/oauth2/v2.0/token", entra.authority()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client),
            ("client_secret", secret),
            ("scope", scope),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["access_token"].as_str().unwrap().to_owned()
}

async fn get(url: &str, headers: &[(&str, &str)]) -> (u16, reqwest::header::HeaderMap, Value) {
    // No pooling: a fake may have cut its connections in an outage.
    let c = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut r = c.get(url);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let h = resp.headers().clone();
    let text = resp.text().await.unwrap();
    (
        status,
        h,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn fake_key_vault_speaks_the_key_vault_wire_format() {
    const T: &str = "tenant-fake-kv";
    let entra = FakeEntra::start(T).await;
    entra.add_secret("reader", "reader-secret-fake-kv");
    entra.add_secret("stranger", "stranger-secret-fake-kv");
    let kv = FakeKeyVault::start(&entra, T).await;
    kv.allow_reader("reader");
    let v1 = kv.set("db-key", "value-one");
    let base = kv.base();
    let url = format!("{base}/secrets/db-key?api-version=7.4");

    // No token: 401 with Key Vault's challenge naming the authority and the vault resource.
    let (s, h, v) = get(&url, &[]).await;
    assert_eq!(s, 401);
    assert_eq!(v["error"]["code"], "Unauthorized", "{v}");
    let www = h["www-authenticate"].to_str().unwrap();
    assert_eq!(
        www,
        format!(
            "Bearer authorization=\"{}/{T}\", resource=\"https://vault.azure.net\"",
            entra.authority()
        )
    );
    // A token for another scope, or for a client that is no reader: 401 too.
    let cognitive = entra_token(
        &entra,
        T,
        "reader",
        "reader-secret-fake-kv",
        "https://cognitiveservices.azure.com/.default",
    )
    .await;
    let stranger = entra_token(
        &entra,
        T,
        "stranger",
        "stranger-secret-fake-kv",
        VAULT_SCOPE,
    )
    .await;
    for t in [&cognitive, &stranger] {
        let auth = format!("Bearer {t}");
        let (s, h, v) = get(&url, &[("authorization", &auth)]).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (401, Some("Unauthorized"))
        );
        assert!(h.contains_key("www-authenticate"));
    }
    assert_eq!(kv.unauthorized(), 3);
    // Any vault token issued to a reader passes, not only the newest.
    let older = entra_token(&entra, T, "reader", "reader-secret-fake-kv", VAULT_SCOPE).await;
    let token = entra_token(&entra, T, "reader", "reader-secret-fake-kv", VAULT_SCOPE).await;
    assert_ne!(older, token);
    let auth = format!("Bearer {token}");
    let with = [("authorization", auth.as_str())];
    let older_auth = format!("Bearer {older}");
    assert_eq!(get(&url, &[("authorization", &older_auth)]).await.0, 200);

    // api-version missing or other: BadParameter.
    for q in ["", "?api-version=7.3", "?api-version=2016-10-01"] {
        let (s, _, v) = get(&format!("{base}/secrets/db-key{q}"), &with).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (400, Some("BadParameter")),
            "{q}"
        );
    }
    // The current version, in Key Vault's shape.
    let (s, _, v) = get(&url, &with).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["value"], "value-one");
    assert_eq!(v["id"], format!("{base}/secrets/db-key/{v1}"));
    assert_eq!(v1.len(), 32);
    assert_eq!(v["attributes"]["enabled"], true);
    assert_eq!(v["attributes"]["recoveryLevel"], "Recoverable+Purgeable");
    assert!(v["attributes"]["created"].as_u64().unwrap() > 1_600_000_000);
    assert!(v["attributes"]["updated"].is_u64());
    assert_eq!(v["tags"], json!({}));

    // Rotation: a new current version; the old one stays readable by id.
    let v2 = kv.set("db-key", "value-two");
    assert_ne!(v1, v2);
    let (_, _, v) = get(&url, &with).await;
    assert_eq!(
        (v["value"].as_str(), v["id"].as_str()),
        (
            Some("value-two"),
            Some(format!("{base}/secrets/db-key/{v2}").as_str())
        )
    );
    let (s, _, v) = get(
        &format!("{base}/secrets/db-key/{v1}?api-version=7.4"),
        &with,
    )
    .await;
    assert_eq!((s, v["value"].as_str()), (200, Some("value-one")));

    // Unknown secret or version: SecretNotFound.
    for p in ["nope", "db-key/0123456789abcdef0123456789abcdef"] {
        let (s, _, v) = get(&format!("{base}/secrets/{p}?api-version=7.4"), &with).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (404, Some("SecretNotFound")),
            "{p}"
        );
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("was not found"));
    }
    // 1 + 2 + 1 + 3 + 1 + 2 + 1 requests addressed db-key.
    assert_eq!(kv.fetches("db-key"), 11);
    assert_eq!(kv.fetches("nope"), 1);
    let r = kv.requests().pop().unwrap();
    assert_eq!(r.method, "GET");
    assert_eq!(
        r.uri,
        "/secrets/db-key/0123456789abcdef0123456789abcdef?api-version=7.4"
    );
    assert_eq!(r.header("authorization"), Some(auth.as_str()));

    // Outages: 503, then a closed port, then back on the same address.
    kv.set_outage(Outage::Unavailable).await;
    let (s, _, v) = get(&url, &with).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (503, Some("ServiceUnavailable"))
    );
    kv.set_outage(Outage::Refused).await;
    let e = reqwest::Client::new().get(&url).send().await.unwrap_err();
    assert!(e.is_connect(), "{e:?}");
    let fetches = kv.fetches("db-key");
    kv.set_outage(Outage::None).await;
    assert_eq!(get(&url, &with).await.0, 200);
    assert_eq!(
        kv.fetches("db-key"),
        fetches + 1,
        "a refused connection is no fetch"
    );

    // Delay.
    kv.set_delay(Some(Duration::from_millis(300)));
    let t = Instant::now();
    assert_eq!(get(&url, &with).await.0, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
}

#[tokio::test(flavor = "multi_thread")]
async fn fake_vault_speaks_the_vault_wire_format() {
    let vault = FakeVault::start().await;
    vault.add_token("root-token-fake-vault");
    vault.require_namespace("team1");
    vault.set(
        "secret",
        "llm/openai",
        json!({"api_key": "sk-one", "org": "org-1"}),
    );
    vault.mount("kv", 1);
    vault.set("kv", "legacy/anthropic", json!({"key": "sk-ant"}));
    let addr = vault.addr();
    let tok = [
        ("x-vault-token", "root-token-fake-vault"),
        ("x-vault-namespace", "team1"),
    ];

    // KV v2.
    let url = format!("{addr}/v1/secret/data/llm/openai");
    let (s, _, v) = get(&url, &tok).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["data"]["data"],
        json!({"api_key": "sk-one", "org": "org-1"})
    );
    let md = &v["data"]["metadata"];
    assert_eq!(
        (
            md["version"].as_u64(),
            md["destroyed"].as_bool(),
            md["deletion_time"].as_str()
        ),
        (Some(1), Some(false), Some(""))
    );
    assert!(md["created_time"].as_str().unwrap().ends_with('Z'));
    for (k, want) in [
        ("lease_id", json!("")),
        ("renewable", json!(false)),
        ("lease_duration", json!(0)),
        ("wrap_info", Value::Null),
        ("warnings", Value::Null),
        ("auth", Value::Null),
    ] {
        assert_eq!(v[k], want, "{k}");
    }
    assert_eq!(v["request_id"].as_str().unwrap().len(), 36);
    assert_eq!(
        vault.set("secret", "llm/openai", json!({"api_key": "sk-two"})),
        2
    );
    let (_, _, v) = get(&url, &tok).await;
    assert_eq!(
        (
            v["data"]["data"]["api_key"].as_str(),
            v["data"]["metadata"]["version"].as_u64()
        ),
        (Some("sk-two"), Some(2))
    );
    let (_, _, v) = get(&format!("{url}?version=1"), &tok).await;
    assert_eq!(v["data"]["data"]["api_key"], "sk-one");
    // A v2 mount read without data/: 404 with Vault's warning.
    let (s, _, v) = get(&format!("{addr}/v1/secret/llm/openai"), &tok).await;
    assert_eq!(s, 404);
    assert!(v["warnings"][0].as_str().unwrap().contains("versioned K/V"));

    // KV v1.
    let (s, _, v) = get(&format!("{addr}/v1/kv/legacy/anthropic"), &tok).await;
    assert_eq!(s, 200);
    assert_eq!(v["data"], json!({"key": "sk-ant"}));
    assert_eq!(v["lease_duration"], 2764800);

    // Missing: 404 {"errors":[]}.
    for p in ["secret/data/nope", "kv/nope"] {
        let (s, _, v) = get(&format!("{addr}/v1/{p}"), &tok).await;
        assert_eq!((s, v), (404, json!({"errors": []})), "{p}");
    }
    // Wrong token, no token, no namespace: 403 permission denied.
    for h in [
        vec![("x-vault-token", "nope"), ("x-vault-namespace", "team1")],
        vec![("x-vault-namespace", "team1")],
        vec![("x-vault-token", "root-token-fake-vault")],
        vec![
            ("x-vault-token", "root-token-fake-vault"),
            ("x-vault-namespace", "team2"),
        ],
    ] {
        let (s, _, v) = get(&url, &h).await;
        assert_eq!(
            (s, v),
            (403, json!({"errors": ["permission denied"]})),
            "{h:?}"
        );
    }
    assert_eq!(vault.denied(), 4);
    // Three reads, one without data/, four refused.
    assert_eq!(vault.reads("secret", "llm/openai"), 3 + 1 + 4);
    assert_eq!(vault.reads("kv", "legacy/anthropic"), 1);

    // AppRole: a token that lives lease_duration seconds.
    vault.add_approle("role-1", "secret-id-fake-vault", "llm-reader");
    vault.set_lease(1);
    let login = |body: Value, ns: Option<&'static str>| {
        let addr = addr.clone();
        async move {
            let mut r = reqwest::Client::new()
                .post(format!("{addr}/v1/auth/approle/login"))
                .json(&body);
            if let Some(ns) = ns {
                r = r.header("x-vault-namespace", ns);
            }
            let resp = r.send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let (s, v) = login(
        json!({"role_id": "role-1", "secret_id": "wrong"}),
        Some("team1"),
    )
    .await;
    assert_eq!(
        (s, v),
        (400, json!({"errors": ["invalid role or secret ID"]}))
    );
    let (s, _) = login(
        json!({"role_id": "role-1", "secret_id": "secret-id-fake-vault"}),
        None,
    )
    .await;
    assert_eq!(s, 400, "the role lives in the namespace");
    let (s, v) = login(json!({"secret_id": "x"}), Some("team1")).await;
    assert_eq!((s, v), (400, json!({"errors": ["missing role_id"]})));
    let (s, v) = login(
        json!({"role_id": "role-1", "secret_id": "secret-id-fake-vault"}),
        Some("team1"),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let a = &v["auth"];
    let token = a["client_token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("hvs.") && token.len() == 28, "{token}");
    assert_eq!(a["lease_duration"], 1);
    assert_eq!(a["renewable"], true);
    assert_eq!(a["policies"], json!(["default"]));
    assert_eq!(a["token_policies"], json!(["default"]));
    assert_eq!(a["metadata"], json!({"role_name": "llm-reader"}));
    assert!(a["accessor"].is_string());
    assert_eq!((vault.logins(), vault.failed_logins()), (1, 3));
    let h = [
        ("x-vault-token", token.as_str()),
        ("x-vault-namespace", "team1"),
    ];
    assert_eq!(get(&url, &h).await.0, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get(&url, &h).await.0, 403, "the lease ended");

    // Outages, and the tokens are revoked on demand.
    vault.set_outage(Outage::Unavailable).await;
    let (s, _, v) = get(&url, &tok).await;
    assert_eq!((s, v), (503, json!({"errors": ["Vault is sealed"]})));
    vault.set_outage(Outage::Refused).await;
    assert!(reqwest::Client::new()
        .get(&url)
        .send()
        .await
        .unwrap_err()
        .is_connect());
    vault.set_outage(Outage::None).await;
    assert_eq!(get(&url, &tok).await.0, 200);
    vault.revoke_tokens();
    assert_eq!(get(&url, &tok).await.0, 403);
}
