//! The rows a router holds: one per provider, one per front-door route, one per virtual key,
//! and what it needs to turn header-selected Azure identities into token slots. Built by the
//! runtime builder; read by every request on that runtime.

use std::sync::Arc;

use http::HeaderValue;

use super::credentials::{ConfiguredKey, MappedKey};
use super::strategy::Tree;
use super::url::BaseUrl;
use super::UpstreamAuth;
use crate::cache::secrets::Entry;
use crate::cache::tokens::TokenCache;
use crate::credentials::spec::IdentityContext;
use crate::credentials::workload::WorkloadDefaults;
use crate::vocab::Provider;

/// A host known when the runtime is built: its `Host` header is built once.
#[derive(Debug, Clone)]
pub struct FixedHost {
    pub host: Arc<str>,
    pub host_header: HeaderValue,
}

impl FixedHost {
    /// `None` for a base URL whose host still holds a `{resource}`/`{region}` placeholder.
    pub fn of(base: &BaseUrl) -> Option<FixedHost> {
        if base.has_placeholder() {
            return None;
        }
        Some(FixedHost {
            host: Arc::from(&*base.host),
            host_header: HeaderValue::from_str(&base.host_header(&base.host)).ok()?,
        })
    }
}

/// One provider: where it is and the key used when a request brings none.
#[derive(Debug)]
pub struct ProviderRoute {
    pub base: BaseUrl,
    pub fixed: Option<FixedHost>,
    /// The configuration's key, as its headers.
    pub default_key: Option<ConfiguredKey>,
    /// The default key from a secret reference.
    pub mapped_key: Option<MappedKey>,
    pub api_version: Option<Box<str>>,
    /// The configuration overrides the base URL (its host is resolved before start-up ends).
    pub configured: bool,
}

/// One `[[routes]]` entry: a path prefix (and host) sent to fixed upstreams, each with its own
/// credential.
#[derive(Debug)]
pub struct FrontDoor {
    pub name: String,
    pub path_prefix: String,
    pub host: Option<String>,
    pub strip_prefix: bool,
    /// One target (a plain route), or several walked by the route's strategy.
    pub targets: Arc<Tree<FrontDoorTarget>>,
}

/// One upstream of a front-door route and the credential it gets.
#[derive(Debug)]
pub struct FrontDoorTarget {
    pub provider: Provider,
    pub base: BaseUrl,
    pub fixed: FixedHost,
    pub auth: Option<UpstreamAuth>,
    /// The secret entry behind `auth`, whose reference's workspace list the caller must be on.
    pub secret: Option<Arc<Entry>>,
}

/// What a virtual key routes to: its provider, the Azure fields it fills in and its credential.
#[derive(Debug)]
pub struct VirtualKeyRoute {
    pub provider: Provider,
    pub resource_name: Option<String>,
    pub deployment_id: Option<String>,
    pub api_version: Option<String>,
    pub auth: Option<UpstreamAuth>,
    pub secret: Option<Arc<Entry>>,
}

/// How credentials selected by request headers (the open posture's Azure auth modes) become
/// token slots.
#[derive(Debug)]
pub struct HeaderCredentials {
    pub tokens: Arc<TokenCache>,
    pub identity: IdentityContext,
    pub workload: WorkloadDefaults,
    /// Whether headers may select keyway's own identities (managed, workload, entraFederated).
    pub ambient: bool,
}
