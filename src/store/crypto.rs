//! Sensitive fields at rest: provider keys, client secrets and secret managers' credentials are
//! sealed with XChaCha20-Poly1305 (an AEAD: a sealed blob cannot be read or altered without the
//! key) before they reach the database, so the database alone never reveals a credential. The
//! row's kind and id are the associated data: a blob copied to another row does not open.
//!
//! The key (32 bytes, base64 or hex) comes from an environment variable or a file; SQLite's
//! default store, when given none, makes one beside the database (mode 0600) on first start.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

use super::StoreError;

/// Format byte of a sealed blob; a new format (another cipher, a key id) gets another.
const FORMAT: u8 = 1;
const NONCE: usize = 24;

/// Where the store's key comes from. `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub enum KeySource {
    /// An environment variable's value (base64 or hex of 32 bytes).
    Env { name: String, value: Option<String> },
    /// A file holding the key (base64 or hex).
    File(PathBuf),
    /// A file made (with a fresh random key) when it does not exist yet.
    Generated(PathBuf),
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Env { name, .. } => write!(f, "Env({name})"),
            KeySource::File(p) => write!(f, "File({})", p.display()),
            KeySource::Generated(p) => write!(f, "Generated({})", p.display()),
        }
    }
}

pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(*****)")
    }
}

impl Sealer {
    pub fn new(key: &[u8; 32]) -> Sealer {
        Sealer {
            cipher: XChaCha20Poly1305::new(key.into()),
        }
    }

    /// The sealer of `source`; errors say which variable or file and what is wrong, never the
    /// key.
    pub fn load(source: &KeySource) -> Result<Sealer, StoreError> {
        let (text, from) = match source {
            KeySource::Env { name, value } => (
                value
                    .clone()
                    .ok_or_else(|| key_error(format!("environment variable {name} is not set")))?,
                format!("environment variable {name}"),
            ),
            KeySource::File(p) => (read_key_file(p)?, p.display().to_string()),
            KeySource::Generated(p) => {
                if !p.exists() {
                    generate_key_file(p)?;
                }
                (read_key_file(p)?, p.display().to_string())
            }
        };
        parse_key(text.trim())
            .map(|k| Sealer::new(&k))
            .ok_or_else(|| key_error(format!("{from} does not hold 32 bytes as base64 or hex")))
    }

    /// `plaintext` sealed for the row `aad` names.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, StoreError> {
        let mut nonce = [0u8; NONCE];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| key_error("sealing failed".into()))?;
        let mut out = Vec::with_capacity(1 + NONCE + sealed.len());
        out.push(FORMAT);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens a blob sealed for `aad`; a wrong key, another row's blob or a tampered one fails.
    pub fn open(&self, blob: &[u8], aad: &[u8]) -> Result<Vec<u8>, StoreError> {
        match blob.split_first() {
            Some((&FORMAT, rest)) if rest.len() > NONCE => {
                let (nonce, sealed) = rest.split_at(NONCE);
                self.cipher
                    .decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad })
                    .map_err(|_| {
                        key_error(
                            "a sealed field does not open with this key (wrong store key?)".into(),
                        )
                    })
            }
            _ => Err(key_error("a sealed field has an unknown format".into())),
        }
    }
}

fn key_error(message: String) -> StoreError {
    StoreError::Key(message)
}

fn read_key_file(p: &Path) -> Result<String, StoreError> {
    std::fs::read_to_string(p)
        .map_err(|e| key_error(format!("cannot read the key file {}: {e}", p.display())))
}

/// A new random key in `p` (base64), readable by its owner only.
fn generate_key_file(p: &Path) -> Result<(), StoreError> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| key_error(format!("cannot create {}: {e}", dir.display())))?;
    }
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    let text = base64::engine::general_purpose::STANDARD.encode(key);
    // Written whole under a private name, then linked into place: an instance starting beside
    // this one never reads a half-written key, and if it made its own first, that one stays.
    let tmp = p.with_extension(format!("tmp{}", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|_| f.sync_all()));
    let linked = written.and_then(|_| std::fs::hard_link(&tmp, p));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            log::warn!(
                "store: made a new key in {}; keep it (the stored credentials cannot be read without it)",
                p.display()
            );
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(key_error(format!(
            "cannot create the key file {}: {e}",
            p.display()
        ))),
    }
}

/// 32 bytes from base64 (standard or URL-safe) or 64 hex digits.
fn parse_key(text: &str) -> Option<[u8; 32]> {
    let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(text).ok()?
    } else {
        let e = &base64::engine::general_purpose::STANDARD;
        let u = &base64::engine::general_purpose::URL_SAFE;
        e.decode(text).or_else(|_| u.decode(text)).ok()?
    };
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_only_for_the_same_row_and_key() {
        let s = Sealer::new(&[7u8; 32]);
        let blob = s.seal(b"sk-secret-value", b"virtual_key/1").unwrap();
        assert!(
            !blob.windows(6).any(|w| w == b"secret"),
            "sealed, not encoded"
        );
        assert_eq!(s.open(&blob, b"virtual_key/1").unwrap(), b"sk-secret-value");
        assert!(
            s.open(&blob, b"virtual_key/2").is_err(),
            "another row's blob"
        );
        assert!(Sealer::new(&[8u8; 32])
            .open(&blob, b"virtual_key/1")
            .is_err());
        let mut tampered = blob.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(s.open(&tampered, b"virtual_key/1").is_err());
        assert_ne!(
            s.seal(b"x", b"a").unwrap(),
            s.seal(b"x", b"a").unwrap(),
            "fresh nonces"
        );
    }

    #[test]
    fn keys_parse_from_base64_or_hex_and_files_are_made_once() {
        let b64 = base64::engine::general_purpose::STANDARD.encode([1u8; 32]);
        assert_eq!(parse_key(&b64), Some([1u8; 32]));
        assert_eq!(parse_key(&hex::encode([2u8; 32])), Some([2u8; 32]));
        assert_eq!(parse_key("short"), None);
        let dir = std::env::temp_dir().join(format!("keyway-key-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("store.key");
        let a = Sealer::load(&KeySource::Generated(p.clone())).unwrap();
        let blob = a.seal(b"v", b"r").unwrap();
        let b = Sealer::load(&KeySource::Generated(p.clone())).unwrap();
        assert_eq!(
            b.open(&blob, b"r").unwrap(),
            b"v",
            "the same key on the next start"
        );
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let missing = KeySource::Env {
            name: "KEYWAY_STORE_KEY".into(),
            value: None,
        };
        assert!(Sealer::load(&missing)
            .unwrap_err()
            .to_string()
            .contains("KEYWAY_STORE_KEY"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
