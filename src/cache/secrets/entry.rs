//! One cached secret: what it is (`SecretKey`, the digest of its reference's definition and the
//! key it reads), where it comes from (its fetcher), who may use it, and its renewal state. A
//! configuration reload that keeps a reference keeps its entries, values included.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use async_trait::async_trait;

use super::SecretStore;
use crate::cache::renewal::{Renewal, Timing};
use crate::credentials::secrets::{Fetcher, ManagerType, SecretError};
use crate::credentials::spec::SecretLookup;
use crate::credentials::{AuthMode, CredentialError};
use crate::secret::Secret;

/// What an entry is: a digest of everything that decides its value (manager, endpoint,
/// credentials, path, key). Equal keys share one entry and one cached value.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretKey(pub [u8; 32]);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", hex::encode(&self.0[..6]))
    }
}

/// An entry's description, from the configuration.
#[derive(Debug, Clone)]
pub struct EntrySpec {
    pub key: SecretKey,
    pub slug: Arc<str>,
    pub manager: ManagerType,
    /// The key of a JSON or multi-key secret; `None`: the whole text.
    pub secret_key: Option<String>,
    /// `None`: every workspace may use it.
    pub allowed: Option<Arc<[Arc<str>]>>,
}

#[derive(Debug)]
pub struct Entry {
    pub spec: EntrySpec,
    pub(super) fetcher: Fetcher,
    /// Serializes renewals of a value that exists (the placeholder guard covers cold ones).
    pub(super) renewing: tokio::sync::Mutex<()>,
    pub(super) last_used: AtomicU64,
    pub(super) renewal: Renewal<SecretError>,
    /// The version an upstream refused (0: none).
    pub(super) rejected: AtomicU64,
    /// When the last successful fetch happened, plus 1 (0: never); outlives a value dropped
    /// past its bound, so the age gauge still sees it.
    pub(super) fetched_ok_ms: AtomicU64,
}

impl Entry {
    pub(super) fn new(spec: EntrySpec, fetcher: Fetcher, timing: Timing, due: bool) -> Entry {
        Entry {
            spec,
            fetcher,
            renewing: tokio::sync::Mutex::new(()),
            last_used: AtomicU64::new(0),
            renewal: Renewal::new(timing, due),
            rejected: AtomicU64::new(0),
            fetched_ok_ms: AtomicU64::new(0),
        }
    }

    pub fn slug(&self) -> &Arc<str> {
        &self.spec.slug
    }

    /// Whether a request in `workspace` may use this secret; `None` (open posture) may use
    /// only references open to every workspace.
    pub fn allows(&self, workspace: Option<&str>) -> bool {
        match (&self.spec.allowed, workspace) {
            (None, _) => true,
            (Some(list), Some(w)) => list.iter().any(|a| &**a == w),
            (Some(_), None) => false,
        }
    }

    pub(super) fn mark_used(&self, now: u64) {
        self.last_used.store(now, Relaxed);
    }
}

/// A mapped Entra client secret, as the token source reads it.
#[derive(Debug)]
pub struct MappedSecret {
    pub store: Arc<SecretStore>,
    pub entry: Arc<Entry>,
    label: String,
}

impl MappedSecret {
    pub fn new(store: Arc<SecretStore>, entry: Arc<Entry>) -> MappedSecret {
        // Starts with NUL, which no header value can hold: a caller cannot send a label as its
        // client secret and ride on the mapped credential's token.
        let label = format!("\0secret-reference\0{}", hex::encode(entry.spec.key.0));
        MappedSecret {
            store,
            entry,
            label,
        }
    }
}

#[async_trait]
impl SecretLookup for MappedSecret {
    fn label(&self) -> &str {
        &self.label
    }

    async fn current(&self) -> Result<Secret, CredentialError> {
        self.store
            .get(&self.entry)
            .await
            .map(|c| c.value.clone())
            .map_err(|e| match e.cause.is_transient() {
                true => CredentialError::Unavailable {
                    mode: AuthMode::Entra,
                    endpoint: format!("secret reference '{}'", e.slug),
                    reason: e.cause.outcome().into(),
                },
                false => CredentialError::Setup {
                    mode: AuthMode::Entra,
                    message: format!("client secret: {e}"),
                },
            })
    }

    fn refused(&self, value: &Secret) {
        if let Some(c) = self.store.value(&self.entry) {
            if &c.value == value {
                self.store.reject(&self.entry, c.version);
            }
        }
    }
}
