//! Published keys as the validator uses them: a JWK turned into a verification key with the
//! algorithms it may verify, named by its `kid` (when it has one) and by its RFC 7638
//! thumbprint (always), so a token that names no key can still be matched and a verification can
//! be remembered by what the key *is*. Only asymmetric keys are kept.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// RSA keys below 2048 bits are refused (NIST SP 800-131A; aws-lc refuses them too).
const MIN_RSA_MODULUS_BYTES: usize = 256;

/// The RSA algorithms: the first six of [`ASYMMETRIC`].
pub(super) const RSA_ALGS: &[Algorithm] = ASYMMETRIC.split_at(6).0;

/// One JSON Web Key as published (RFC 7517/7518/8037). Unknown members (`x5c`, `x5t`, …) are
/// ignored: providers publish many.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Jwk {
    #[serde(default)]
    pub kty: String,
    pub kid: Option<String>,
    pub alg: Option<String>,
    #[serde(rename = "use")]
    pub use_: Option<String>,
    pub crv: Option<String>,
    pub n: Option<String>,
    pub e: Option<String>,
    pub x: Option<String>,
    pub y: Option<String>,
}

/// A usable verification key and the algorithms a token may name to use it.
pub struct VerifyKey {
    /// `None` for a key published without a `kid` (single-key providers).
    pub kid: Option<String>,
    /// SHA-256 JWK thumbprint (RFC 7638): the key's identity whatever its `kid`.
    pub thumbprint: [u8; 32],
    pub key: DecodingKey,
    pub algs: &'static [Algorithm],
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("algs", &self.algs)
            .finish_non_exhaustive()
    }
}

/// A published key set: by `kid`, in publication order, and by thumbprint.
#[derive(Debug, Default, Clone)]
pub struct KeySet {
    by_kid: HashMap<String, Arc<VerifyKey>>,
    ordered: Vec<Arc<VerifyKey>>,
    thumbprints: HashSet<[u8; 32]>,
}

impl KeySet {
    pub fn len(&self) -> usize {
        self.ordered.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ordered.is_empty()
    }

    pub fn get(&self, kid: &str) -> Option<&Arc<VerifyKey>> {
        self.by_kid.get(kid)
    }

    /// Whether the key with this thumbprint is still published.
    pub fn publishes(&self, thumbprint: &[u8; 32]) -> bool {
        self.thumbprints.contains(thumbprint)
    }

    /// Keys that may verify a token signed with `alg`, in publication order, at most `limit`.
    pub fn fitting(&self, alg: Algorithm, limit: usize) -> impl Iterator<Item = &Arc<VerifyKey>> {
        self.ordered
            .iter()
            .filter(move |k| k.algs.contains(&alg))
            .take(limit)
    }

    fn insert(&mut self, k: VerifyKey) -> bool {
        if !self.thumbprints.insert(k.thumbprint) {
            return false;
        }
        let k = Arc::new(k);
        if let Some(kid) = &k.kid {
            self.by_kid.insert(kid.clone(), k.clone());
        }
        self.ordered.push(k);
        true
    }
}

/// Parses every key; unusable ones are skipped (logged) unless `strict`, where the first one is
/// an error. An empty result is an error either way (`Err` carries the reasons).
pub fn parse_key_set(jwks: &[Jwk], origin: &str, strict: bool) -> Result<KeySet, String> {
    let mut set = KeySet::default();
    let mut skipped = Vec::new();
    for (i, jwk) in jwks.iter().enumerate() {
        let kid = jwk.kid.as_deref().unwrap_or("<none>");
        match parse_jwk(jwk) {
            Ok(k) => {
                if !set.insert(k) {
                    log::debug!("jwks: {origin}: key {i} (kid {kid}) is published twice");
                }
            }
            Err(why) => {
                let msg = format!("key {i} (kid {kid}): {why}");
                if strict {
                    return Err(msg);
                }
                log::debug!("jwks: {origin}: skipping {msg}");
                skipped.push(msg);
            }
        }
    }
    if set.is_empty() {
        return Err(if skipped.is_empty() {
            "the set is empty".to_owned()
        } else {
            skipped.join("; ")
        });
    }
    Ok(set)
}

