//! Hardening (issue 9), through a real keyway: credential headers never leave, `/readyz` waits
//! for every JWT validator's keys, an Entra tenant named by its domain accepts Entra's tokens,
//! refusals are counted under the method that presented the credential, several validators on
//! one header are chosen by issuer (the most specific refusal wins), and tokens without `kid`
//! are checked against the published keys that fit.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::jwt::{alg_none, now, RsaSigner};
use common::{secret, FakeUpstream, Keyway, Recorded, Reply};
use serde_json::{json, Value};

const AUD: &str = "api://keyway";

fn hash(key: &str) -> String {
    keyway::auth::keys::hash_line(key)
}

fn claims(iss: &str, extra: Value) -> Value {
    let mut c = json!({"iss": iss, "aud": AUD, "sub": "app-1", "exp": now() + 600,
        "portkey_workspace": "team-a"});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

/// A workspace, a virtual key on the fake upstream and the upstream's base URL.
fn tenancy(up: &FakeUpstream) -> String {
    format!(
        r#"
[workspaces.team-a]
[credentials.openai-a]
type = "api_key"
key = "sk-upstream-team-a"
[virtual_keys.vk-a]
workspace = "team-a"
provider = "openai"
credential = "openai-a"
[providers.openai]
base_url = "{}/v1"
"#,
        up.base()
    )
}

struct Answer {
    status: u16,
    json: Value,
}

async fn post(kw: &Keyway, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut r = reqwest::Client::new()
        .post(kw.url(path))
        .body(r#"{"model":"gpt-4o","messages":[]}"#);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    Answer {
        status,
        json: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

async fn chat_vk(kw: &Keyway, headers: &[(&str, &str)]) -> Answer {
    let mut h = headers.to_vec();
    h.push(("x-portkey-virtual-key", "vk-a"));
    post(kw, "/v1/chat/completions", &h).await
}

/// No header of `r` carries any of `secrets`, and none of `absent` is there at all.
fn assert_clean(r: &Recorded, absent: &[&str], secrets: &[&str]) {
    for name in absent {
        assert!(r.header(name).is_none(), "{name} was forwarded upstream");
    }
    for (name, v) in &r.headers {
        let v = v.to_str().unwrap_or("");
        for s in secrets {
            assert!(
                !v.contains(s),
                "{name} carried a keyway credential upstream"
            );
        }
    }
}

fn metric(m: &str, line_prefix: &str) -> f64 {
    m.lines()
        .find_map(|l| l.strip_prefix(line_prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn no_header_that_carried_a_keyway_credential_is_forwarded() {
    let up = FakeUpstream::start().await;
    let (one, two) = (RsaSigner::new(Some("k1")), RsaSigner::new(Some("k2")));
    let gw = secret("kw-hardening-gateway-key-headers");
    let cfg = format!(
        r#"
[auth]
mode = "enforced"
[[auth.jwt]]
header = "x-client-token"
keys = [ {} ]
issuers = ["https://idp.one/"]
audiences = ["{AUD}"]
[[auth.jwt]]
header = "X-Other-Token"
scheme = "Token"
keys = [ {} ]
issuers = ["https://idp.two/"]
audiences = ["{AUD}"]
[[api_keys]]
name = "a"
hash = "{}"
workspace = "team-a"
[[routes]]
name = "front"
path_prefix = "/front"
provider = "openai"
upstream = "{}/v1"
strip_prefix = true
credential = "openai-a"
{}"#,
        one.toml_key(),
        two.toml_key(),
        hash(&gw),
        up.base(),
        tenancy(&up)
    );
    let kw = Keyway::start(&cfg).await;
    let t1 = secret(&one.sign(&claims("https://idp.one/", json!({}))));
    let t2 = secret(&two.sign(&claims("https://idp.two/", json!({}))));
    let token2 = format!("Token {t2}");
    let absent = [
        "x-client-token",
        "x-other-token",
        "x-portkey-api-key",
        "x-portkey-virtual-key",
        "api-key",
        "x-api-key",
    ];
    let creds = [t1.as_str(), t2.as_str(), gw.as_str()];

    // Each configured JWT header: accepted, then removed before the request leaves.
    for (name, value) in [("x-client-token", t1.as_str()), ("x-other-token", &token2)] {
        let a = chat_vk(&kw, &[(name, value)]).await;
        assert_eq!(a.status, 200, "{name}: {}", a.json);
        let got = up.only();
        assert_eq!(
            got.header("authorization"),
            Some("Bearer sk-upstream-team-a")
        );
        assert_clean(&got, &absent, &creds);
    }
    // Each header a gateway key may come in, on a front-door route whose provider takes Bearer.
    let bearer = format!("Bearer {gw}");
    for (name, value) in [
        ("x-portkey-api-key", gw.as_str()),
        ("authorization", bearer.as_str()),
        ("api-key", gw.as_str()),
        ("x-api-key", gw.as_str()),
    ] {
        let a = post(&kw, "/front/chat/completions", &[(name, value)]).await;
        assert_eq!(a.status, 200, "{name}: {}", a.json);
        let got = up.only();
        assert_eq!(got.uri, "/v1/chat/completions");
        assert_eq!(
            got.header("authorization"),
            Some("Bearer sk-upstream-team-a")
        );
        assert_clean(&got, &absent, &creds);
    }
}

/// A JWKS endpoint that answers 503 until `up` is set.
async fn flaky_jwks(signer: &RsaSigner, up: Arc<AtomicBool>) -> FakeUpstream {
    let doc = json!({"keys": [signer.jwk()]}).to_string();
    FakeUpstream::with(move |_| match up.load(Ordering::SeqCst) {
        true => Reply::ok_json(&doc),
        false => Reply::Json {
            status: 503,
            body: r#"{"error":"temporarily_unavailable"}"#.into(),
            headers: vec![],
        },
    })
    .await
}

async fn readyz(kw: &Keyway) -> (u16, String) {
    let r = reqwest::get(format!("http://127.0.0.1:{}/readyz", kw.metrics_port))
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_waits_for_every_jwt_validators_first_key_set() {
    let up = FakeUpstream::start().await;
    let signer = RsaSigner::new(Some("r1"));
    let jwks_up = Arc::new(AtomicBool::new(false));
    let idp = flaky_jwks(&signer, jwks_up.clone()).await;
    let inline = RsaSigner::new(Some("i1"));
    let cfg = format!(
        r#"
[auth]
mode = "enforced"
[[auth.jwt]]
keys = [ {} ]
issuers = ["https://inline/"]
audiences = ["{AUD}"]
[[auth.jwt]]
jwks_uri = "{}/keys"
issuers = ["https://idp/"]
audiences = ["{AUD}"]
{}"#,
        inline.toml_key(),
        idp.base(),
        tenancy(&up)
    );
    let kw = Keyway::start_opts(&cfg, &[], "/healthz").await;
    // Bounded: the JWKS endpoint is down for a second and a half; /readyz stays 503 and names
    // the validator it waits for (not the inline one, which has its keys).
    let until = Instant::now() + Duration::from_millis(1500);
    let mut polls = 0;
    while Instant::now() < until {
        let (status, body) = readyz(&kw).await;
        assert_eq!(status, 503, "ready while a validator has no keys: {body}");
        assert!(body.contains("JWT validator auth.jwt[1]"), "{body}");
        assert!(!body.contains("auth.jwt[0]"), "{body}");
        polls += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(polls >= 5);
    let token = signer.sign(&claims("https://idp/", json!({})));
    let auth = format!("Bearer {token}");
    assert_eq!(chat_vk(&kw, &[("authorization", &auth)]).await.status, 401);

    jwks_up.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = readyz(&kw).await;
        if status == 200 {
            assert_eq!(body, "ready\n");
            break;
        }
        assert!(Instant::now() < deadline, "never ready: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(chat_vk(&kw, &[("authorization", &auth)]).await.status, 200);
}

const GUID: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const DOMAIN: &str = "contoso.onmicrosoft.com";

/// Entra's discovery for a tenant named by its domain: the document names the tenant's GUID
/// in `issuer`, as login.microsoftonline.com does.
async fn entra_discovery(signer: &RsaSigner) -> FakeUpstream {
    let base = Arc::new(Mutex::new(String::new()));
    let b = base.clone();
    let keys = json!({"keys": [signer.jwk()]}).to_string();
    let fake = FakeUpstream::with(move |r| {
        let base = b.lock().unwrap().clone();
        if r.uri == format!("/{DOMAIN}/v2.0/.well-known/openid-configuration") {
            Reply::ok_json(
                &json!({"issuer": format!("{base}/{GUID}/v2.0"),
                    "jwks_uri": format!("{base}/{GUID}/discovery/v2.0/keys"),
                    "token_endpoint": format!("{base}/{GUID}/oauth2/v2.0/token")})
                .to_string(),
            )
        } else if r.uri == format!("/{GUID}/discovery/v2.0/keys") {
            Reply::ok_json(&keys)
        } else {
            Reply::Json {
                status: 404,
                body: "{}".into(),
                headers: vec![],
            }
        }
    })
    .await;
    *base.lock().unwrap() = fake.base();
    fake
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_given_by_domain_accepts_the_tokens_entra_issues() {
    let up = FakeUpstream::start().await;
    let signer = RsaSigner::new(Some("entra-key-1"));
    let idp = entra_discovery(&signer).await;
    let cfg = format!(
        "[azure]\nauthority_host = \"{}\"\n[auth]\nmode = \"enforced\"\n[[auth.jwt]]\ntenant_id = \"{DOMAIN}\"\naudiences = [\"{AUD}\"]\n{}",
        idp.base(),
        tenancy(&up)
    );
    let kw = Keyway::start(&cfg).await;
    let base = idp.base();
    for (iss, want) in [
        (format!("{base}/{GUID}/v2.0"), 200),
        (format!("https://sts.windows.net/{GUID}/"), 200),
        // Entra never writes the domain into iss; another tenant's GUID is another tenant.
        (format!("{base}/{DOMAIN}/v2.0"), 401),
        (
            format!("{base}/00000000-0000-0000-0000-000000000001/v2.0"),
            401,
        ),
    ] {
        let token = signer.sign(&claims(&iss, json!({})));
        let auth = format!("Bearer {token}");
        let a = chat_vk(&kw, &[("authorization", &auth)]).await;
        assert_eq!(a.status, want, "iss {iss}: {}", a.json);
    }
    assert_eq!(up.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn validators_are_chosen_by_issuer_and_the_most_specific_refusal_wins() {
    let up = FakeUpstream::start().await;
    let (a, b, c) = (
        RsaSigner::new(Some("a1")),
        RsaSigner::new(Some("b1")),
        RsaSigner::new(Some("c1")),
    );
    let validator = |s: &RsaSigner, iss: &str, status: u16, msg: &str| {
        format!(
            "[[auth.jwt]]\nkeys = [ {} ]\nissuers = [\"{iss}\"]\naudiences = [\"{AUD}\"]\nfailed_validation_httpcode = {status}\nfailed_validation_error_message = \"{msg}\"\n",
            s.toml_key()
        )
    };
    let cfg = format!(
        "[auth]\nmode = \"enforced\"\n{}{}{}{}",
        validator(&a, "https://idp.a/", 401, "refused by A"),
        validator(&b, "https://idp.b/", 403, "refused by B"),
        // Same issuer as A (say, a second key configuration): tried after A, in order.
        validator(&c, "https://idp.a/", 401, "refused by C"),
        tenancy(&up)
    );
    let kw = Keyway::start(&cfg).await;
    let call = |t: String| {
        let kw = &kw;
        async move {
            let auth = format!("Bearer {t}");
            chat_vk(kw, &[("authorization", &auth)]).await
        }
    };
    // The second validator's token is no longer decided by the first.
    assert_eq!(
        call(b.sign(&claims("https://idp.b/", json!({}))))
            .await
            .status,
        200
    );
    assert_eq!(
        call(a.sign(&claims("https://idp.a/", json!({}))))
            .await
            .status,
        200
    );
    assert_eq!(
        call(c.sign(&claims("https://idp.a/", json!({}))))
            .await
            .status,
        200
    );
    assert_eq!(up.requests().len(), 3);

    // B verifies the signature and refuses the audience: B's refusal, not A's unknown key.
    let r = call(b.sign(&claims("https://idp.b/", json!({"aud": "api://other"})))).await;
    assert_eq!(
        (r.status, r.json["error"]["message"].as_str()),
        (403, Some("refused by B"))
    );
    // No validator takes this issuer: every one is tried and B got furthest (issuer check).
    let r = call(b.sign(&claims("https://idp.unknown/", json!({})))).await;
    assert_eq!(
        (r.status, r.json["error"]["message"].as_str()),
        (403, Some("refused by B"))
    );
    // A forged key for A's issuer: A and C both fail at the key; the first of them answers.
    let r = call(RsaSigner::new(Some("a1")).sign(&claims("https://idp.a/", json!({})))).await;
    assert_eq!(
        (r.status, r.json["error"]["message"].as_str()),
        (401, Some("refused by A"))
    );

    // A valid token that names no workspace: forbidden, counted under jwt.
    let r = call(a.sign(&claims(
        "https://idp.a/",
        json!({"portkey_workspace": null}),
    )))
    .await;
    assert_eq!(r.status, 403, "{}", r.json);
    let m = kw.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"keyway_auth_total{method="jwt",outcome="forbidden"} "#
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            r#"keyway_auth_total{method="api_key",outcome="forbidden"} "#
        ),
        0.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, r#"keyway_auth_total{method="jwt",outcome="invalid"} "#),
        3.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, r#"keyway_auth_total{method="jwt",outcome="ok"} "#),
        3.0,
        "{m}"
    );
    assert_eq!(
        up.requests().len(),
        3,
        "a refused request reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_without_kid_are_checked_against_the_keys_that_fit() {
    let up = FakeUpstream::start().await;
    let kidless = RsaSigner::new(None);
    let named = RsaSigner::new(Some("n1"));
    let cfg = format!(
        "[auth]\nmode = \"enforced\"\n[[auth.jwt]]\nkeys = [ {}, {} ]\nissuers = [\"https://idp/\"]\naudiences = [\"{AUD}\"]\n{}",
        kidless.toml_key(),
        named.toml_key(),
        tenancy(&up)
    );
    let kw = Keyway::start(&cfg).await;
    let good = claims("https://idp/", json!({}));
    let call = |t: String| {
        let kw = &kw;
        async move {
            let auth = format!("Bearer {t}");
            chat_vk(kw, &[("authorization", &auth)]).await.status
        }
    };
    // Signed by the published key without kid, and by the named key with its kid left out.
    assert_eq!(call(kidless.sign(&good)).await, 200);
    assert_eq!(call(named.sign_without_kid(&good)).await, 200);
    assert_eq!(up.requests().len(), 2);
    // Still refused: an unpublished key, alg none, HS256 keyed with a published public key.
    assert_eq!(call(RsaSigner::new(None).sign(&good)).await, 401);
    assert_eq!(call(alg_none(&good)).await, 401);
    assert_eq!(call(kidless.forge_hs256(&good)).await, 401);
    assert_eq!(up.requests().len(), 2);
}
