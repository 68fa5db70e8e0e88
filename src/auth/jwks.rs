//! JWKS cache: the public keys that JWT validators check signatures against, by `kid`.
//!
//! Sources: an OpenID discovery document (`openid_config` → its `jwks_uri`, rediscovered on
//! every refresh so a provider may move its keys), a JWKS URL, or keys inlined in the config.
//! Requests read the key set lock-free from an `ArcSwap`; the refresher (and, for an unknown
//! `kid`, at most one request per `min_refetch_interval`) replaces it. A failed refresh keeps the
//! old keys: an identity provider outage must not lock every caller out (static stability).
//! Only asymmetric keys are kept, each with the algorithms it may verify, so a token cannot
//! pick HMAC with a public key as the secret, or RSA with an EC key.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use url::Url;

/// Connect timeout for discovery and JWKS fetches.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Whole-request timeout for discovery and JWKS fetches.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default minimum gap between two refetches triggered by an unknown `kid`: a stream of tokens
/// with made-up `kid`s must not turn the gateway into a load generator against the provider.
pub const DEFAULT_MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(60);
/// Discovery documents and key sets larger than this are refused.
const MAX_BODY: usize = 1 << 20;
/// RSA keys below 2048 bits are refused (NIST SP 800-131A; aws-lc refuses them too).
const MIN_RSA_MODULUS_BYTES: usize = 256;

const RSA_ALGS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// Where the keys come from.
#[derive(Debug, Clone)]
pub enum JwksSource {
    /// OpenID discovery document; its `jwks_uri` is fetched on every refresh.
    OpenIdConfig(Url),
    /// A JWKS document (`{"keys":[…]}`).
    JwksUri(Url),
    /// Keys from the config file; `refresh` is a no-op.
    Inline(Vec<Jwk>),
}

/// One JSON Web Key as published (RFC 7517/7518/8037). Unknown members (`x5c`, `x5t`, …) are
/// ignored: providers publish many.
#[derive(Debug, Clone, Default, Deserialize)]
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
    pub kid: String,
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

type KeyMap = HashMap<String, Arc<VerifyKey>>;

