//! Secret managers through a real keyway (issue 5): credentials, virtual keys and provider
//! defaults whose keys live in Azure Key Vault or HashiCorp Vault. Each test asserts the exact
//! request keyway sent to the manager (path, query, headers, login body) and what the provider
//! upstream received; the fakes check requests the way the real services do. Then the cache
//! policy (TTL, single flight, stale values through an outage, max_stale), workspace
//! restrictions, the refetch after an upstream 401, masking in `--check-config`, config errors
//! that name the reference and field, and the metrics. Last, the fakes on their own.

mod access;
mod cache_policy;
#[path = "../common/mod.rs"]
mod common;
mod config_errors;
mod key_vault_and_vault;
mod masking;
mod metrics_and_fakes;
mod rotation;

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
    t.assert_client_secret(TENANT, KV_READER, reader_secret, VAULT_SCOPE);
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
