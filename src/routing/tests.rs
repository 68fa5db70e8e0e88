//! Routing against the built-in provider URLs (the end-to-end tests override them to reach a
//! local fake, so the real hosts are checked here).

use http::{HeaderMap, HeaderValue, Uri};

use super::*;
use crate::config;
use crate::env::Env;

/// The router of the runtime `toml` builds (tokens and secrets in fresh caches; nothing is
/// fetched).
fn router(toml: &str) -> Router {
    let c = config::from_str(toml, &Env::default()).unwrap();
    let registry = pingora_prometheus::prometheus::Registry::new();
    let metrics = Arc::new(crate::metrics::Metrics::new(&registry).unwrap());
    let warm = crate::runtime::Warm::new(&c, metrics, crate::cache::renewal::Timing::system());
    crate::runtime::build(&c, String::new(), &warm)
        .unwrap()
        .router
}

fn plan(r: &Router, path: &str, headers: &[(&'static str, &str)]) -> Result<Plan, RouteError> {
    let mut h = HeaderMap::new();
    for (k, v) in headers {
        h.insert(*k, HeaderValue::from_str(v).unwrap());
    }
    r.route(
        &Uri::try_from(path).unwrap(),
        Some("gw.local"),
        &h,
        Access::default(),
    )
}

fn target(p: &Plan, client_path: &str) -> String {
    format!(
        "{}://{}{}",
        if p.tls { "https" } else { "http" },
        p.host_header.to_str().unwrap(),
        p.path.as_deref().unwrap_or(client_path)
    )
}

#[test]
fn built_in_urls_for_every_provider() {
    let r = router("");
    let cases = [
        ("openai", "https://api.openai.com/v1/chat/completions"),
        ("anthropic", "https://api.anthropic.com/v1/chat/completions"),
        (
            "google",
            "https://generativelanguage.googleapis.com/v1beta/openai/chat/completions",
        ),
        (
            "bedrock",
            "https://bedrock-runtime.us-east-1.amazonaws.com/openai/v1/chat/completions",
        ),
        (
            "cohere",
            "https://api.cohere.ai/compatibility/v1/chat/completions",
        ),
        ("mistral-ai", "https://api.mistral.ai/v1/chat/completions"),
        (
            "together-ai",
            "https://api.together.xyz/v1/chat/completions",
        ),
        ("groq", "https://api.groq.com/openai/v1/chat/completions"),
        (
            "perplexity-ai",
            "https://api.perplexity.ai/chat/completions",
        ),
        ("ollama", "http://localhost:11434/v1/chat/completions"),
        ("deepseek", "https://api.deepseek.com/v1/chat/completions"),
        (
            "fireworks-ai",
            "https://api.fireworks.ai/inference/v1/chat/completions",
        ),
        (
            "openrouter",
            "https://openrouter.ai/api/v1/chat/completions",
        ),
        (
            "anyscale",
            "https://api.endpoints.anyscale.com/v1/chat/completions",
        ),
    ];
    for (slug, want) in cases {
        let p = plan(
            &r,
            "/v1/chat/completions",
            &[("x-portkey-provider", slug), ("authorization", "Bearer k")],
        )
        .unwrap();
        assert_eq!(target(&p, "/v1/chat/completions"), want, "{slug}");
        assert_eq!(p.port, if slug == "ollama" { 11434 } else { 443 });
        assert_eq!(
            &*p.host,
            p.host_header.to_str().unwrap().split(':').next().unwrap()
        );
    }
}

#[test]
fn azure_urls_fill_resource_deployment_and_version() {
    let r = router("");
    let az = |extra: &[(&'static str, &str)]| {
        let mut h = vec![
            ("x-portkey-provider", "azure-openai"),
            ("x-portkey-api-key", "k"),
            ("x-portkey-azure-resource-name", "MyRes"),
        ];
        h.extend_from_slice(extra);
        plan(&r, "/v1/chat/completions?foo=1&api-version=old", &h).unwrap()
    };
    let p = az(&[("x-portkey-azure-deployment-id", "gpt4o")]);
    assert_eq!(
        target(&p, ""),
        "https://myres.openai.azure.com/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21&foo=1"
    );
    assert!(matches!(&p.auth, Some(UpstreamAuth::Static(a)) if a.name == API_KEY));
    let p = az(&[("x-portkey-azure-api-version", "v1")]);
    assert_eq!(
        target(&p, ""),
        "https://myres.openai.azure.com/openai/v1/chat/completions?foo=1"
    );
    let p = az(&[("x-portkey-azure-api-version", "preview")]);
    assert_eq!(
        target(&p, ""),
        "https://myres.openai.azure.com/openai/v1/chat/completions?api-version=preview&foo=1"
    );
    let p = az(&[
        ("x-portkey-azure-deployment-id", "d"),
        ("x-portkey-azure-ad-token", "Bearer eyJ.tok"),
    ]);
    let Some(UpstreamAuth::Static(auth)) = p.auth else {
        panic!("static auth expected")
    };
    assert_eq!(
        (auth.name, auth.value.to_str().unwrap()),
        (AUTHORIZATION, "Bearer eyJ.tok")
    );
    assert!(auth.value.is_sensitive());

    let p = plan(
        &r,
        "/v1/chat/completions",
        &[
            ("x-portkey-provider", "azure-ai"),
            ("x-portkey-api-key", "k"),
            ("x-portkey-azure-resource-name", "proj"),
        ],
    )
    .unwrap();
    assert_eq!(
        target(&p, ""),
        "https://proj.services.ai.azure.com/models/chat/completions?api-version=2024-05-01-preview"
    );
}

#[test]
fn config_defaults_apply_and_headers_win() {
    let r = router(
        "[providers.azure-openai]\napi_version = \"2025-04-01-preview\"\napi_key = \"cfg\"\n",
    );
    let p = plan(
        &r,
        "/v1/embeddings",
        &[(
            "x-portkey-config",
            r#"{"provider":"azure-openai","resourceName":"r","deploymentId":"e"}"#,
        )],
    )
    .unwrap();
    assert_eq!(
        target(&p, ""),
        "https://r.openai.azure.com/openai/deployments/e/embeddings?api-version=2025-04-01-preview"
    );
    assert!(matches!(&p.auth, Some(UpstreamAuth::Static(a)) if a.value == "cfg"));
    let p = plan(
        &r,
        "/v1/embeddings",
        &[
            (
                "x-portkey-config",
                r#"{"provider":"azure-openai","resource_name":"r","deployment_id":"e"}"#,
            ),
            ("x-portkey-azure-api-version", "2024-02-01"),
        ],
    )
    .unwrap();
    assert!(p.path.unwrap().ends_with("api-version=2024-02-01"));
}

#[test]
fn bedrock_region_and_sigv4_refusal() {
    let r = router("");
    let p = plan(
        &r,
        "/v1/chat/completions",
        &[
            ("x-portkey-provider", "bedrock"),
            ("authorization", "Bearer k"),
            ("x-portkey-aws-region", "eu-west-3"),
        ],
    )
    .unwrap();
    assert_eq!(&*p.host, "bedrock-runtime.eu-west-3.amazonaws.com");
    let e = plan(
        &r,
        "/v1/chat/completions",
        &[
            ("x-portkey-provider", "bedrock"),
            ("x-portkey-aws-access-key-id", "AKIA"),
        ],
    )
    .unwrap_err();
    assert!(matches!(e, RouteError::Unsupported { .. }));
}

#[test]
fn custom_hosts_follow_the_ssrf_policy() {
    let r = router("trusted_custom_hosts = [\"10.1.2.3:8000\"]");
    let p = plan(
        &r,
        "/v1/chat/completions",
        &[
            ("x-portkey-provider", "openai"),
            ("authorization", "Bearer k"),
            ("x-portkey-custom-host", "https://llm.example.com/api"),
        ],
    )
    .unwrap();
    assert_eq!(
        target(&p, ""),
        "https://llm.example.com/api/chat/completions"
    );
    assert!(
        p.check_resolved_ips,
        "a public name must still have its addresses checked"
    );
    let p = plan(
        &r,
        "/v1/chat/completions",
        &[
            ("x-portkey-provider", "openai"),
            ("authorization", "Bearer k"),
            ("x-portkey-custom-host", "http://10.1.2.3:8000/v1"),
        ],
    )
    .unwrap();
    assert!(!p.check_resolved_ips);
    assert!(p.path.is_none());
    for bad in [
        "http://10.1.2.3:8001/v1",
        "http://[::1]/",
        "http://metadata.google.internal/",
        "gopher://x",
    ] {
        let e = plan(
            &r,
            "/v1/chat/completions",
            &[
                ("x-portkey-provider", "openai"),
                ("x-portkey-custom-host", bad),
            ],
        )
        .unwrap_err();
        assert!(
            matches!(e, RouteError::ForbiddenCustomHost(_)),
            "{bad}: {e:?}"
        );
    }
}

#[test]
fn paths_outside_v1_need_a_route() {
    let r = router("");
    for p in [
        "/",
        "/v1",
        "/v1/",
        "/v2/chat/completions",
        "/openai/deployments/x",
    ] {
        assert_eq!(
            plan(&r, p, &[("x-portkey-provider", "openai")]).unwrap_err(),
            RouteError::NoRoute,
            "{p}"
        );
    }
}

#[test]
fn prefixes_match_whole_segments() {
    assert!(prefix_matches("/openai/x", "/openai/"));
    assert!(prefix_matches("/openai", "/openai"));
    assert!(prefix_matches("/openai/x", "/openai"));
    assert!(!prefix_matches("/openaix", "/openai"));
    assert!(!prefix_matches("/open", "/openai/"));
}

#[test]
fn query_rewrite_drops_only_what_keyway_sets() {
    let mut s = String::from("/p?api-version=1");
    push_query(&mut s, Some("a=1&api-version=2&&b"), Some("api-version"));
    assert_eq!(s, "/p?api-version=1&a=1&b");
    let mut s = String::from("/p");
    push_query(&mut s, Some(""), None);
    assert_eq!(s, "/p");
}

fn token_slot(p: &Plan) -> Arc<crate::cache::tokens::TokenSlot> {
    match &p.auth {
        Some(UpstreamAuth::Token(slot)) => slot.clone(),
        other => panic!("token auth expected, got {other:?}"),
    }
}

#[test]
fn azure_auth_modes_from_headers_share_slots_by_credential() {
    let r = router("");
    let entra = |secret: &str| {
        plan(
            &r,
            "/v1/chat/completions",
            &[
                ("x-portkey-provider", "azure-openai"),
                ("x-portkey-azure-resource-name", "res"),
                ("x-portkey-azure-deployment-id", "d"),
                ("x-portkey-azure-auth-mode", "entra"),
                ("x-portkey-azure-entra-tenant-id", "t1"),
                ("x-portkey-azure-entra-client-id", "c1"),
                ("x-portkey-azure-entra-client-secret", secret),
            ],
        )
        .unwrap()
    };
    let a = token_slot(&entra("s1"));
    assert!(
        Arc::ptr_eq(&a, &token_slot(&entra("s1"))),
        "same credential, same slot"
    );
    assert!(
        !Arc::ptr_eq(&a, &token_slot(&entra("s2"))),
        "another secret never shares a token"
    );
    assert_eq!(a.mode, crate::credentials::AuthMode::Entra);

    let e = plan(
        &r,
        "/v1/chat/completions",
        &[
            ("x-portkey-provider", "azure-openai"),
            ("x-portkey-azure-resource-name", "res"),
            ("x-portkey-azure-deployment-id", "d"),
            ("x-portkey-azure-auth-mode", "entra"),
            ("x-portkey-azure-entra-tenant-id", "t1"),
            ("x-portkey-azure-entra-client-id", "c1"),
        ],
    )
    .unwrap_err();
    assert_eq!(
        e,
        RouteError::MissingAuthField {
            header: "x-portkey-azure-entra-client-secret",
            mode: "entra"
        }
    );

    let m = plan(&r, "/v1/chat/completions", &[
        ("x-portkey-config", r#"{"provider":"azure-ai","resourceName":"proj","azureAuthMode":"managed","azureManagedClientId":"u1"}"#),
    ])
    .unwrap();
    assert_eq!(token_slot(&m).mode, crate::credentials::AuthMode::Managed);
}

#[test]
fn ambient_identities_can_be_closed_to_headers() {
    let r = router("[azure]\nambient_identity_from_headers = false\n");
    let e = plan(
        &r,
        "/v1/chat/completions",
        &[
            ("x-portkey-provider", "azure-openai"),
            ("x-portkey-azure-resource-name", "res"),
            ("x-portkey-azure-deployment-id", "d"),
            ("x-portkey-azure-auth-mode", "managed"),
        ],
    )
    .unwrap_err();
    assert!(matches!(e, RouteError::Unsupported { .. }), "{e:?}");
}

#[test]
fn foundry_hosts_default_to_their_own_scope() {
    assert_eq!(
        default_scope("proj.services.ai.azure.com"),
        crate::credentials::AI_FOUNDRY_SCOPE
    );
    assert_eq!(
        default_scope("res.openai.azure.com"),
        crate::credentials::COGNITIVE_SCOPE
    );
}
