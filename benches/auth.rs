//! Authentication in the enforced posture, per request: `Authenticator::identify` for a
//! gateway key (`Authorization: Bearer kw-…`, the OpenAI SDK's shape: the JWT validator looks
//! first and passes, then the key is hashed and looked up), and for a JWT this runtime has
//! already verified (the verified-token cache hit: digest, lookup, time and issuer checks; no
//! signature). Both are checked to yield the expected caller before anything is timed.

mod support;

use std::hint::black_box;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion};
use futures_util::FutureExt;
use http::{HeaderMap, HeaderValue};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use openssl::rsa::Rsa;

use keyway::auth::gate::Authenticator;
use keyway::auth::{AuthMethod, Caller};

const GATEWAY_KEY: &str = "kw-bench-gateway-key-0123456789abcdefghijklmnopq";
const ISSUER: &str = "https://idp.bench.example/t1";
const AUDIENCE: &str = "api://keyway";

fn config(jwk_n: &str) -> String {
    format!(
        r#"
[auth]
mode = "enforced"
[[auth.jwt]]
keys = [ {{ kty = "RSA", kid = "k1", n = "{jwk_n}", e = "AQAB", alg = "RS256" }} ]
issuers = ["{ISSUER}"]
audiences = ["{AUDIENCE}"]

[workspaces.team-a]

[[api_keys]]
name = "bench"
hash = "{hash}"
workspace = "team-a"
"#,
        hash = keyway::auth::keys::hash_line(GATEWAY_KEY),
    )
}

/// A fresh RSA key: its JWK modulus for the config and a token it signs, valid for an hour.
fn signed_token() -> (String, String) {
    let rsa = Rsa::generate(2048).expect("rsa key");
    let n = URL_SAFE_NO_PAD.encode(rsa.n().to_vec());
    let key = EncodingKey::from_rsa_pem(&rsa.private_key_to_pem().expect("pem")).expect("key");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims = serde_json::json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "bench-user",
        "iat": now,
        "exp": now + 3600,
        "portkey_workspace": "team-a",
    });
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("k1".into());
    let token = jsonwebtoken::encode(&h, &claims, &key).expect("token signs");
    (n, token)
}

fn bearer(value: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    let v = HeaderValue::from_str(&format!("Bearer {value}")).expect("header value");
    h.insert(http::header::AUTHORIZATION, v);
    h.insert("x-portkey-provider", HeaderValue::from_static("openai"));
    h
}

/// One authentication. Neither path awaits anything once the JWT is verified, so the future is
/// polled once, with no executor in the timing.
fn authenticate(auth: &Authenticator, h: &HeaderMap, now: SystemTime) -> Caller {
    auth.identify(h, now)
        .now_or_never()
        .expect("authentication completes without waiting")
        .expect("the bench credential is accepted")
}

fn benches(c: &mut Criterion) {
    let (n, token) = signed_token();
    let (rt, _warm) = support::runtime(&config(&n));
    let auth = &rt.auth;
    assert!(auth.enforced());
    let now = SystemTime::now();
    let mut g = c.benchmark_group("auth");

    let key = bearer(GATEWAY_KEY);
    let caller = authenticate(auth, &key, now);
    assert_eq!(caller.method, AuthMethod::ApiKey);
    assert_eq!(caller.workspace.as_deref(), Some("team-a"));
    g.bench_function("gateway_key", |b| {
        b.iter(|| authenticate(auth, black_box(&key), now))
    });

    let jwt = bearer(&token);
    // The first call verifies the signature and fills the cache the timed calls hit.
    let caller = authenticate(auth, &jwt, now);
    assert_eq!(caller.method, AuthMethod::Jwt);
    assert_eq!(caller.workspace.as_deref(), Some("team-a"));
    assert_eq!(caller.subject.as_deref(), Some("bench-user"));
    // The timed calls hit: the cache keeps a verified token five minutes, longer than a run.
    g.bench_function("jwt_cached", |b| {
        b.iter(|| authenticate(auth, black_box(&jwt), now))
    });
    g.finish();
}

criterion_group!(auth, benches);
criterion_main!(auth);
