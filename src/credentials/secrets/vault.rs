//! `hashicorp_vault`: KV v2 (`/v1/{mount}/data/{path}` → `.data.data`) or KV v1
//! (`/v1/{mount}/{path}` → `.data`), with a static token or an AppRole login. An AppRole token
//! is kept between fetches and replaced by a new login once two thirds of its lease have passed,
//! or at once when Vault answers 403 (revoked, expired early).

use std::time::{Duration, Instant};

use async_trait::async_trait;
use url::Url;

use super::{http_error, send, ManagerType, SecretDoc, SecretError, SecretFetcher};
use crate::secret::Secret;

const M: ManagerType = ManagerType::HashicorpVault;

#[derive(Debug, Clone)]
pub enum VaultAuth {
    Token(Secret),
    AppRole {
        role_id: String,
        secret_id: Secret,
        /// Where the AppRole method is mounted (default `approle`).
        mount: String,
    },
}

#[derive(Debug, Clone)]
pub struct VaultSettings {
    pub addr: Url,
    pub auth: VaultAuth,
    pub namespace: Option<String>,
    /// The KV engine's mount (default `secret`).
    pub mount: String,
    /// 1 or 2.
    pub kv_version: u8,
}

#[derive(Debug)]
struct Login {
    token: Secret,
    renew_at: Option<Instant>,
}

#[derive(Debug)]
pub struct VaultSecret {
    http: reqwest::Client,
    settings: VaultSettings,
    url: Url,
    login: tokio::sync::Mutex<Option<Login>>,
}

fn join(base: &Url, parts: &[&str]) -> Url {
    let mut url = base.clone();
    if let Ok(mut segs) = url.path_segments_mut() {
        segs.pop_if_empty();
        for p in parts {
            segs.extend(p.split('/').filter(|s| !s.is_empty()));
        }
    }
    url
}

impl VaultSecret {
    pub fn new(http: reqwest::Client, settings: VaultSettings, path: &str) -> Self {
        let url = match settings.kv_version {
            1 => join(&settings.addr, &["v1", &settings.mount, path]),
            _ => join(&settings.addr, &["v1", &settings.mount, "data", path]),
        };
        VaultSecret {
            http,
            settings,
            url,
            login: tokio::sync::Mutex::new(None),
        }
    }

    /// The URL this reference reads.
    pub fn url(&self) -> &Url {
        &self.url
    }

    fn request(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.settings.namespace {
            Some(ns) => req.header("X-Vault-Namespace", ns),
            None => req,
        }
    }

    /// Reads the secret. With AppRole, a refused token (revoked, expired early) is replaced by
    /// a new login and the read tried once more; concurrent reads refused with the same token
    /// share that one login.
    pub async fn get(&self) -> Result<SecretDoc, SecretError> {
        let token = self.token(None).await?;
        match self.read(&token).await {
            Err(SecretError::Rejected { .. })
                if matches!(self.settings.auth, VaultAuth::AppRole { .. }) =>
            {
                let token = self.token(Some(&token)).await?;
                self.read(&token).await
            }
            other => other,
        }
    }

    async fn read(&self, token: &Secret) -> Result<SecretDoc, SecretError> {
        let req = self
            .http
            .get(self.url.clone())
            .header("X-Vault-Token", token.expose());
        let (status, body) = send(M, self.request(req)).await?;
        if status != 200 {
            return Err(http_error(M, status, None));
        }
        let json: serde_json::Value =
            serde_json::from_slice(&body).map_err(|_| SecretError::Malformed {
                manager: M,
                detail: "the answer is not JSON".into(),
            })?;
        let pointer = match self.settings.kv_version {
            1 => "/data",
            _ => "/data/data",
        };
        match json.pointer(pointer) {
            Some(serde_json::Value::Object(m)) => Ok(SecretDoc::Map(m.clone())),
            _ => Err(SecretError::Malformed {
                manager: M,
                detail: format!(
                    "no object at {pointer} (is vault_kv_version = {} right for this mount?)",
                    self.settings.kv_version
                ),
            }),
        }
    }

    /// The token to read with: the static one, or the AppRole login token (logging in when
    /// there is none, it is due for renewal, or it is `refused` — unless another read already
    /// replaced that one).
    async fn token(&self, refused: Option<&Secret>) -> Result<Secret, SecretError> {
        let (role_id, secret_id, mount) = match &self.settings.auth {
            VaultAuth::Token(t) => return Ok(t.clone()),
            VaultAuth::AppRole {
                role_id,
                secret_id,
                mount,
            } => (role_id, secret_id, mount),
        };
        let mut login = self.login.lock().await;
        if let Some(l) = login.as_ref() {
            let kept = refused != Some(&l.token);
            if kept && l.renew_at.is_none_or(|at| Instant::now() < at) {
                return Ok(l.token.clone());
            }
        }
        *login = None;
        let url = join(&self.settings.addr, &["v1", "auth", mount, "login"]);
        let body = serde_json::json!({ "role_id": role_id, "secret_id": secret_id.expose() });
        let (status, reply) = send(M, self.request(self.http.post(url).json(&body))).await?;
        if status != 200 {
            return Err(match http_error(M, status, None) {
                SecretError::Rejected { manager, code } => SecretError::Rejected {
                    manager,
                    code: format!("{code}, AppRole login"),
                },
                other => other,
            });
        }
        let json: serde_json::Value = serde_json::from_slice(&reply).unwrap_or_default();
        let token = json
            .pointer("/auth/client_token")
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| SecretError::Malformed {
                manager: M,
                detail: "the AppRole login answer has no auth.client_token".into(),
            })?;
        let lease = json
            .pointer("/auth/lease_duration")
            .and_then(|l| l.as_u64())
            .unwrap_or(0);
        let new = Login {
            token: Secret::new(token),
            renew_at: renew_at(Instant::now(), lease),
        };
        let t = new.token.clone();
        *login = Some(new);
        Ok(t)
    }
}

/// A new login after two thirds of the lease; `None` for tokens without a lease (TTL 0).
fn renew_at(now: Instant, lease_seconds: u64) -> Option<Instant> {
    (lease_seconds > 0).then(|| now + Duration::from_millis(lease_seconds * 2000 / 3))
}

#[async_trait]
impl SecretFetcher for VaultSecret {
    async fn fetch(&self) -> Result<SecretDoc, SecretError> {
        self.get().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(kv: u8) -> VaultSettings {
        VaultSettings {
            addr: Url::parse("http://127.0.0.1:8200/").unwrap(),
            auth: VaultAuth::Token(Secret::new("t")),
            namespace: None,
            mount: "secret".into(),
            kv_version: kv,
        }
    }

    #[test]
    fn kv_paths_per_version() {
        let v2 = VaultSecret::new(reqwest::Client::new(), settings(2), "/apps/openai/");
        assert_eq!(
            v2.url().as_str(),
            "http://127.0.0.1:8200/v1/secret/data/apps/openai"
        );
        let v1 = VaultSecret::new(reqwest::Client::new(), settings(1), "apps/openai");
        assert_eq!(
            v1.url().as_str(),
            "http://127.0.0.1:8200/v1/secret/apps/openai"
        );
    }

    #[test]
    fn approle_tokens_are_renewed_after_two_thirds_of_the_lease() {
        let now = Instant::now();
        assert_eq!(renew_at(now, 0), None);
        assert_eq!(renew_at(now, 3), Some(now + Duration::from_secs(2)));
        assert_eq!(renew_at(now, 3600), Some(now + Duration::from_secs(2400)));
    }
}
