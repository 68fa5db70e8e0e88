//! JWT validation through the library API against a JWKS served by a local fake identity
//! provider: keys generated in-test with openssl, tokens signed with jsonwebtoken.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use openssl::bn::BigNumContext;
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use serde_json::{json, Value};

use common::{FakeUpstream, Reply};
use keyway::auth::jwks::{JwksCache, JwksSource};
use keyway::auth::jwt::{
    ClaimMatch, JwtFailure, JwtSettings, JwtValidator, RequiredClaim, ValidatedClaims,
};

const ISS: &str = "https://idp.test/tenant/v2.0";
const AUD: &str = "api://keyway";
const DISCOVERY: &str = "/.well-known/openid-configuration";

struct Signer {
    kid: String,
    alg: Algorithm,
    enc: EncodingKey,
    jwk: Value,
    public_pem: Vec<u8>,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn rsa_signer(kid: &str) -> Signer {
    let rsa = Rsa::generate(2048).unwrap();
    Signer {
        kid: kid.into(),
        alg: Algorithm::RS256,
        enc: EncodingKey::from_rsa_pem(&rsa.private_key_to_pem().unwrap()).unwrap(),
        // No `alg`, as Entra publishes its keys.
        jwk: json!({"kty":"RSA","use":"sig","kid":kid,"n":b64(&rsa.n().to_vec()),"e":b64(&rsa.e().to_vec())}),
        public_pem: rsa.public_key_to_pem().unwrap(),
    }
}

fn ec_signer(kid: &str) -> Signer {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let key = EcKey::generate(&group).unwrap();
    let (mut x, mut y) = (
        openssl::bn::BigNum::new().unwrap(),
        openssl::bn::BigNum::new().unwrap(),
    );
    let mut ctx = BigNumContext::new().unwrap();
    key.public_key()
        .affine_coordinates(&group, &mut x, &mut y, &mut ctx)
        .unwrap();
    let jwk = json!({"kty":"EC","crv":"P-256","kid":kid,
        "x":b64(&x.to_vec_padded(32).unwrap()),"y":b64(&y.to_vec_padded(32).unwrap())});
    let public_pem = key.public_key_to_pem().unwrap();
    let pkcs8 = PKey::from_ec_key(key)
        .unwrap()
        .private_key_to_pem_pkcs8()
        .unwrap();
    Signer {
        kid: kid.into(),
        alg: Algorithm::ES256,
        enc: EncodingKey::from_ec_pem(&pkcs8).unwrap(),
        jwk,
        public_pem,
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Standard claims valid for ten minutes, with `extra` merged in (`null` removes a claim).
fn claims(extra: Value) -> Value {
    let now = now_secs();
    let mut c = json!({"iss":ISS,"aud":AUD,"sub":"user-1","iat":now,"exp":now + 600});
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

impl Signer {
    fn sign(&self, claims: &Value) -> String {
        let mut h = Header::new(self.alg);
        h.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&h, claims, &self.enc).unwrap()
    }
}

/// A fake IdP: discovery document plus a JWKS that tests can swap or take down.
struct Idp {
    fake: FakeUpstream,
    jwks: Arc<Mutex<Value>>,
    up: Arc<Mutex<bool>>,
}

impl Idp {
    async fn start(keys: &[&Signer]) -> Idp {
        let jwks = Arc::new(Mutex::new(Value::Null));
        let up = Arc::new(Mutex::new(true));
        let base = Arc::new(Mutex::new(String::new()));
        let (j, u, b) = (jwks.clone(), up.clone(), base.clone());
        let fake = FakeUpstream::with(move |r| {
            if !*u.lock().unwrap() {
                return Reply::Json {
                    status: 503,
                    body: "{}".into(),
                    headers: vec![],
                };
            }
            match r.uri.as_str() {
                DISCOVERY => {
                    let jwks_uri = format!("{}/keys", b.lock().unwrap());
                    Reply::ok_json(&json!({"issuer":ISS,"jwks_uri":jwks_uri}).to_string())
                }
                "/keys" => Reply::ok_json(&j.lock().unwrap().to_string()),
                _ => Reply::Json {
                    status: 404,
                    body: "{}".into(),
                    headers: vec![],
                },
            }
        })
        .await;
        *base.lock().unwrap() = fake.base();
        let idp = Idp { fake, jwks, up };
        idp.publish(keys);
        idp
    }

    fn publish(&self, keys: &[&Signer]) {
        let keys: Vec<Value> = keys.iter().map(|k| k.jwk.clone()).collect();
        *self.jwks.lock().unwrap() = json!({ "keys": keys });
    }

    fn set_up(&self, up: bool) {
        *self.up.lock().unwrap() = up;
    }

    fn fetches(&self, path: &str) -> usize {
        self.fake
            .requests()
            .iter()
            .filter(|r| r.uri == path)
            .count()
    }

    fn settings(&self) -> JwtSettings {
        JwtSettings {
            header: http::header::AUTHORIZATION,
            scheme: Some("Bearer".into()),
            source: JwksSource::OpenIdConfig(
                format!("{}{DISCOVERY}", self.fake.base()).parse().unwrap(),
            ),
            issuers: vec![ISS.into()],
            issuer_document: None,
            audiences: vec![AUD.into()],
            required_claims: vec![],
            clock_skew: Duration::from_secs(300),
            require_expiration_time: true,
            failed_status: 401,
            failed_message: "JWT not present or invalid.".into(),
            client_application_ids: vec![],
            workspace_claim: Some("portkey_workspace".into()),
            role_claim: Some("scope".into()),
            refresh_interval: Duration::from_secs(300),
            min_refetch_interval: Duration::from_secs(60),
        }
    }

    async fn validator(&self, edit: impl FnOnce(&mut JwtSettings)) -> JwtValidator {
        let mut s = self.settings();
        edit(&mut s);
        let v = JwtValidator::new(s).unwrap();
        v.jwks().refresh().await.unwrap();
        v
    }
}

async fn check(v: &JwtValidator, token: &str) -> Result<Arc<ValidatedClaims>, JwtFailure> {
    v.validate(token, SystemTime::now()).await
}

#[tokio::test]
async fn rs256_and_es256_tokens_are_accepted_and_mapped() {
    let (r, e) = (rsa_signer("r1"), ec_signer("e1"));
    let idp = Idp::start(&[&r, &e]).await;
    let v = idp.validator(|_| {}).await;
    assert_eq!(v.jwks().len(), 2);

    let ok = check(
        &v,
        &r.sign(&claims(
            json!({"portkey_workspace":"team-a","scope":"read admin"}),
        )),
    )
    .await
    .unwrap();
    assert_eq!(ok.subject, "user-1");
    assert_eq!(ok.workspace.as_deref(), Some("team-a"));
    assert_eq!(ok.role.as_deref(), Some("admin"));
    assert_eq!(ok.claims["scope"], "read admin");

    // Fallback claims: workspace_slug and scopes (an array here).
    let ok = check(
        &v,
        &e.sign(&claims(
            json!({"workspace_slug":"team-b","scopes":["member","x"]}),
        )),
    )
    .await
    .unwrap();
    assert_eq!(ok.workspace.as_deref(), Some("team-b"));
    assert_eq!(ok.role.as_deref(), Some("member"));

    // No workspace or role claims; a non-slug workspace is ignored.
    let ok = check(
        &v,
        &e.sign(&claims(json!({"portkey_workspace":"a b","scope":"read"}))),
    )
    .await
    .unwrap();
    assert_eq!((ok.workspace.as_deref(), ok.role.as_deref()), (None, None));
    assert_eq!(idp.fetches("/keys"), 1);
    assert_eq!(idp.fetches(DISCOVERY), 1);
}

#[tokio::test]
async fn wrong_key_issuer_audience_and_algorithm_are_refused() {
    let (r, e) = (rsa_signer("r1"), ec_signer("e1"));
    let idp = Idp::start(&[&r, &e]).await;
    let v = idp.validator(|_| {}).await;

    let mut impostor = rsa_signer("r1");
    let t = impostor.sign(&claims(json!({})));
    assert_eq!(check(&v, &t).await, Err(JwtFailure::Signature));

    let t = r.sign(&claims(json!({"iss":"https://evil.test/"})));
    assert_eq!(check(&v, &t).await, Err(JwtFailure::Issuer));
    let t = r.sign(&claims(json!({"iss":null})));
    assert_eq!(check(&v, &t).await, Err(JwtFailure::Issuer));
    let t = r.sign(&claims(json!({"aud":"api://other"})));
    assert_eq!(check(&v, &t).await, Err(JwtFailure::Audience));
    let t = r.sign(&claims(json!({"aud":["api://other", AUD]})));
    assert!(check(&v, &t).await.is_ok());

    // The EC key's kid with an RSA signature: the algorithm does not fit the key.
    impostor.kid = "e1".into();
    let t = impostor.sign(&claims(json!({})));
    assert_eq!(check(&v, &t).await, Err(JwtFailure::Algorithm));

    // alg none, and HS256 keyed with the RSA public key (the classic confusion attack).
    let header = b64(json!({"alg":"none","kid":"r1","typ":"JWT"})
        .to_string()
        .as_bytes());
    let body = b64(claims(json!({})).to_string().as_bytes());
    assert_eq!(
        check(&v, &format!("{header}.{body}.")).await,
        Err(JwtFailure::Algorithm)
    );
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("r1".into());
    let t = jsonwebtoken::encode(
        &h,
        &claims(json!({})),
        &EncodingKey::from_secret(&r.public_pem),
    )
    .unwrap();
    assert_eq!(check(&v, &t).await, Err(JwtFailure::Algorithm));

    // A tampered payload.
    let good = r.sign(&claims(json!({})));
    let parts: Vec<&str> = good.split('.').collect();
    let forged = b64(claims(json!({"sub":"admin"})).to_string().as_bytes());
    let t = format!("{}.{forged}.{}", parts[0], parts[2]);
    assert_eq!(check(&v, &t).await, Err(JwtFailure::Signature));
    assert_eq!(check(&v, "not-a-jwt").await, Err(JwtFailure::Malformed));
    let _ = e;
}

#[tokio::test]
async fn expiry_and_not_before_honour_the_clock_skew() {
    let r = rsa_signer("r1");
    let idp = Idp::start(&[&r]).await;
    let v = idp.validator(|_| {}).await;
    let now = now_secs();

    let t = r.sign(&claims(json!({"exp": now - 100})));
    assert!(check(&v, &t).await.is_ok(), "within the 300 s skew");
    let t = r.sign(&claims(json!({"exp": now - 400})));
    assert_eq!(check(&v, &t).await, Err(JwtFailure::Expired));
    assert_eq!(JwtFailure::Expired.outcome().as_str(), "expired");
    let t = r.sign(&claims(json!({"nbf": now + 100})));
    assert!(check(&v, &t).await.is_ok());
    let t = r.sign(&claims(json!({"nbf": now + 400})));
    assert_eq!(check(&v, &t).await, Err(JwtFailure::NotYetValid));
    let t = r.sign(&claims(json!({"exp": "tomorrow"})));
    assert_eq!(check(&v, &t).await, Err(JwtFailure::Malformed));

    // The clock is a parameter: the same token, later. The first check caches the verified
    // token; the later one must still see it expire.
    let t = r.sign(&claims(json!({"exp": now + 60})));
    assert!(check(&v, &t).await.is_ok());
    let later = SystemTime::now() + Duration::from_secs(361);
    assert_eq!(v.validate(&t, later).await, Err(JwtFailure::Expired));

    let t = r.sign(&claims(json!({"exp": null})));
    assert_eq!(check(&v, &t).await, Err(JwtFailure::MissingExpiration));
    let lax = idp
        .validator(|s| {
            s.require_expiration_time = false;
            s.clock_skew = Duration::ZERO;
        })
        .await;
    assert!(check(&lax, &t).await.is_ok());
    let t = r.sign(&claims(json!({"exp": now - 1})));
    assert_eq!(check(&lax, &t).await, Err(JwtFailure::Expired));
}

#[tokio::test]
async fn required_claims_all_and_any() {
    let r = rsa_signer("r1");
    let idp = Idp::start(&[&r]).await;
    let rc = |name: &str, m, values: &[&str]| RequiredClaim {
        name: name.into(),
        match_: m,
        values: values.iter().map(|s| s.to_string()).collect(),
    };
    let all = idp
        .validator(|s| s.required_claims = vec![rc("roles", ClaimMatch::All, &["a", "b"])])
        .await;
    let any = idp
        .validator(|s| s.required_claims = vec![rc("roles", ClaimMatch::Any, &["a", "b"])])
        .await;
    let present = idp
        .validator(|s| s.required_claims = vec![rc("tid", ClaimMatch::All, &[])])
        .await;

    let both = r.sign(&claims(json!({"roles":["a","b","c"]})));
    let one = r.sign(&claims(json!({"roles":"b c"})));
    let none = r.sign(&claims(json!({})));
    assert!(check(&all, &both).await.is_ok());
    assert_eq!(
        check(&all, &one).await,
        Err(JwtFailure::RequiredClaim("roles".into()))
    );
    assert!(check(&any, &one).await.is_ok());
    assert_eq!(
        check(&any, &none).await,
        Err(JwtFailure::RequiredClaim("roles".into()))
    );
    assert!(check(&present, &r.sign(&claims(json!({"tid":"t1"}))))
        .await
        .is_ok());
    assert!(check(&present, &none).await.is_err());
}

#[tokio::test]
async fn unknown_kid_refetches_once_per_interval() {
    let r = rsa_signer("r1");
    let idp = Idp::start(&[&r]).await;
    let v = idp.validator(|_| {}).await;
    assert_eq!(idp.fetches("/keys"), 1);

    let stranger = rsa_signer("nobody");
    let t = stranger.sign(&claims(json!({})));
    for _ in 0..3 {
        assert_eq!(check(&v, &t).await, Err(JwtFailure::UnknownKid));
    }
    // Concurrent unknown kids share the one refetch too.
    let results = futures_util::future::join_all((0..5).map(|_| check(&v, &t))).await;
    assert!(results.iter().all(|r| r == &Err(JwtFailure::UnknownKid)));
    assert_eq!(
        idp.fetches("/keys"),
        2,
        "exactly one refetch within the interval"
    );
    assert_eq!(
        idp.fetches(DISCOVERY),
        2,
        "discovery is repeated on every refresh"
    );

    // A token without kid is matched against the published keys that fit; a stranger's is
    // refused without another refetch inside the interval.
    let mut h = Header::new(Algorithm::RS256);
    h.kid = None;
    let t = jsonwebtoken::encode(&h, &claims(json!({})), &r.enc).unwrap();
    assert!(check(&v, &t).await.is_ok());
    let t = jsonwebtoken::encode(&h, &claims(json!({})), &stranger.enc).unwrap();
    assert_eq!(check(&v, &t).await, Err(JwtFailure::Signature));
    assert_eq!(idp.fetches("/keys"), 2);
}

#[tokio::test]
async fn rotated_key_is_accepted_after_refetch() {
    let (old, new) = (rsa_signer("2024"), ec_signer("2025"));
    let idp = Idp::start(&[&old]).await;
    let v = idp
        .validator(|s| s.min_refetch_interval = Duration::from_millis(200))
        .await;
    let t_new = new.sign(&claims(json!({})));
    assert_eq!(check(&v, &t_new).await, Err(JwtFailure::UnknownKid));

    idp.publish(&[&old, &new]);
    // Still inside the interval: no refetch yet.
    assert_eq!(check(&v, &t_new).await, Err(JwtFailure::UnknownKid));
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(check(&v, &t_new).await.is_ok());
    assert!(check(&v, &old.sign(&claims(json!({})))).await.is_ok());
    assert_eq!(idp.fetches("/keys"), 3);

    // The old key retired: gone after the next refresh.
    idp.publish(&[&new]);
    assert_eq!(v.jwks().refresh().await.unwrap(), 1);
    assert_eq!(
        check(&v, &old.sign(&claims(json!({})))).await,
        Err(JwtFailure::UnknownKid)
    );
}

#[tokio::test]
async fn jwks_outage_keeps_cached_keys() {
    let r = rsa_signer("r1");
    let idp = Idp::start(&[&r]).await;
    let v = idp
        .validator(|s| s.min_refetch_interval = Duration::ZERO)
        .await;
    idp.set_up(false);
    let err = v.jwks().refresh().await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("503"), "{err}");
    assert!(check(&v, &r.sign(&claims(json!({})))).await.is_ok());
    // An unknown kid during the outage: refused, and the cached key still works afterwards.
    let t = rsa_signer("new").sign(&claims(json!({})));
    assert_eq!(check(&v, &t).await, Err(JwtFailure::UnknownKid));
    assert!(check(&v, &r.sign(&claims(json!({})))).await.is_ok());

    // A set with nothing usable is also a failed refresh that keeps the old keys.
    idp.set_up(true);
    *idp.jwks.lock().unwrap() = json!({"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0"}]});
    assert!(v.jwks().refresh().await.is_err());
    assert_eq!(v.jwks().len(), 1);
    assert!(check(&v, &r.sign(&claims(json!({})))).await.is_ok());
}

