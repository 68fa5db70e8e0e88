//! Gateway API keys: `kw-…` secrets the gateway hands out once and stores only as
//! `sha256:<hex>`. A presented key is hashed, looked up by digest, then compared in constant time
//! (the map lookup only narrows; the `subtle` compare is what accepts). Unknown and revoked keys
//! get the same answer, so a caller cannot probe which keys once existed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{AuthError, AuthMethod, Caller, Role, INVALID_API_KEY};

/// Prefix of every key `new_key` makes; also how a gateway key is told from a provider key in logs.
pub const KEY_PREFIX: &str = "kw-";
/// Prefix of a stored hash line.
pub const HASH_PREFIX: &str = "sha256:";

/// One validated `[[api_keys]]` entry.
#[derive(Debug, Clone)]
pub struct ApiKeyEntry {
    pub name: Arc<str>,
    pub digest: [u8; 32],
    /// `None`: an organisation-level key.
    pub workspace: Option<Arc<str>>,
    pub role: Role,
    /// The key is refused from this instant on.
    pub expires_at: Option<SystemTime>,
    pub revoked: bool,
    pub allowed_providers: Option<Arc<[String]>>,
    pub allowed_models: Option<Arc<[String]>>,
    pub virtual_key: Option<Arc<str>>,
}

/// An accepted key: its name (for logs) and the caller it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMatch {
    pub name: Arc<str>,
    pub caller: Caller,
}

/// All configured gateway keys, indexed by the SHA-256 digest of the key.
#[derive(Debug, Clone, Default)]
pub struct ApiKeyStore {
    by_digest: HashMap<[u8; 32], ApiKeyEntry>,
}

impl ApiKeyStore {
    /// Entries come from config validation, which has already refused duplicate hashes; a
    /// duplicate here keeps the later entry.
    pub fn new(entries: impl IntoIterator<Item = ApiKeyEntry>) -> Self {
        let by_digest = entries.into_iter().map(|e| (e.digest, e)).collect();
        ApiKeyStore { by_digest }
    }

    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    /// Checks a presented key at `now`. Unknown or revoked: `Invalid`; past `expires_at`:
    /// `Expired`.
    pub fn authenticate(&self, presented: &str, now: SystemTime) -> Result<KeyMatch, AuthError> {
        let invalid = AuthError::Invalid {
            reason: INVALID_API_KEY,
        };
        let digest = digest(presented);
        let entry = self.by_digest.get(&digest).ok_or(invalid.clone())?;
        if !bool::from(entry.digest.ct_eq(&digest)) {
            return Err(invalid);
        }
        if entry.revoked {
            log::info!("gateway API key '{}' is revoked", entry.name);
            return Err(invalid);
        }
        if entry.expires_at.is_some_and(|t| now >= t) {
            return Err(AuthError::Expired);
        }
        Ok(KeyMatch {
            name: entry.name.clone(),
            caller: Caller {
                workspace: entry.workspace.clone(),
                role: entry.role,
                method: AuthMethod::ApiKey,
                allowed_providers: entry.allowed_providers.clone(),
                allowed_models: entry.allowed_models.clone(),
                virtual_key: entry.virtual_key.clone(),
                // The key's name (never the key): who did what, in logs and the audit log.
                subject: Some(entry.name.clone()),
            },
        })
    }
}

/// SHA-256 of a key as presented.
pub fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The config line for a key: `sha256:<64 lowercase hex>`.
pub fn hash_line(key: &str) -> String {
    format!("{HASH_PREFIX}{}", hex::encode(digest(key)))
}

