//! The enforced posture through a real keyway: gateway keys (valid, wrong, revoked, expired),
//! virtual keys across workspaces, model allow-lists and JWTs. Every refusal is checked at the
//! fake upstream too: it must have received nothing, and never the gateway credential.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{secret, FakeUpstream, Keyway, Recorded};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use openssl::rsa::Rsa;
use serde_json::{json, Value};

fn hash(key: &str) -> String {
    keyway::auth::keys::hash_line(key)
}

struct Keys {
    a: String,
    b: String,
    revoked: String,
    expired: String,
    narrow: String,
}

fn config(up: &FakeUpstream, k: &Keys, jwk: &Value) -> String {
    let n = jwk["n"].as_str().unwrap();
    format!(
        r#"
[auth]
mode = "enforced"
[[auth.jwt]]
keys = [ {{ kty = "RSA", kid = "k1", n = "{n}", e = "AQAB", alg = "RS256" }} ]
issuers = ["https://idp.example/t1"]
audiences = ["api://keyway"]
required_claims = [ {{ name = "roles", match = "any", values = ["llm.user"] }} ]
failed_validation_httpcode = 401
failed_validation_error_message = "Unauthorized. Access token is missing or invalid."

[workspaces.team-a]
[workspaces.team-b]
[workspaces.narrow]
allowed_models = ["gpt-4o-mini"]

[credentials.openai-a]
type = "api_key"
key = "sk-upstream-team-a"
[credentials.openai-b]
type = "api_key"
key = "sk-upstream-team-b"

[virtual_keys.vk-a]
workspace = "team-a"
provider = "openai"
credential = "openai-a"
[virtual_keys.vk-b]
workspace = "team-b"
provider = "openai"
credential = "openai-b"
[virtual_keys.vk-narrow]
workspace = "narrow"
provider = "openai"
credential = "openai-a"

[providers.openai]
base_url = "{up}/v1"

[[api_keys]]
name = "a"
hash = "{ha}"
workspace = "team-a"
[[api_keys]]
name = "b"
hash = "{hb}"
workspace = "team-b"
role = "admin"
[[api_keys]]
name = "old"
hash = "{hr}"
workspace = "team-a"
revoked = true
[[api_keys]]
name = "gone"
hash = "{he}"
workspace = "team-a"
expires_at = "2020-01-01T00:00:00Z"
[[api_keys]]
name = "narrow"
hash = "{hn}"
workspace = "narrow"
virtual_key = "vk-narrow"
"#,
        up = up.base(),
        ha = hash(&k.a),
        hb = hash(&k.b),
        hr = hash(&k.revoked),
        he = hash(&k.expired),
        hn = hash(&k.narrow),
    )
}

fn rsa_key() -> (EncodingKey, Value) {
    let (key, jwk, _) = rsa_key_with_public_pem();
    (key, jwk)
}

/// A signing key, its JWK, and its public key in PEM (for the HMAC-confusion attack).
fn rsa_key_with_public_pem() -> (EncodingKey, Value, Vec<u8>) {
    let rsa = Rsa::generate(2048).unwrap();
    let b64 = |b: Vec<u8>| URL_SAFE_NO_PAD.encode(b);
    let jwk =
        json!({"kty": "RSA", "kid": "k1", "n": b64(rsa.n().to_vec()), "e": b64(rsa.e().to_vec())});
    let key = EncodingKey::from_rsa_pem(&rsa.private_key_to_pem().unwrap()).unwrap();
    (key, jwk, rsa.public_key_to_pem().unwrap())
}

fn jwt(key: &EncodingKey, claims: Value) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("k1".into());
    jsonwebtoken::encode(&h, &claims, key).unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn call(kw: &Keyway, headers: &[(&str, &str)], body: &str) -> (u16, Value, Option<String>) {
    let mut r = reqwest::Client::new()
        .post(kw.url("/v1/chat/completions"))
        .body(body.to_owned());
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let www = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        www,
    )
}

