//! Secret managers: where a mapped secret's value comes from (AWS Secrets Manager, Azure Key
//! Vault, HashiCorp Vault). Each fetcher speaks its manager's real protocol and returns the raw
//! document; `select` picks the one value a mapping wants. The cache (`cache::secrets`) decides
//! when to call a fetcher; nothing here knows about requests or Pingora.

pub mod aws;
pub mod keyvault;
pub mod vault;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use super::CredentialError;
use crate::secret::Secret;

/// The `manager_type`s of seed 003.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ManagerType {
    AwsSm,
    AzureKv,
    HashicorpVault,
}

impl ManagerType {
    pub const ALL: [ManagerType; 3] = [
        ManagerType::AwsSm,
        ManagerType::AzureKv,
        ManagerType::HashicorpVault,
    ];

    pub fn parse(s: &str) -> Option<ManagerType> {
        ManagerType::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// The seed-003 spelling; also the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ManagerType::AwsSm => "aws_sm",
            ManagerType::AzureKv => "azure_kv",
            ManagerType::HashicorpVault => "hashicorp_vault",
        }
    }
}

impl fmt::Display for ManagerType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A secret as the manager holds it: one string (AWS, Key Vault) or a map of keys (Vault KV).
#[derive(Debug)]
pub enum SecretDoc {
    Text(Secret),
    Map(serde_json::Map<String, serde_json::Value>),
}

/// Why a secret could not be had. Messages carry the manager, an HTTP status or error code and
/// what to check; never a value, a path or a credential.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SecretError {
    /// The manager refused keyway's credentials (bad key, signature, permission).
    #[error("{manager} refused the request ({code}); check the reference's auth_config and the manager's access policy")]
    Rejected { manager: ManagerType, code: String },
    #[error("{manager} has no such secret ({code}); check secret_path")]
    NotFound { manager: ManagerType, code: String },
    /// Network trouble, throttling or a 5xx: worth retrying.
    #[error("{manager} unavailable: {reason}")]
    Unavailable {
        manager: ManagerType,
        reason: String,
    },
    /// The answer or the value is not what the mapping needs (not JSON, key missing, binary).
    #[error("{manager}: {detail}")]
    Malformed {
        manager: ManagerType,
        detail: String,
    },
    /// The token for the manager (Key Vault's Entra token) could not be had.
    #[error("{manager}: token for the manager: {source}")]
    Credential {
        manager: ManagerType,
        source: CredentialError,
    },
}

impl SecretError {
    pub fn is_transient(&self) -> bool {
        match self {
            SecretError::Unavailable { .. } => true,
            SecretError::Credential { source, .. } => source.is_transient(),
            _ => false,
        }
    }

    /// Metric label.
    pub fn outcome(&self) -> &'static str {
        match self {
            SecretError::Rejected { .. } => "rejected",
            SecretError::NotFound { .. } => "not_found",
            SecretError::Unavailable { .. } => "unavailable",
            SecretError::Malformed { .. } => "malformed",
            SecretError::Credential { .. } => "credential",
        }
    }
}

/// One secret reference's manager connection. `fetch` is called by the cache only, ahead of
/// expiry or on a miss; it may keep state such as a Vault login token.
#[async_trait]
pub trait SecretFetcher: Send + Sync + fmt::Debug {
    async fn fetch(&self) -> Result<SecretDoc, SecretError>;
}

/// A bearer token for a manager (Key Vault's Entra token), kept by the token cache.
#[async_trait]
pub trait BearerSource: Send + Sync + fmt::Debug {
    async fn bearer(&self) -> Result<Secret, CredentialError>;
    /// The manager answered 401 to `token`: the next `bearer` must not return it.
    fn reject(&self, token: &Secret);
}

/// Picks the value a mapping wants. `key` selects one entry of a JSON object (a text secret is
/// parsed as JSON only then); without it a text secret is used whole and a map must hold
/// exactly one entry.
pub fn select(
    manager: ManagerType,
    doc: &SecretDoc,
    key: Option<&str>,
) -> Result<Secret, SecretError> {
    let malformed = |detail: String| SecretError::Malformed { manager, detail };
    let parsed;
    let map = match (doc, key) {
        (SecretDoc::Text(t), None) => return non_empty(manager, t.expose()),
        (SecretDoc::Text(t), Some(_)) => {
            parsed = serde_json::from_str::<serde_json::Value>(t.expose())
                .ok()
                .and_then(|v| match v {
                    serde_json::Value::Object(m) => Some(m),
                    _ => None,
                })
                .ok_or_else(|| {
                    malformed("secret_key is set but the secret is not a JSON object".into())
                })?;
            &parsed
        }
        (SecretDoc::Map(m), _) => m,
    };
    let value = match key {
        Some(k) => map
            .get(k)
            .ok_or_else(|| malformed(format!("the secret has no key '{k}'")))?,
        None if map.len() == 1 => map.values().next().expect("one entry"),
        None => {
            return Err(malformed(format!(
                "the secret holds {} keys; set secret_key to pick one",
                map.len()
            )))
        }
    };
    match value {
        serde_json::Value::String(s) => non_empty(manager, s),
        serde_json::Value::Number(n) => Ok(Secret::new(n.to_string())),
        serde_json::Value::Bool(b) => Ok(Secret::new(b.to_string())),
        _ => Err(malformed(
            "the selected value is not a string, number or boolean".into(),
        )),
    }
}

