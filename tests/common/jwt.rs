//! Signing keys for JWT tests: an RSA key made at test time, its public JWK (with or without
//! `kid`), and tokens signed with it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

pub struct RsaSigner {
    pub kid: Option<String>,
    enc: EncodingKey,
    n: String,
    /// The public key in PEM, for the HMAC-confusion attack.
    pub public_pem: Vec<u8>,
}

impl RsaSigner {
    pub fn new(kid: Option<&str>) -> RsaSigner {
        let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
        RsaSigner {
            kid: kid.map(str::to_owned),
            enc: EncodingKey::from_rsa_pem(&rsa.private_key_to_pem().unwrap()).unwrap(),
            n: URL_SAFE_NO_PAD.encode(rsa.n().to_vec()),
            public_pem: rsa.public_key_to_pem().unwrap(),
        }
    }

    /// The public JWK as a JWKS document publishes it (`kid` only when the signer has one).
    pub fn jwk(&self) -> Value {
        let mut j = json!({"kty": "RSA", "use": "sig", "n": self.n, "e": "AQAB"});
        if let Some(k) = &self.kid {
            j["kid"] = json!(k);
        }
        j
    }

    /// The same key as an inline `[[auth.jwt]] keys` entry (TOML inline table).
    pub fn toml_key(&self) -> String {
        match &self.kid {
            Some(k) => format!(
                r#"{{ kty = "RSA", kid = "{k}", n = "{}", e = "AQAB" }}"#,
                self.n
            ),
            None => format!(r#"{{ kty = "RSA", n = "{}", e = "AQAB" }}"#, self.n),
        }
    }

    /// An RS256 token; its header names the signer's `kid`, if any.
    pub fn sign(&self, claims: &Value) -> String {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = self.kid.clone();
        jsonwebtoken::encode(&h, claims, &self.enc).unwrap()
    }

    /// An RS256 token whose header names no key, whatever the signer's `kid`.
    pub fn sign_without_kid(&self, claims: &Value) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &self.enc).unwrap()
    }

    /// An HS256 token keyed with this key's public PEM (an algorithm-confusion forgery).
    pub fn forge_hs256(&self, claims: &Value) -> String {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = self.kid.clone();
        jsonwebtoken::encode(&h, claims, &EncodingKey::from_secret(&self.public_pem)).unwrap()
    }
}

/// An unsigned `alg: none` token.
pub fn alg_none(claims: &Value) -> String {
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