fn upstream_saw_no_gateway_credential(reqs: &[Recorded], creds: &[&str]) {
    for r in reqs {
        for (_, v) in &r.headers {
            let v = v.to_str().unwrap_or("");
            for c in creds {
                assert!(!v.contains(c), "a gateway credential reached the upstream");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_keys_virtual_keys_and_model_allow_lists() {
    let up = FakeUpstream::start().await;
    let k = Keys {
        a: secret("kw-test-gateway-key-team-a"),
        b: secret("kw-test-gateway-key-team-b"),
        revoked: secret("kw-test-gateway-key-revoked"),
        expired: secret("kw-test-gateway-key-expired"),
        narrow: secret("kw-test-gateway-key-narrow"),
    };
    let (_, jwk) = rsa_key();
    let kw = Keyway::start(&config(&up, &k, &jwk)).await;
    let body = r#"{"model":"gpt-4o","messages":[]}"#;

    // Valid key + its workspace's virtual key: the virtual key's credential goes upstream.
    let (s, _, _) = call(
        &kw,
        &[
            ("x-portkey-api-key", &k.a),
            ("x-portkey-virtual-key", "vk-a"),
        ],
        body,
    )
    .await;
    assert_eq!(s, 200);
    let got = up.only();
    assert_eq!(
        got.header("authorization"),
        Some("Bearer sk-upstream-team-a")
    );
    assert_eq!(got.uri, "/v1/chat/completions");
    // The OpenAI SDK's shape: gateway key as Bearer.
    let bearer = format!("Bearer {}", k.b);
    let (s, _, _) = call(
        &kw,
        &[
            ("authorization", &bearer),
            ("x-portkey-virtual-key", "vk-b"),
        ],
        body,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        up.only().header("authorization"),
        Some("Bearer sk-upstream-team-b")
    );

    // 401s: none, wrong, revoked, expired — same shape, never echoing the key.
    for (presented, reason) in [
        (None, "missing"),
        (Some("kw-not-a-real-key"), "invalid gateway API key"),
        (Some(k.revoked.as_str()), "invalid gateway API key"),
        (Some(k.expired.as_str()), "expired"),
    ] {
        let mut h = vec![("x-portkey-virtual-key", "vk-a")];
        if let Some(p) = presented {
            h.push(("x-portkey-api-key", p));
        }
        let (s, v, www) = call(&kw, &h, body).await;
        assert_eq!(s, 401, "{reason}: {v}");
        assert!(www.is_some(), "401 without WWW-Authenticate");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(reason), "{msg}");
        if let Some(p) = presented {
            assert!(!v.to_string().contains(p), "the key was echoed");
        }
    }
    // 403: team A's key with team B's virtual key.
    let (s, v, _) = call(
        &kw,
        &[
            ("x-portkey-api-key", &k.a),
            ("x-portkey-virtual-key", "vk-b"),
        ],
        body,
    )
    .await;
    assert_eq!(s, 403, "{v}");
    // 403: a model outside the workspace's allow-list (the key is bound to its virtual key).
    let (s, v, _) = call(&kw, &[("x-portkey-api-key", &k.narrow)], body).await;
    assert_eq!(s, 403, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("gpt-4o"),
        "{v}"
    );
    // ... and an allowed model passes, with the body forwarded byte for byte.
    let ok = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
    let (s, _, _) = call(&kw, &[("x-portkey-api-key", &k.narrow)], ok).await;
    assert_eq!(s, 200);
    let got = up.only();
    assert_eq!(got.body, ok.as_bytes());

    assert!(
        up.requests().is_empty(),
        "a refused request reached the upstream"
    );
    upstream_saw_no_gateway_credential(&up.requests(), &[&k.a, &k.b, &k.narrow]);
    let m = kw.metrics().await;
    for line in [
        r#"keyway_auth_total{method="api_key",outcome="ok"}"#,
        r#"keyway_auth_total{method="api_key",outcome="invalid"} 2"#,
        r#"keyway_auth_total{method="api_key",outcome="expired"} 1"#,
        r#"keyway_auth_total{method="none",outcome="missing"} 1"#,
    ] {
        assert!(m.contains(line), "{line} missing:\n{m}");
    }
    let log = kw.log_text();
    for key in [&k.a, &k.b, &k.revoked, &k.expired, &k.narrow] {
        assert!(!log.contains(key.as_str()));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn jwts_are_validated_like_apim() {
    let up = FakeUpstream::start().await;
    let k = Keys {
        a: "kw-unused-a1".into(),
        b: "kw-unused-b1".into(),
        revoked: "kw-unused-r1".into(),
        expired: "kw-unused-e1".into(),
        narrow: "kw-unused-n1".into(),
    };
    let (key, jwk, public_pem) = rsa_key_with_public_pem();
    let kw = Keyway::start(&config(&up, &k, &jwk)).await;
    let body = r#"{"model":"gpt-4o","messages":[]}"#;
    let good = json!({"iss": "https://idp.example/t1", "aud": "api://keyway", "sub": "app-1",
        "exp": now() + 600, "roles": ["llm.user"], "portkey_workspace": "team-a"});
    let token = secret(&jwt(&key, good.clone()));
    let auth = format!("Bearer {token}");
    let (s, v, _) = call(
        &kw,
        &[("authorization", &auth), ("x-portkey-virtual-key", "vk-a")],
        body,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        up.only().header("authorization"),
        Some("Bearer sk-upstream-team-a")
    );

    let (other_key, _) = rsa_key();
    let mut bad = vec![
        ("another signing key", jwt(&other_key, good.clone())),
        ("HS256 keyed with the public key", {
            let mut h = Header::new(Algorithm::HS256);
            h.kid = Some("k1".into());
            jsonwebtoken::encode(&h, &good, &EncodingKey::from_secret(&public_pem)).unwrap()
        }),
        (
            "alg none",
            format!(
                "{}.{}.",
                URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"k1"}"#),
                URL_SAFE_NO_PAD.encode(good.to_string())
            ),
        ),
    ];
    for (what, field, value) in [
        ("wrong iss", "iss", json!("https://evil.example/")),
        ("wrong aud", "aud", json!("api://other")),
        ("expired", "exp", json!(now() - 3600)),
        ("missing claim", "roles", json!(["nope"])),
    ] {
        let mut c = good.clone();
        c[field] = value;
        bad.push((what, jwt(&key, c)));
    }
    for (what, t) in &bad {
        let auth = format!("Bearer {t}");
        let (s, v, _) = call(
            &kw,
            &[("authorization", &auth), ("x-portkey-virtual-key", "vk-a")],
            body,
        )
        .await;
        assert_eq!(s, 401, "{what}: {v}");
        assert_eq!(
            v["error"]["message"], "Unauthorized. Access token is missing or invalid.",
            "{what}"
        );
    }
    // A valid token of workspace A with team B's virtual key.
    let (s, _, _) = call(
        &kw,
        &[("authorization", &auth), ("x-portkey-virtual-key", "vk-b")],
        body,
    )
    .await;
    assert_eq!(s, 403);
    assert!(up.requests().is_empty());
    let m = kw.metrics().await;
    assert!(
        m.contains(r#"keyway_auth_total{method="jwt",outcome="ok"}"#),
        "{m}"
    );
    assert!(!kw.log_text().contains(token.as_str()));
}