/// Parses a `sha256:<64 lowercase hex>` hash line into its digest.
pub fn parse_hash_line(line: &str) -> Result<[u8; 32], String> {
    let hex_part = line
        .strip_prefix(HASH_PREFIX)
        .filter(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .ok_or("must be 'sha256:' followed by 64 lowercase hex digits (see `keyway keys new`)")?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// A fresh key (`kw-` + 32 random bytes, base64url) and its hash line. The thread RNG is a
/// CSPRNG seeded from the OS.
pub fn new_key() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let key = format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let line = hash_line(&key);
    (key, line)
}

/// The gateway key a request presents: `x-portkey-api-key`, else `Authorization: Bearer …`
/// (scheme case-insensitive). Empty or non-visible-ASCII values count as absent, so an empty
/// `x-portkey-api-key` falls through to `Authorization`.
pub fn presented_key(headers: &http::HeaderMap) -> Option<&str> {
    let plain = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    // The provider SDKs pointed at a front-door route send their api_key in their own header.
    plain("x-portkey-api-key")
        .or_else(|| {
            let auth = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
            crate::vocab::strip_bearer(auth)
        })
        .or_else(|| plain("api-key"))
        .or_else(|| plain("x-api-key"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn entry(key: &str) -> ApiKeyEntry {
        ApiKeyEntry {
            name: "ci".into(),
            digest: digest(key),
            workspace: Some("team-a".into()),
            role: Role::Member,
            expires_at: None,
            revoked: false,
            allowed_providers: Some(vec!["openai".to_owned()].into()),
            allowed_models: None,
            virtual_key: Some("vk1".into()),
        }
    }

    #[test]
    fn new_keys_are_random_and_hash_to_their_line() {
        let (k1, h1) = new_key();
        let (k2, _) = new_key();
        assert_ne!(k1, k2);
        assert!(k1.starts_with("kw-") && k1.len() == 3 + 43, "{k1}");
        assert_eq!(h1, hash_line(&k1));
        assert_eq!(parse_hash_line(&h1).unwrap(), digest(&k1));
        assert!(h1.starts_with("sha256:") && h1.len() == 7 + 64);
    }

    #[test]
    fn hash_lines_are_strict() {
        let good = hash_line("x");
        assert!(parse_hash_line(&good).is_ok());
        assert!(parse_hash_line(&good.to_uppercase()).is_err());
        assert!(parse_hash_line(&good.replace("sha256:", "sha512:")).is_err());
        assert!(parse_hash_line(&good[..good.len() - 1]).is_err());
        assert!(parse_hash_line(&format!("{good}0")).is_err());
        let mut bad = good.clone();
        bad.pop();
        bad.push('g');
        assert!(parse_hash_line(&bad).is_err());
    }

    #[test]
    fn accepts_a_known_key_and_builds_its_caller() {
        let store = ApiKeyStore::new([entry("kw-good")]);
        let m = store.authenticate("kw-good", SystemTime::now()).unwrap();
        assert_eq!(&*m.name, "ci");
        assert_eq!(m.caller.workspace.as_deref(), Some("team-a"));
        assert_eq!(m.caller.method, AuthMethod::ApiKey);
        assert_eq!(m.caller.virtual_key.as_deref(), Some("vk1"));
        assert_eq!(
            m.caller.allowed_providers.as_deref(),
            Some(&["openai".to_owned()][..])
        );
    }

    #[test]
    fn unknown_and_revoked_keys_look_the_same() {
        let mut revoked = entry("kw-old");
        revoked.revoked = true;
        let store = ApiKeyStore::new([revoked]);
        let now = SystemTime::now();
        let a = store.authenticate("kw-old", now).unwrap_err();
        let b = store.authenticate("kw-unknown", now).unwrap_err();
        assert_eq!(a, b);
        assert_eq!(a.outcome(), "invalid");
        assert!(!a.to_string().contains("kw-"));
    }

    #[test]
    fn expiry_is_exclusive_of_the_instant() {
        let exp = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut e = entry("kw-t");
        e.expires_at = Some(exp);
        let store = ApiKeyStore::new([e]);
        let before = exp - Duration::from_nanos(1);
        assert!(store.authenticate("kw-t", before).is_ok());
        assert_eq!(store.authenticate("kw-t", exp), Err(AuthError::Expired));
        let after = exp + Duration::from_secs(1);
        assert_eq!(store.authenticate("kw-t", after), Err(AuthError::Expired));
    }

    #[test]
    fn presented_key_prefers_the_portkey_header() {
        let mut h = http::HeaderMap::new();
        assert_eq!(presented_key(&h), None);
        h.insert("authorization", "bearer  kw-b ".parse().unwrap());
        assert_eq!(presented_key(&h), Some("kw-b"));
        h.insert("x-portkey-api-key", "kw-a".parse().unwrap());
        assert_eq!(presented_key(&h), Some("kw-a"));
        h.insert("x-portkey-api-key", "  ".parse().unwrap());
        assert_eq!(presented_key(&h), Some("kw-b"));
        let mut h = http::HeaderMap::new();
        h.insert("authorization", "Basic dXNlcg==".parse().unwrap());
        assert_eq!(presented_key(&h), None);
        h.insert("authorization", "Bearer".parse().unwrap());
        assert_eq!(presented_key(&h), None);
    }
}