fn non_empty(manager: ManagerType, s: &str) -> Result<Secret, SecretError> {
    match s.is_empty() {
        true => Err(SecretError::Malformed {
            manager,
            detail: "the secret value is empty".into(),
        }),
        false => Ok(Secret::new(s)),
    }
}

/// Shared handle type.
pub type Fetcher = Arc<dyn SecretFetcher>;

/// The HTTP client of the Key Vault and Vault fetchers: short connect timeout, bounded request.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(super::http::CONNECT_TIMEOUT * 3)
        .timeout(super::http::REQUEST_TIMEOUT)
        .user_agent(concat!("keyway/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_else(|e| panic!("secret-manager HTTP client: TLS backend failed to start: {e}"))
}

/// Sends `req`; transport trouble is `Unavailable`, any HTTP answer comes back as it is.
pub(crate) async fn send(
    manager: ManagerType,
    req: reqwest::RequestBuilder,
) -> Result<(u16, bytes::Bytes), SecretError> {
    let unavailable = |e: reqwest::Error| SecretError::Unavailable {
        manager,
        reason: super::http::transport_reason(&e),
    };
    let resp = req.send().await.map_err(unavailable)?;
    let status = resp.status().as_u16();
    let body = resp.bytes().await.map_err(unavailable)?;
    Ok((status, body))
}

/// Classifies a non-2xx answer: 401/403 rejected, 404 not found, 429/5xx unavailable. `code`
/// is the manager's own error code when the body has one.
pub(crate) fn http_error(manager: ManagerType, status: u16, code: Option<&str>) -> SecretError {
    let code = match code {
        Some(c) => format!("HTTP {status}, {c}"),
        None => format!("HTTP {status}"),
    };
    match status {
        404 => SecretError::NotFound { manager, code },
        429 | 500.. => SecretError::Unavailable {
            manager,
            reason: code,
        },
        _ => SecretError::Rejected { manager, code },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const M: ManagerType = ManagerType::AwsSm;

    fn text(s: &str) -> SecretDoc {
        SecretDoc::Text(Secret::new(s))
    }

    fn map(v: serde_json::Value) -> SecretDoc {
        match v {
            serde_json::Value::Object(m) => SecretDoc::Map(m),
            _ => unreachable!(),
        }
    }

    #[test]
    fn text_is_used_whole_without_a_key() {
        assert_eq!(select(M, &text("sk-1"), None).unwrap().expose(), "sk-1");
        assert_eq!(
            select(M, &text(r#"{"a":"b"}"#), None).unwrap().expose(),
            r#"{"a":"b"}"#
        );
        assert!(select(M, &text(""), None).is_err());
    }

    #[test]
    fn a_key_picks_one_entry_of_a_json_text() {
        let doc = text(r#"{"api_key":"sk-2","port":5432,"on":true}"#);
        assert_eq!(select(M, &doc, Some("api_key")).unwrap().expose(), "sk-2");
        assert_eq!(select(M, &doc, Some("port")).unwrap().expose(), "5432");
        let e = select(M, &doc, Some("nope")).unwrap_err().to_string();
        assert!(e.contains("no key 'nope'") && !e.contains("sk-2"), "{e}");
        let e = select(M, &text("plain"), Some("k"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not a JSON object") && !e.contains("plain"),
            "{e}"
        );
    }

    #[test]
    fn maps_need_a_key_unless_they_hold_one_entry() {
        assert_eq!(
            select(M, &map(json!({"only":"v"})), None).unwrap().expose(),
            "v"
        );
        let two = map(json!({"a":"1","b":"2"}));
        assert!(select(M, &two, None)
            .unwrap_err()
            .to_string()
            .contains("2 keys"));
        assert_eq!(select(M, &two, Some("b")).unwrap().expose(), "2");
        assert!(select(M, &map(json!({"a":{"n":1}})), Some("a")).is_err());
    }

    #[test]
    fn errors_classify_for_retry_and_metrics() {
        let u = SecretError::Unavailable {
            manager: M,
            reason: "timeout".into(),
        };
        assert!(u.is_transient());
        assert_eq!(u.outcome(), "unavailable");
        let r = SecretError::Rejected {
            manager: M,
            code: "UnrecognizedClientException".into(),
        };
        assert!(!r.is_transient());
        assert!(r.to_string().contains("aws_sm refused"));
    }
}