#[tokio::test]
async fn azure_v1_and_v2_issuers_and_client_application_ids() {
    let r = rsa_signer("r1");
    let idp = Idp::start(&[&r]).await;
    let tid = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    let v1 = format!("https://sts.windows.net/{tid}/");
    let v2 = format!("{}/{tid}/v2.0", idp.fake.base());
    // What config::jwt derives from tenant_id and the authority host.
    let v = idp
        .validator(|s| {
            s.issuers = vec![v1.clone(), v2.clone()];
            s.client_application_ids = vec!["app-1".into()];
        })
        .await;
    let t = r.sign(&claims(json!({"iss": v1, "appid": "app-1"})));
    assert!(check(&v, &t).await.is_ok(), "v1 token with appid");
    let t = r.sign(&claims(json!({"iss": v2, "azp": "app-1"})));
    assert!(check(&v, &t).await.is_ok(), "v2 token with azp");
    let t = r.sign(&claims(
        json!({"iss": format!("https://sts.windows.net/other/"), "azp": "app-1"}),
    ));
    assert_eq!(check(&v, &t).await, Err(JwtFailure::Issuer));
    let t = r.sign(&claims(json!({"iss": v2, "azp": "app-2"})));
    assert_eq!(check(&v, &t).await, Err(JwtFailure::ClientApplication));
    let t = r.sign(&claims(json!({"iss": v2})));
    assert_eq!(check(&v, &t).await, Err(JwtFailure::ClientApplication));
}