/// The key set of one JWT validator.
pub struct JwksCache {
    source: JwksSource,
    keys: ArcSwap<KeyMap>,
    client: reqwest::Client,
    min_refetch_interval: Duration,
    /// When the last unknown-`kid` refetch started; the async mutex also makes concurrent
    /// unknown-`kid` requests wait for the one refetch instead of starting their own.
    last_refetch: tokio::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache")
            .field("source", &self.source_label())
            .field("keys", &self.keys.load().len())
            .finish_non_exhaustive()
    }
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
        let initial = match &source {
            JwksSource::Inline(jwks) => parse_key_set(jwks, "inline keys", true)?,
            _ => KeyMap::new(),
        };
        Ok(JwksCache {
            source,
            keys: ArcSwap::from_pointee(initial),
            client,
            min_refetch_interval: DEFAULT_MIN_REFETCH_INTERVAL,
            last_refetch: tokio::sync::Mutex::new(None),
        })
    }

    /// Sets the minimum gap between unknown-`kid` refetches (default 60 s).
    pub fn with_min_refetch_interval(mut self, interval: Duration) -> JwksCache {
        self.min_refetch_interval = interval;
        self
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

    /// The key with this `kid`; lock-free.
    pub fn get(&self, kid: &str) -> Option<Arc<VerifyKey>> {
        self.keys.load().get(kid).cloned()
    }

    /// Number of usable keys held now.
    pub fn len(&self) -> usize {
        self.keys.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fetches the key set (discovering `jwks_uri` first for `openid_config`) and swaps it in.
    /// Returns the number of usable keys. On any error the previous keys stay in place. Keys
    /// that cannot be used (encryption keys, symmetric keys, unknown curves, short RSA moduli)
    /// are skipped with a warning; a set with none usable is an error.
    pub async fn refresh(&self) -> Result<usize, JwksError> {
        let jwks_url = match &self.source {
            JwksSource::Inline(_) => return Ok(self.len()),
            JwksSource::JwksUri(u) => u.clone(),
            JwksSource::OpenIdConfig(u) => self.discover(u).await?,
        };
        let body = self.get_body(&jwks_url).await?;
        let set: JwkSet = serde_json::from_slice(&body).map_err(|e| JwksError::Parse {
            url: jwks_url.to_string(),
            what: "JWKS document",
            detail: e.to_string(),
        })?;
        let map = parse_key_set(&set.keys, jwks_url.as_str(), false)?;
        let n = map.len();
        self.keys.store(Arc::new(map));
        Ok(n)
    }

    /// For a token whose `kid` is unknown: refreshes unless a refetch started less than
    /// `min_refetch_interval` ago. Concurrent callers wait for the one in flight. Returns
    /// whether this call refreshed successfully; either way the caller should look the `kid`
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
                log::warn!("{e} (refetch for an unknown kid; cached keys kept)");
                false
            }
        }
    }

    async fn discover(&self, url: &Url) -> Result<Url, JwksError> {
        #[derive(Deserialize)]
        struct Discovery {
            jwks_uri: String,
        }
        let body = self.get_body(url).await?;
        let parse_err = |what, detail: String| JwksError::Parse {
            url: url.to_string(),
            what,
            detail,
        };
        let doc: Discovery = serde_json::from_slice(&body)
            .map_err(|e| parse_err("OpenID configuration", e.to_string()))?;
        let jwks = Url::parse(&doc.jwks_uri)
            .map_err(|e| parse_err("OpenID configuration", format!("jwks_uri: {e}")))?;
        if !matches!(jwks.scheme(), "http" | "https") {
            return Err(parse_err(
                "OpenID configuration",
                "jwks_uri is not an http(s) URL".into(),
            ));
        }
        Ok(jwks)
    }

    async fn get_body(&self, url: &Url) -> Result<Vec<u8>, JwksError> {
        let http_err = |e: reqwest::Error| JwksError::Http {
            url: url.to_string(),
            detail: e.without_url().to_string(),
        };
        let mut resp = self
            .client
            .get(url.clone())
            .header("accept", "application/json")
            .send()
            .await
            .map_err(http_err)?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(JwksError::Status {
                url: url.to_string(),
                status,
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(http_err)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(JwksError::Parse {
                    url: url.to_string(),
                    what: "key document",
                    detail: format!("larger than {MAX_BODY} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<Jwk>,
}

/// Parses every key; unusable ones are skipped (logged) unless `strict`, where the first one is
/// an error. An empty result is an error either way.
fn parse_key_set(jwks: &[Jwk], origin: &str, strict: bool) -> Result<KeyMap, JwksError> {
    let mut map = KeyMap::new();
    let mut skipped = Vec::new();
    for (i, jwk) in jwks.iter().enumerate() {
        match parse_jwk(jwk) {
            Ok(k) => {
                map.insert(k.kid.clone(), Arc::new(k));
            }
            Err(why) => {
                let kid = jwk.kid.as_deref().unwrap_or("<none>");
                let msg = format!("key {i} (kid {kid}): {why}");
                if strict {
                    return Err(JwksError::NoUsableKeys {
                        url: origin.to_owned(),
                        detail: msg,
                    });
                }
                log::debug!("jwks: {origin}: skipping {msg}");
                skipped.push(msg);
            }
        }
    }
    if map.is_empty() {
        let detail = if skipped.is_empty() {
            "the set is empty".to_owned()
        } else {
            skipped.join("; ")
        };
        return Err(JwksError::NoUsableKeys {
            url: origin.to_owned(),
            detail,
        });
    }
    Ok(map)
}

/// Turns one JWK into a verification key with the algorithms it may verify. The `alg` member,
/// when present, is the only algorithm allowed; without it the algorithm is derived from the key
/// type where that is unambiguous (EC curve, Ed25519), and an RSA key allows RS* and PS*.
pub fn parse_jwk(jwk: &Jwk) -> Result<VerifyKey, String> {
    let kid = match jwk.kid.as_deref() {
        Some(k) if !k.is_empty() => k.to_owned(),
        _ => return Err("no kid: tokens name their key by kid".into()),
    };
    if let Some(u) = jwk.use_.as_deref() {
        if u != "sig" {
            return Err(format!("use is '{u}', not 'sig'"));
        }
    }
    let field = |name: &str, v: &Option<String>| -> Result<Vec<u8>, String> {
        let s = v
            .as_deref()
            .ok_or_else(|| format!("{} key without '{name}'", jwk.kty))?;
        URL_SAFE_NO_PAD
            .decode(s.trim_end_matches('='))
            .map_err(|e| format!("'{name}' is not base64url: {e}"))
    };
    let (key, algs): (DecodingKey, &'static [Algorithm]) = match jwk.kty.as_str() {
        "RSA" => {
            let n = field("n", &jwk.n)?;
            let e = field("e", &jwk.e)?;
            let bits_bytes = n.iter().skip_while(|b| **b == 0).count();
            if bits_bytes < MIN_RSA_MODULUS_BYTES {
                return Err(format!(
                    "RSA modulus of {} bits; at least 2048 required",
                    bits_bytes * 8
                ));
            }
            (DecodingKey::from_rsa_raw_components(&n, &e), RSA_ALGS)
        }
        "EC" => {
            let (len, algs): (usize, &'static [Algorithm]) = match jwk.crv.as_deref() {
                Some("P-256") => (32, &[Algorithm::ES256]),
                Some("P-384") => (48, &[Algorithm::ES384]),
                other => return Err(format!("unsupported EC curve {other:?}")),
            };
            let (x, y) = (field("x", &jwk.x)?, field("y", &jwk.y)?);
            if x.len() != len || y.len() != len {
                return Err(format!("EC coordinates are not {len} bytes"));
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (DecodingKey::from_ec_der(&point), algs)
        }
        "OKP" => {
            if jwk.crv.as_deref() != Some("Ed25519") {
                return Err(format!("unsupported OKP curve {:?}", jwk.crv));
            }
            let x = field("x", &jwk.x)?;
            if x.len() != 32 {
                return Err("Ed25519 key is not 32 bytes".into());
            }
            (DecodingKey::from_ed_der(&x), &[Algorithm::EdDSA])
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
    Ok(VerifyKey { kid, key, algs })
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
    fn refuses_short_rsa_symmetric_encryption_and_kidless_keys() {
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
        let mut nokid = rsa_jwk(None);
        nokid.kid = None;
        assert!(parse_jwk(&nokid).is_err());
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
