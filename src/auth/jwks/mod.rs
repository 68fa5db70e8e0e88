//! JWKS cache: what an identity provider publishes for a JWT validator — its signing keys and,
//! for an Entra tenant, the issuers its tokens carry.
//!
//! Sources: an OpenID discovery document (`openid_config` → its `jwks_uri`, rediscovered on
//! every refresh so a provider may move its keys), a JWKS URL, or keys inlined in the config.
//! A tenant's discovery document may also be named for its `issuer` (`tenant_id` given as a
//! domain: tokens carry the tenant's GUID, which only the document tells). Requests read the
//! published set lock-free from an `ArcSwap`; the refresher (and, for an unknown `kid`, at most
//! one request per `min_refetch_interval`) replaces it, keys and issuers together. A failed
//! refresh keeps the old set: an identity provider outage must not lock every caller out
//! (static stability).

mod fetch;
mod keys;

use fetch::{jwks_uri, tenant_issuers};

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use serde::Deserialize;
use url::Url;

use crate::cache::renewal::{Renewal, Timing};

pub use keys::{alg_name, asymmetric_alg, parse_jwk, Jwk, KeySet, VerifyKey, ASYMMETRIC};

/// Connect timeout for discovery and JWKS fetches.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Whole-request timeout for discovery and JWKS fetches.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default minimum gap between two refetches triggered by an unknown `kid`: a stream of tokens
/// with made-up `kid`s must not turn the gateway into a load generator against the provider.
pub const DEFAULT_MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(60);
/// Discovery documents and key sets larger than this are refused.
pub(super) const MAX_BODY: usize = 1 << 20;
/// The public-cloud v1 issuer host of Entra (`https://sts.windows.net/{tid}/`).
pub const AZURE_V1_ISSUER_HOST: &str = "https://sts.windows.net";

/// Where the keys come from.
#[derive(Debug, Clone, PartialEq)]
pub enum JwksSource {
    /// OpenID discovery document; its `jwks_uri` is fetched on every refresh.
    OpenIdConfig(Url),
    /// A JWKS document (`{"keys":[…]}`).
    JwksUri(Url),
    /// Keys from the config file; `refresh` is a no-op.
    Inline(Vec<Jwk>),
}

/// Why a refresh failed. The cached keys are kept in every case.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("jwks: GET {url} failed: {detail}; check that the identity provider is reachable")]
    Http { url: String, detail: String },
    #[error("jwks: GET {url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("jwks: {url} is not a valid {what}: {detail}")]
    Parse {
        url: String,
        what: &'static str,
        detail: String,
    },
    #[error("jwks: {url} has no usable signing key ({detail})")]
    NoUsableKeys { url: String, detail: String },
    #[error("jwks: HTTP client could not start: {0}")]
    Client(String),
}