#[tokio::test]
async fn token_location_and_refusal_shape() {
    let r = rsa_signer("r1");
    let idp = Idp::start(&[&r]).await;
    let v = idp
        .validator(|s| {
            s.failed_status = 403;
            s.failed_message = "Unauthorized. Access token is missing or invalid.".into();
        })
        .await;
    let mut h = http::HeaderMap::new();
    assert_eq!(v.token_from(&h), None);
    h.insert("authorization", "bearer abc.def.ghi".parse().unwrap());
    assert_eq!(v.token_from(&h), Some("abc.def.ghi"));
    h.insert("authorization", "Basic abc".parse().unwrap());
    assert_eq!(v.token_from(&h), None);

    let raw = idp
        .validator(|s| {
            s.header = http::HeaderName::from_static("x-portkey-api-key");
            s.scheme = None;
        })
        .await;
    h.insert("x-portkey-api-key", "abc.def.ghi".parse().unwrap());
    assert_eq!(raw.token_from(&h), Some("abc.def.ghi"));

    let token = r.sign(&claims(json!({"aud":"nope"})));
    let failure = check(&v, &token).await.unwrap_err();
    assert_eq!(failure.as_str(), "audience");
    let e = v.auth_error(&failure);
    assert_eq!(keyway::error::ErrorResponse::from(&e).status, 403);
    assert_eq!(e.outcome(), "invalid");
    let shown = format!("{e} {e:?} {failure} {failure:?}");
    assert!(shown.contains("Access token is missing or invalid."));
    assert!(!shown.contains(&token), "the token must never be echoed");
}

