//! An Entra client secret as a token source reads it: a value from the config, or a lookup
//! into the secret cache (a secret mapping) made at every token fetch. Shared by `spec` (what a
//! credential is) and `entra` (the exchange that presents it).

use std::sync::Arc;

use async_trait::async_trait;

use super::CredentialError;
use crate::secret::Secret;

/// An Entra client secret: the value itself, or a lookup in the secret cache (a secret
/// mapping), read at each token fetch.
#[derive(Debug, Clone)]
pub enum ClientSecret {
    Value(Secret),
    Lookup(Arc<dyn SecretLookup>),
}

/// A mapped secret as a token source sees it; implemented by the secret cache.
#[async_trait]
pub trait SecretLookup: Send + Sync + std::fmt::Debug {
    /// Stable identity of the mapping (reference slug and key), for the token cache key.
    fn label(&self) -> &str;
    /// The current value, fetched when the cache has none.
    async fn current(&self) -> Result<Secret, CredentialError>;
    /// The identity provider refused `value`: fetch afresh next time.
    fn refused(&self, value: &Secret);
}