/// Turns one JWK into a verification key with the algorithms it may verify. The `alg` member,
/// when present, is the only algorithm allowed; without it the algorithm is derived from the key
/// type where that is unambiguous (EC curve, Ed25519), and an RSA key allows RS* and PS*.
/// Symmetric keys, encryption keys, unknown key types and curves and short RSA moduli are
/// refused.
pub fn parse_jwk(jwk: &Jwk) -> Result<VerifyKey, String> {
    let kid = jwk.kid.clone().filter(|k| !k.is_empty());
    if let Some(u) = jwk.use_.as_deref() {
        if u != "sig" {
            return Err(format!("use is '{u}', not 'sig'"));
        }
    }
    let member = |name: &str, v: &Option<String>| -> Result<String, String> {
        v.as_deref()
            .map(|s| s.trim_end_matches('=').to_owned())
            .ok_or_else(|| format!("{} key without '{name}'", jwk.kty))
    };
    let bytes = |name: &str, v: &str| -> Result<Vec<u8>, String> {
        URL_SAFE_NO_PAD
            .decode(v)
            .map_err(|e| format!("'{name}' is not base64url: {e}"))
    };
    let (key, algs, canonical): (DecodingKey, &'static [Algorithm], String) = match jwk.kty.as_str()
    {
        "RSA" => {
            let (n64, e64) = (member("n", &jwk.n)?, member("e", &jwk.e)?);
            let (n, e) = (bytes("n", &n64)?, bytes("e", &e64)?);
            let bits_bytes = n.iter().skip_while(|b| **b == 0).count();
            if bits_bytes < MIN_RSA_MODULUS_BYTES {
                return Err(format!(
                    "RSA modulus of {} bits; at least 2048 required",
                    bits_bytes * 8
                ));
            }
            let canonical = format!(r#"{{"e":"{e64}","kty":"RSA","n":"{n64}"}}"#);
            (
                DecodingKey::from_rsa_raw_components(&n, &e),
                RSA_ALGS,
                canonical,
            )
        }
        "EC" => {
            let (crv, len, algs): (&str, usize, &'static [Algorithm]) = match jwk.crv.as_deref() {
                Some("P-256") => ("P-256", 32, &[Algorithm::ES256]),
                Some("P-384") => ("P-384", 48, &[Algorithm::ES384]),
                other => return Err(format!("unsupported EC curve {other:?}")),
            };
            let (x64, y64) = (member("x", &jwk.x)?, member("y", &jwk.y)?);
            let (x, y) = (bytes("x", &x64)?, bytes("y", &y64)?);
            if x.len() != len || y.len() != len {
                return Err(format!("EC coordinates are not {len} bytes"));
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            let canonical = format!(r#"{{"crv":"{crv}","kty":"EC","x":"{x64}","y":"{y64}"}}"#);
            (DecodingKey::from_ec_der(&point), algs, canonical)
        }
        "OKP" => {
            if jwk.crv.as_deref() != Some("Ed25519") {
                return Err(format!("unsupported OKP curve {:?}", jwk.crv));
            }
            let x64 = member("x", &jwk.x)?;
            if bytes("x", &x64)?.len() != 32 {
                return Err("Ed25519 key is not 32 bytes".into());
            }
            let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x64}"}}"#);
            let x = bytes("x", &x64)?;
            (DecodingKey::from_ed_der(&x), &[Algorithm::EdDSA], canonical)
        }
        "oct" => return Err("symmetric key refused: only asymmetric keys verify tokens".into()),
        other => return Err(format!("unsupported key type '{other}'")),
    };
    let algs = match jwk.alg.as_deref() {
        None => algs,
        Some(a) => {
            let alg = algs
                .iter()
                .find(|x| alg_name(**x) == a)
                .ok_or_else(|| format!("alg '{a}' does not fit a {} key", jwk.kty))?;
            std::slice::from_ref(alg_static(*alg))
        }
    };
    Ok(VerifyKey {
        kid,
        thumbprint: Sha256::digest(canonical.as_bytes()).into(),
        key,
        algs,
    })
}

/// The JOSE name of an asymmetric algorithm this module handles.
pub fn alg_name(a: Algorithm) -> &'static str {
    match a {
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::EdDSA => "EdDSA",
        _ => "",
    }
}

/// Every asymmetric algorithm a token may name, as `'static` singletons.
pub const ASYMMETRIC: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Parses a JOSE `alg` into one of [`ASYMMETRIC`]; `none`, HS* and anything else → `None`.
pub fn asymmetric_alg(name: &str) -> Option<Algorithm> {
    ASYMMETRIC.iter().copied().find(|a| alg_name(*a) == name)
}

fn alg_static(a: Algorithm) -> &'static Algorithm {
    ASYMMETRIC
        .iter()
        .find(|x| **x == a)
        .unwrap_or(&ASYMMETRIC[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rsa_jwk(alg: Option<&str>) -> Jwk {
        Jwk {
            kty: "RSA".into(),
            kid: Some("r1".into()),
            alg: alg.map(Into::into),
            n: Some(URL_SAFE_NO_PAD.encode([0xc5u8; 256])),
            e: Some("AQAB".into()),
            ..Jwk::default()
        }
    }

    #[test]
    fn rsa_without_alg_allows_rs_and_ps_only() {
        let k = parse_jwk(&rsa_jwk(None)).unwrap();
        assert_eq!(k.algs, RSA_ALGS);
        let k = parse_jwk(&rsa_jwk(Some("PS384"))).unwrap();
        assert_eq!(k.algs, &[Algorithm::PS384]);
        assert!(parse_jwk(&rsa_jwk(Some("ES256"))).is_err());
        assert!(parse_jwk(&rsa_jwk(Some("HS256"))).is_err());
    }

    #[test]
    fn refuses_short_rsa_symmetric_and_encryption_keys() {
        let mut short = rsa_jwk(None);
        short.n = Some(URL_SAFE_NO_PAD.encode([0xc5u8; 128]));
        assert!(parse_jwk(&short).unwrap_err().contains("1024 bits"));
        let oct = Jwk {
            kty: "oct".into(),
            kid: Some("h".into()),
            ..Jwk::default()
        };
        assert!(parse_jwk(&oct).unwrap_err().contains("symmetric"));
        let mut enc = rsa_jwk(None);
        enc.use_ = Some("enc".into());
        assert!(parse_jwk(&enc).is_err());
        let unknown = Jwk {
            kty: "XYZ".into(),
            ..rsa_jwk(None)
        };
        assert!(parse_jwk(&unknown).unwrap_err().contains("unsupported"));
    }

    #[test]
    fn kidless_keys_are_kept_and_named_by_thumbprint() {
        let mut nokid = rsa_jwk(None);
        nokid.kid = None;
        let k = parse_jwk(&nokid).unwrap();
        assert_eq!(k.kid, None);
        // The thumbprint ignores kid, alg and use: the same key material is the same key.
        assert_eq!(
            k.thumbprint,
            parse_jwk(&rsa_jwk(Some("RS256"))).unwrap().thumbprint
        );
        let mut other = rsa_jwk(None);
        other.n = Some(URL_SAFE_NO_PAD.encode([0xc7u8; 256]));
        assert_ne!(k.thumbprint, parse_jwk(&other).unwrap().thumbprint);
        let set = parse_key_set(&[nokid, other], "test", true).unwrap();
        assert_eq!(set.len(), 2);
        assert!(set.publishes(&k.thumbprint));
        assert_eq!(set.fitting(Algorithm::RS256, 8).count(), 2);
        assert_eq!(set.fitting(Algorithm::RS256, 1).count(), 1);
        assert_eq!(set.fitting(Algorithm::ES256, 8).count(), 0);
    }

    #[test]
    fn rfc7638_thumbprint_of_the_rfc_example_key() {
        // RFC 7638 §3.1: the example RSA key's thumbprint.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let jwk = Jwk {
            kty: "RSA".into(),
            n: Some(n.into()),
            e: Some("AQAB".into()),
            ..Jwk::default()
        };
        assert_eq!(
            URL_SAFE_NO_PAD.encode(parse_jwk(&jwk).unwrap().thumbprint),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn ec_and_okp_algs_follow_the_curve() {
        let ec = |crv: &str, len: usize, alg: Option<&str>| Jwk {
            kty: "EC".into(),
            kid: Some("e".into()),
            crv: Some(crv.into()),
            alg: alg.map(Into::into),
            x: Some(URL_SAFE_NO_PAD.encode(vec![1u8; len])),
            y: Some(URL_SAFE_NO_PAD.encode(vec![2u8; len])),
            ..Jwk::default()
        };
        assert_eq!(
            parse_jwk(&ec("P-256", 32, None)).unwrap().algs,
            &[Algorithm::ES256]
        );
        assert_eq!(
            parse_jwk(&ec("P-384", 48, None)).unwrap().algs,
            &[Algorithm::ES384]
        );
        assert!(parse_jwk(&ec("P-256", 32, Some("ES384"))).is_err());
        assert!(parse_jwk(&ec("P-521", 66, None)).is_err());
        let okp = Jwk {
            kty: "OKP".into(),
            kid: Some("o".into()),
            crv: Some("Ed25519".into()),
            x: Some(URL_SAFE_NO_PAD.encode([3u8; 32])),
            ..Jwk::default()
        };
        assert_eq!(parse_jwk(&okp).unwrap().algs, &[Algorithm::EdDSA]);
    }

    #[test]
    fn algorithm_names() {
        assert_eq!(asymmetric_alg("ES384"), Some(Algorithm::ES384));
        for refused in ["none", "HS256", "HS512", "", "rs256"] {
            assert_eq!(asymmetric_alg(refused), None, "{refused}");
        }
    }
}