/// `signer` as a key published without `kid`, and a token whose header names none.
fn kidless(signer: &Signer) -> (Value, impl Fn(&Value) -> String + '_) {
    let mut jwk = signer.jwk.clone();
    jwk.as_object_mut().unwrap().remove("kid");
    let sign =
        move |c: &Value| jsonwebtoken::encode(&Header::new(signer.alg), c, &signer.enc).unwrap();
    (jwk, sign)
}

#[tokio::test]
async fn tokens_without_kid_try_at_most_eight_fitting_keys_and_refetch_once() {
    let signers: Vec<Signer> = (0..9).map(|i| rsa_signer(&format!("r{i}"))).collect();
    let ec = ec_signer("e1");
    let idp = Idp::start(&[]).await;
    // An EC key first (does not fit RS256, so it does not count), then nine RSA keys, no kids.
    let mut keys = vec![kidless(&ec).0];
    keys.extend(signers.iter().map(|s| kidless(s).0));
    *idp.jwks.lock().unwrap() = json!({ "keys": keys });
    let v = idp
        .validator(|s| s.min_refetch_interval = Duration::from_secs(3600))
        .await;
    assert_eq!(v.jwks().len(), 10);
    let c = claims(json!({}));
    // The eighth RSA key is within the bound, the ninth is not tried.
    assert!(check(&v, &(kidless(&signers[7]).1)(&c)).await.is_ok());
    assert_eq!(
        check(&v, &(kidless(&signers[8]).1)(&c)).await,
        Err(JwtFailure::Signature)
    );
    // An EC token is matched with the EC key only.
    assert!(check(&v, &(kidless(&ec).1)(&c)).await.is_ok());
    // The refetch for the ninth key's token happened once; later misses do not refetch.
    let fetched = idp.fetches("/keys");
    assert_eq!(
        check(&v, &(kidless(&signers[8]).1)(&c)).await,
        Err(JwtFailure::Signature)
    );
    assert_eq!(idp.fetches("/keys"), fetched);

    // A single-key provider rotates: the new kid-less key is fetched on the first miss.
    let idp = Idp::start(&[]).await;
    let (old, new) = (rsa_signer("o"), rsa_signer("n"));
    *idp.jwks.lock().unwrap() = json!({ "keys": [kidless(&old).0] });
    let v = idp
        .validator(|s| s.min_refetch_interval = Duration::ZERO)
        .await;
    assert!(check(&v, &(kidless(&old).1)(&c)).await.is_ok());
    *idp.jwks.lock().unwrap() = json!({ "keys": [kidless(&new).0] });
    assert!(check(&v, &(kidless(&new).1)(&c)).await.is_ok());
    // The old key is gone: its cached verification no longer counts.
    assert_eq!(
        check(&v, &(kidless(&old).1)(&c)).await,
        Err(JwtFailure::Signature)
    );
}

