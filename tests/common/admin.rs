//! A client of keyway's admin API for the end-to-end tests: one key, JSON in and out, every
//! answer as (status, body); and the config file pieces the control-plane tests share.

use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::Keyway;

/// `sha256:<hex>` of a gateway key, as `[[api_keys]] hash` wants it.
pub fn hash(key: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(key.as_bytes())))
}

/// An `[[api_keys]]` block; `workspace: None` is an organisation key.
pub fn key_block(name: &str, key: &str, workspace: Option<&str>, role: &str) -> String {
    let ws = workspace.map_or(String::new(), |w| format!("workspace = \"{w}\"\n"));
    format!(
        "\n[[api_keys]]\nname = \"{name}\"\nhash = \"{}\"\n{ws}role = \"{role}\"\n",
        hash(key)
    )
}

#[derive(Clone)]
pub struct Admin {
    base: String,
    key: Option<String>,
    client: reqwest::Client,
}

impl Admin {
    /// The admin API of `kw`, as the holder of `key`.
    pub fn new(kw: &Keyway, key: &str) -> Admin {
        Admin::at(&kw.admin_url(""), Some(key))
    }

    /// The admin API at `base` (`http://host:port`); `key: None` sends no key.
    pub fn at(base: &str, key: Option<&str>) -> Admin {
        Admin {
            base: base.to_owned(),
            key: key.map(str::to_owned),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    pub fn with_key(&self, key: Option<&str>) -> Admin {
        Admin {
            key: key.map(str::to_owned),
            ..self.clone()
        }
    }

    /// One request; the body is sent as JSON text when given (raw, so tests can send broken
    /// JSON).
    pub async fn raw(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut r = self.client.request(m, format!("{}{path}", self.base));
        if let Some(k) = &self.key {
            r = r.header("x-portkey-api-key", k);
        }
        if let Some(b) = body {
            r = r
                .header("content-type", "application/json")
                .body(b.to_owned());
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(ct.as_deref(), Some("application/json"), "{method} {path}");
        let text = resp.text().await.unwrap();
        let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        (status, v)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.raw("GET", path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.raw("POST", path, Some(&body.to_string())).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.raw("PUT", path, Some(&body.to_string())).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.raw("DELETE", path, None).await
    }

    /// `post` that must succeed; the created object.
    pub async fn create(&self, path: &str, body: Value) -> Value {
        let (s, v) = self.post(path, body).await;
        assert_eq!(s, 200, "POST {path}: {v}");
        v
    }
}

/// Sends `probe` every 20 ms until it answers `want` or `within` passes; how long it took.
pub async fn time_until<F, Fut>(want: u16, within: Duration, mut probe: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = u16>,
{
    let start = Instant::now();
    while start.elapsed() < within {
        if probe().await == want {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}
