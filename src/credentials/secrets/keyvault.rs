//! `azure_kv`: `GET {vault}/secrets/{name}[/{version}]?api-version=7.4` with an Entra token for
//! `https://vault.azure.net/.default`. The token comes from the token cache (the Azure identity
//! machinery: client secret, managed or workload identity), never fetched here.

use std::sync::Arc;

use async_trait::async_trait;
use url::Url;

use super::{http_error, send, BearerSource, ManagerType, SecretDoc, SecretError, SecretFetcher};
use crate::secret::Secret;

const M: ManagerType = ManagerType::AzureKv;
pub const API_VERSION: &str = "7.4";

#[derive(Debug)]
pub struct KeyVaultSecret {
    pub http: reqwest::Client,
    /// The secret's URL, version and api-version included.
    pub url: Url,
    pub token: Arc<dyn BearerSource>,
}

/// `{vault_url}/secrets/{name}[/{version}]?api-version=7.4`; `path` is `name` or `name/version`.
pub fn secret_url(vault_url: &str, path: &str) -> Result<Url, String> {
    let mut url = Url::parse(vault_url.trim_end_matches('/'))
        .map_err(|e| format!("'{vault_url}' is not a URL: {e}"))?;
    let parts: Vec<&str> = path.split('/').collect();
    if parts.is_empty() || parts.len() > 2 || parts.iter().any(|p| p.is_empty()) {
        return Err("must be a secret name or name/version".into());
    }
    url.path_segments_mut()
        .map_err(|_| format!("'{vault_url}' cannot take a path"))?
        .pop_if_empty()
        .push("secrets")
        .extend(parts);
    url.query_pairs_mut()
        .append_pair("api-version", API_VERSION);
    Ok(url)
}

impl KeyVaultSecret {
    /// Reads the secret. A 401 means Key Vault refused the Entra token (revoked, or its signing
    /// keys rolled): the token is dropped, a fresh one fetched (single flight in the token
    /// cache) and the read tried once more.
    pub async fn get(&self) -> Result<SecretDoc, SecretError> {
        let token = self.bearer().await?;
        let refused = match self.read(&token).await {
            Ok(doc) => return Ok(doc),
            Err(Other(e)) => return Err(e),
            Err(Refused401(e)) => e,
        };
        self.token.reject(&token);
        let fresh = self.bearer().await?;
        if fresh == token {
            return Err(refused);
        }
        match self.read(&fresh).await {
            Ok(doc) => Ok(doc),
            Err(Other(e)) => Err(e),
            Err(Refused401(e)) => {
                self.token.reject(&fresh);
                Err(e)
            }
        }
    }

    async fn bearer(&self) -> Result<Secret, SecretError> {
        self.token
            .bearer()
            .await
            .map_err(|source| SecretError::Credential { manager: M, source })
    }

    async fn read(&self, token: &Secret) -> Result<SecretDoc, ReadError> {
        let req = self
            .http
            .get(self.url.clone())
            .bearer_auth(token.expose())
            .header("accept", "application/json");
        let (status, body) = send(M, req).await.map_err(Other)?;
        let json: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
        if status != 200 {
            let code = json
                .as_ref()
                .and_then(|j| j.pointer("/error/code"))
                .and_then(|c| c.as_str())
                .filter(|c| c.len() <= 64 && c.bytes().all(|b| b.is_ascii_alphanumeric()));
            let e = http_error(M, status, code);
            return Err(if status == 401 {
                Refused401(e)
            } else {
                Other(e)
            });
        }
        match json.as_ref().and_then(|j| j.get("value")) {
            Some(serde_json::Value::String(v)) => Ok(SecretDoc::Text(Secret::new(v.as_str()))),
            _ => Err(Other(SecretError::Malformed {
                manager: M,
                detail: "the answer has no string 'value'".into(),
            })),
        }
    }
}

/// A read's failure: Key Vault refused the token (worth one retry with a fresh one), or not.
enum ReadError {
    Refused401(SecretError),
    Other(SecretError),
}
use ReadError::{Other, Refused401};

#[async_trait]
impl SecretFetcher for KeyVaultSecret {
    async fn fetch(&self) -> Result<SecretDoc, SecretError> {
        self.get().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_urls_follow_the_key_vault_shape() {
        assert_eq!(
            secret_url("https://kv1.vault.azure.net/", "openai-key")
                .unwrap()
                .as_str(),
            "https://kv1.vault.azure.net/secrets/openai-key?api-version=7.4"
        );
        assert_eq!(
            secret_url("http://127.0.0.1:9", "k/0123abcd")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:9/secrets/k/0123abcd?api-version=7.4"
        );
        for bad in ["", "a/b/c", "/a", "a/"] {
            assert!(
                secret_url("https://kv1.vault.azure.net", bad).is_err(),
                "{bad}"
            );
        }
        assert!(secret_url("kv1", "a").is_err());
    }
}
