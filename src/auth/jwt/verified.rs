//! Tokens whose signature and claims were already checked, so a client that sends the same JWT
//! on every request pays for one RSA/ECDSA verification, not one per request. Keyed by the
//! SHA-256 of the exact token string (a forged or altered token can never hit). A hit still
//! re-checks `exp`/`nbf` against the clock and that the signing key is still published; entries
//! live at most `TTL`, so claims of a revoked key's tokens cannot outlive a key rotation by more.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::claims::ValidatedClaims;

const TTL: Duration = Duration::from_secs(300);
const CAPACITY: usize = 10_000;

pub struct Verified {
    /// Thumbprint of the key that verified the token: a hit counts only while it is published.
    pub key: [u8; 32],
    pub claims: Arc<ValidatedClaims>,
    at: Instant,
}

pub struct VerifiedTokens(quick_cache::sync::Cache<[u8; 32], Arc<Verified>>);

impl std::fmt::Debug for VerifiedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VerifiedTokens({} cached)", self.0.len())
    }
}

impl Default for VerifiedTokens {
    fn default() -> Self {
        VerifiedTokens(quick_cache::sync::Cache::new(CAPACITY))
    }
}

impl VerifiedTokens {
    pub fn digest(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    /// A previous verification of this token, if still within `TTL`.
    pub fn get(&self, digest: &[u8; 32]) -> Option<Arc<Verified>> {
        self.0.get(digest).filter(|v| v.at.elapsed() < TTL)
    }

    pub fn insert(&self, digest: [u8; 32], key: [u8; 32], claims: Arc<ValidatedClaims>) {
        self.0.insert(
            digest,
            Arc::new(Verified {
                key,
                claims,
                at: Instant::now(),
            }),
        );
    }
}