impl JwksError {
    /// Worth retrying soon: network errors, 5xx and 429.
    pub fn is_transient(&self) -> bool {
        match self {
            JwksError::Http { .. } => true,
            JwksError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

/// One consistent view of what the provider publishes.
#[derive(Debug, Default)]
pub struct Published {
    pub keys: KeySet,
    /// Issuers read from the tenant's discovery document (its `issuer`, and the v1 issuer of the
    /// same tenant); empty without one.
    pub issuers: Vec<String>,
}

/// The key set of one JWT validator.
pub struct JwksCache {
    source: JwksSource,
    /// A tenant's v2 discovery document whose `issuer` is accepted.
    issuer_document: Option<Url>,
    published: ArcSwap<Published>,
    client: reqwest::Client,
    min_refetch_interval: Duration,
    /// When the last unknown-`kid` refetch started; the async mutex also makes concurrent
    /// unknown-`kid` requests wait for the one refetch instead of starting their own.
    last_refetch: tokio::sync::Mutex<Option<Instant>>,
    /// When the refresher fetches the set again (remote sources only).
    renewal: Renewal<String>,
    /// When the published set was last fetched (the cache's creation until then).
    fetched_at: std::sync::Mutex<Instant>,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache")
            .field("source", &self.source_label())
            .field("keys", &self.len())
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
pub(super) struct Discovery {
    pub(super) issuer: Option<String>,
    pub(super) jwks_uri: Option<String>,
}

impl JwksCache {
    /// A cache for `source`. Inline keys are parsed now (an inline key that cannot be used is an
    /// error); remote sources start empty until the first `refresh`.
    pub fn new(source: JwksSource) -> Result<JwksCache, JwksError> {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("keyway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| JwksError::Client(e.to_string()))?;
        let keys =
            match &source {
                JwksSource::Inline(jwks) => keys::parse_key_set(jwks, "inline keys", true)
                    .map_err(|detail| JwksError::NoUsableKeys {
                        url: "inline keys".into(),
                        detail,
                    })?,
                _ => KeySet::default(),
            };
        let remote = !matches!(source, JwksSource::Inline(_));
        Ok(JwksCache {
            renewal: Renewal::new(Timing::system(), remote),
            source,
            issuer_document: None,
            published: ArcSwap::from_pointee(Published {
                keys,
                issuers: Vec::new(),
            }),
            client,
            min_refetch_interval: DEFAULT_MIN_REFETCH_INTERVAL,
            last_refetch: tokio::sync::Mutex::new(None),
            fetched_at: std::sync::Mutex::new(Instant::now()),
        })
    }

    /// Sets the minimum gap between unknown-`kid` refetches (default 60 s).
    pub fn with_min_refetch_interval(mut self, interval: Duration) -> JwksCache {
        self.min_refetch_interval = interval;
        self
    }

    /// Accept the issuer an Entra tenant's v2 discovery document names (and the same tenant's
    /// v1 issuer), read at every refresh.
    pub fn with_issuer_document(mut self, url: Option<Url>) -> JwksCache {
        if url.is_some() {
            self.renewal = Renewal::new(Timing::system(), true);
        }
        self.issuer_document = url;
        self
    }

    /// The background refresh schedule (the refresher claims it, refreshes, and reports back).
    pub fn renewal(&self) -> &Renewal<String> {
        &self.renewal
    }

    pub fn source(&self) -> &JwksSource {
        &self.source
    }

    /// "openid_config", "jwks_uri" or "inline", for logs.
    pub fn source_label(&self) -> &'static str {
        match self.source {
            JwksSource::OpenIdConfig(_) => "openid_config",
            JwksSource::JwksUri(_) => "jwks_uri",
            JwksSource::Inline(_) => "inline",
        }
    }

    /// What is published now; lock-free.
    pub fn published(&self) -> Arc<Published> {
        self.published.load_full()
    }

    /// The key with this `kid`; lock-free.
    pub fn get(&self, kid: &str) -> Option<Arc<VerifyKey>> {
        self.published.load().keys.get(kid).cloned()
    }

    /// How long ago the published set was fetched (since the cache was made when it never
    /// was); `None` for inline keys, which never age. For `keyway_jwks_age_seconds`.
    pub fn age(&self) -> Option<Duration> {
        if matches!(self.source, JwksSource::Inline(_)) && self.issuer_document.is_none() {
            return None;
        }
        Some(
            self.fetched_at
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .elapsed(),
        )
    }

    /// Number of usable keys held now.
    pub fn len(&self) -> usize {
        self.published.load().keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a validator can check tokens: it holds keys (and, when the tenant's issuer is
    /// discovered, that issuer: both come in one refresh).
    pub fn is_loaded(&self) -> bool {
        let p = self.published.load();
        !p.keys.is_empty() && (self.issuer_document.is_none() || !p.issuers.is_empty())
    }

    /// Fetches the key set (discovering `jwks_uri` first for `openid_config`) and the tenant's
    /// issuer, and swaps both in. Returns the number of usable keys. On any error the previous
    /// set stays in place. Keys that cannot be used (encryption keys, symmetric keys, unknown
    /// curves, short RSA moduli) are skipped; a set with none usable is an error.
    pub async fn refresh(&self) -> Result<usize, JwksError> {
        let mut tenant_doc = None;
        let jwks_url = match &self.source {
            JwksSource::Inline(_) if self.issuer_document.is_none() => return Ok(self.len()),
            JwksSource::Inline(_) => None,
            JwksSource::JwksUri(u) => Some(u.clone()),
            JwksSource::OpenIdConfig(u) => {
                let doc = self.discovery(u).await?;
                let jwks = jwks_uri(u, &doc)?;
                if self.issuer_document.as_ref() == Some(u) {
                    tenant_doc = Some(doc);
                }
                Some(jwks)
            }
        };
        let issuers = match (&self.issuer_document, tenant_doc) {
            (None, _) => Vec::new(),
            (Some(u), Some(doc)) => tenant_issuers(u, &doc)?,
            (Some(u), None) => tenant_issuers(u, &self.discovery(u).await?)?,
        };
        let keys = match jwks_url {
            // Inline keys never change: a refresh that rereads the tenant's issuer keeps them.
            None => self.published.load().keys.clone(),
            Some(url) => {
                let body = self.get_body(&url).await?;
                let set: JwkSet = serde_json::from_slice(&body).map_err(|e| JwksError::Parse {
                    url: url.to_string(),
                    what: "JWKS document",
                    detail: e.to_string(),
                })?;
                keys::parse_key_set(&set.keys, url.as_str(), false).map_err(|detail| {
                    JwksError::NoUsableKeys {
                        url: url.to_string(),
                        detail,
                    }
                })?
            }
        };
        let n = keys.len();
        self.published.store(Arc::new(Published { keys, issuers }));
        *self.fetched_at.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        Ok(n)
    }

    /// For a token whose key is not known: refreshes unless a refetch started less than
    /// `min_refetch_interval` ago. Concurrent callers wait for the one in flight. Returns
    /// whether this call refreshed successfully; either way the caller should look the key
    /// up again (a concurrent refetch may have brought it).
    pub async fn refetch_for_unknown_kid(&self) -> bool {
        if matches!(self.source, JwksSource::Inline(_)) {
            return false;
        }
        let mut last = self.last_refetch.lock().await;
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < self.min_refetch_interval) {
            return false;
        }
        *last = Some(now);
        match self.refresh().await {
            Ok(_) => true,
            Err(e) => {
                log::warn!("{e} (refetch for an unknown key; cached keys kept)");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_issuers_add_the_v1_issuer_of_the_discovered_guid() {
        let u: Url =
            "https://login.example/contoso.onmicrosoft.com/v2.0/.well-known/openid-configuration"
                .parse()
                .unwrap();
        let doc = Discovery {
            issuer: Some("https://login.example/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0".into()),
            jwks_uri: None,
        };
        assert_eq!(
            tenant_issuers(&u, &doc).unwrap(),
            [
                "https://login.example/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0",
                "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/"
            ]
        );
        let other = Discovery {
            issuer: Some("https://idp.example/realm".into()),
            jwks_uri: None,
        };
        assert_eq!(
            tenant_issuers(&u, &other).unwrap(),
            ["https://idp.example/realm"]
        );
        let none = Discovery {
            issuer: None,
            jwks_uri: None,
        };
        assert!(tenant_issuers(&u, &none).is_err());
        assert!(jwks_uri(&u, &none).is_err());
    }
}
