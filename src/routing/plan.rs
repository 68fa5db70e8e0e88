//! What routing decides for one request, and why it may refuse.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use http::{HeaderName, HeaderValue};

use crate::cache::secrets::{Cached, Entry};
use crate::cache::tokens::TokenSlot;
use crate::vocab::{Provider, RouteId};

/// The credential header to send upstream; its value is marked sensitive.
#[derive(Debug, Clone)]
pub struct AuthHeader {
    pub name: HeaderName,
    pub value: HeaderValue,
}

/// How the upstream credential is obtained.
#[derive(Debug, Clone)]
pub enum UpstreamAuth {
    /// A header known when routing (API keys).
    Static(AuthHeader),
    /// `Authorization: Bearer` from a cached token (Entra, managed, workload, federated).
    Token(Arc<TokenSlot>),
    /// An API key from a secret manager (a secret mapping on `key`).
    Secret(Arc<SecretAuth>),
}

/// How a mapped key becomes its header; the last header built is kept per value version, so a
/// request formats nothing while the value is unchanged.
#[derive(Debug)]
pub struct SecretAuth {
    /// The secret store entry holding the key.
    pub entry: Arc<Entry>,
    pub name: HeaderName,
    pub bearer: bool,
    built: ArcSwapOption<(u64, HeaderValue)>,
}

impl SecretAuth {
    pub fn new(entry: Arc<Entry>, name: HeaderName, bearer: bool) -> SecretAuth {
        SecretAuth {
            entry,
            name,
            bearer,
            built: ArcSwapOption::empty(),
        }
    }

    /// The header value for `c`; `None` when the secret holds characters a header cannot.
    pub fn header(&self, c: &Cached) -> Option<HeaderValue> {
        if let Some(b) = self.built.load().as_ref() {
            if b.0 == c.version {
                return Some(b.1.clone());
            }
        }
        let v = match self.bearer {
            true => crate::vocab::bearer(c.value.expose())?,
            false => {
                let mut v = HeaderValue::from_str(c.value.expose()).ok()?;
                v.set_sensitive(true);
                v
            }
        };
        self.built.store(Some(Arc::new((c.version, v.clone()))));
        Some(v)
    }
}

/// Everything the proxy needs to send one request upstream.
#[derive(Debug, Clone)]
pub struct Plan {
    pub provider: Provider,
    pub route: RouteId,
    pub tls: bool,
    /// Host to resolve and to present as SNI.
    pub host: Arc<str>,
    pub port: u16,
    pub host_header: HeaderValue,
    /// New path and query; `None` keeps the client's.
    pub path: Option<String>,
    pub auth: Option<UpstreamAuth>,
    /// Add `anthropic-version` when the client did not send one.
    pub add_anthropic_version: bool,
    /// A caller-chosen host: its resolved addresses must be public.
    pub check_resolved_ips: bool,
    /// Per-request override of the upstream read timeout.
    pub read_timeout: Option<Duration>,
    /// The virtual key the request uses, if any.
    pub virtual_key: Option<Arc<str>>,
    /// The secret-store entry behind `auth` (a mapped key or client secret), whose
    /// reference's workspace list the caller must be on.
    pub secret: Option<Arc<Entry>>,
}

/// Why a request cannot be routed. Each maps to a 4xx in `error.rs`; none is ever half-sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("no route for this path: Portkey-style requests go to /v1/..., other paths need a configured route")]
    NoRoute,
    #[error("Either x-portkey-config or x-portkey-provider header is required")]
    MissingProvider,
    #[error("Invalid provider passed in {header}: '{slug}' is not a provider keyway knows")]
    InvalidProvider { header: &'static str, slug: String },
    #[error("{header}: {problem}")]
    BadHeader {
        header: &'static str,
        problem: String,
    },
    #[error("{header} is required for provider {provider}")]
    MissingField {
        header: &'static str,
        provider: Provider,
    },
    #[error("x-portkey-config: the stored config belongs to another workspace")]
    ConfigForbidden,
    #[error("x-portkey-custom-host: {0}")]
    ForbiddenCustomHost(String),
    #[error("no API key for provider {0}: send x-portkey-api-key or Authorization: Bearer, or set providers.{0}.api_key in the config")]
    MissingKey(Provider),
    #[error("{header} is required for azure auth mode {mode}")]
    MissingAuthField {
        header: &'static str,
        mode: &'static str,
    },
    #[error("too many distinct credentials in use; try again later")]
    TokenCacheFull,
    /// A state the runtime builder rules out (a table entry auth vouched for is missing).
    #[error("internal routing error: {0}")]
    Internal(&'static str),
    #[error("{header}: {what}")]
    Unsupported {
        header: &'static str,
        what: &'static str,
    },
}