#[tokio::test]
async fn inline_keys_need_no_fetch() {
    let r = rsa_signer("r1");
    let jwk: keyway::auth::jwks::Jwk = serde_json::from_value(r.jwk.clone()).unwrap();
    let cache = JwksCache::new(JwksSource::Inline(vec![jwk.clone()])).unwrap();
    assert_eq!(cache.len(), 1);
    assert_eq!(cache.refresh().await.unwrap(), 1);
    assert!(!cache.refetch_for_unknown_kid().await);

    let idp = Idp::start(&[]).await;
    let v = JwtValidator::new(JwtSettings {
        source: JwksSource::Inline(vec![jwk]),
        ..idp.settings()
    })
    .unwrap();
    assert!(check(&v, &r.sign(&claims(json!({})))).await.is_ok());
    assert!(idp.fake.requests().is_empty());
}

/// tests/interop/oidc/server.js (oidc-provider) on a free port; killed on drop. `None` when node
/// or the npm package is not installed (tests/setup.sh installs both).
struct OidcProvider {
    child: std::process::Child,
    base: String,
}

impl OidcProvider {
    async fn start(tenant: &str) -> Option<OidcProvider> {
        let cache = std::env::var_os("KEYWAY_CACHE")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/keyway")
            });
        let modules = cache.join("oidc/node_modules");
        if !modules.join("oidc-provider").is_dir() {
            // tests/run.sh installs it and sets KEYWAY_REQUIRE_INTEROP: there, missing is a failure.
            assert!(
                std::env::var_os("KEYWAY_REQUIRE_INTEROP").is_none(),
                "{} missing: tests/setup.sh did not install oidc-provider",
                modules.display()
            );
            eprintln!("SKIP: {} missing; run tests/setup.sh", modules.display());
            return None;
        }
        let port = common::free_port();
        let script = format!(
            "{}/tests/interop/oidc/server.js",
            std::env::var("CARGO_MANIFEST_DIR")
                .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned())
        );
        let child = std::process::Command::new("node")
            .args([
                script.as_str(),
                &port.to_string(),
                tenant,
                "keyway-client",
                "s3cret-oidc",
            ])
            .env("OIDC_NODE_MODULES", &modules)
            .env("OIDC_WORKSPACE", "team-a")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        let Ok(child) = child else {
            eprintln!("SKIP: node is not installed");
            return None;
        };
        let p = OidcProvider {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let discovery = format!("{}/{tenant}/v2.0{DISCOVERY}", p.base);
        for _ in 0..200 {
            if let Ok(r) = reqwest::get(&discovery).await {
                if r.status() == 200 {
                    return Some(p);
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("oidc-provider did not start");
    }

    async fn token(&self, tenant: &str, scope: &str) -> String {
        let v: Value = reqwest::Client::new()
            .post(format!("{}/{tenant}/oauth2/v2.0/token", self.base))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", "keyway-client"),
                ("client_secret", "s3cret-oidc"),
                ("scope", scope),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["access_token"].as_str().unwrap().to_owned()
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn tokens_from_oidc_provider_validate_through_discovery_and_rotation() {
    let tenant = "t-42";
    let Some(idp) = OidcProvider::start(tenant).await else {
        return;
    };
    // As config::jwt derives it from tenant_id with the authority host at the fake.
    let settings = JwtSettings {
        source: JwksSource::OpenIdConfig(
            format!("{}/{tenant}/v2.0{DISCOVERY}", idp.base)
                .parse()
                .unwrap(),
        ),
        issuers: vec![
            format!("https://sts.windows.net/{tenant}/"),
            format!("{}/{tenant}/v2.0", idp.base),
        ],
        client_application_ids: vec!["keyway-client".into()],
        min_refetch_interval: Duration::ZERO,
        ..Idp::start(&[]).await.settings()
    };
    let v = JwtValidator::new(settings).unwrap();
    assert_eq!(v.jwks().refresh().await.unwrap(), 1);
    let ok = check(&v, &idp.token(tenant, "admin").await).await.unwrap();
    assert_eq!(ok.subject, "keyway-client");
    assert_eq!(ok.workspace.as_deref(), Some("team-a"));
    assert_eq!(ok.role.as_deref(), Some("admin"));

    let rotated: Value = reqwest::Client::new()
        .post(format!("{}/rotate", idp.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = idp.token(tenant, "member").await;
    let kid = rotated["kid"].as_str().unwrap();
    assert!(v.jwks().get(kid).is_none());
    let ok = check(&v, &token).await.unwrap();
    assert_eq!(ok.role.as_deref(), Some("member"));
    assert!(v.jwks().get(kid).is_some(), "refetched for the new kid");
}
