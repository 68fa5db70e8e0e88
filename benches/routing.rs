//! Routing and the upstream rewrite, per request: `Router::route` (parse the Portkey headers,
//! plan the first target) for an `x-portkey-provider` request and for `x-portkey-config`
//! requests (a single target, and a fallback over two), the cold parse of a config the runtime
//! has not seen yet, and `proxy::rewrite`, which turns the client's request into the upstream
//! one. Each input is routed once and its plan checked before anything is timed.

mod support;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::{HeaderMap, HeaderValue, Uri};
use pingora::http::RequestHeader;

use keyway::routing::{Access, Plan, Router, UpstreamAuth};
use keyway::vocab::Provider;

/// The open posture with no provider keys of its own: callers bring theirs, as most drop-in
/// Portkey deployments do.
const CONFIG: &str = "";
/// The load test's `keyway` target: the provider's key is in the configuration, and the client
/// sends only `x-portkey-provider`.
const KEYED: &str = "[providers.openai]\napi_key = \"sk-configured-bench\"\n";

const PATH: &str = "/v1/chat/completions";
const HOST: Option<&str> = Some("gw.local");

const SINGLE: &str = r#"{"provider":"anthropic","api_key":"sk-ant-bench"}"#;
/// One header line: a header value holds no line breaks.
const FALLBACK: &str = concat!(
    r#"{"strategy":{"mode":"fallback"},"targets":["#,
    r#"{"provider":"openai","api_key":"sk-bench-a"},"#,
    r#"{"provider":"anthropic","api_key":"sk-ant-bench-b"}]}"#
);

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in pairs {
        h.insert(*name, HeaderValue::from_str(value).expect("header value"));
    }
    h
}

/// A chat request as an OpenAI SDK pointed at the gateway sends it.
fn client_headers(extra: &[(&'static str, &str)]) -> HeaderMap {
    let mut pairs = vec![
        ("host", "gw.local"),
        ("content-type", "application/json"),
        ("accept", "application/json"),
        ("user-agent", "OpenAI/Python 1.54.0"),
        ("content-length", "96"),
        ("x-portkey-trace-id", "bench-trace-1"),
    ];
    pairs.extend_from_slice(extra);
    headers(&pairs)
}

fn route(router: &Router, uri: &Uri, h: &HeaderMap) -> Plan {
    router
        .route(uri, HOST, h, Access::default())
        .expect("the bench request routes")
}

/// The static credential header a plan sends upstream.
fn static_auth(plan: &Plan) -> (&str, &HeaderValue) {
    match &plan.auth {
        Some(UpstreamAuth::Static(a)) => (a.name.as_str(), &a.value),
        other => panic!("expected a static credential, got {other:?}"),
    }
}

fn bench_portkey(c: &mut Criterion, router: &Router) {
    let uri = Uri::from_static(PATH);
    let mut g = c.benchmark_group("routing");

    let by_provider = client_headers(&[
        ("x-portkey-provider", "openai"),
        ("authorization", "Bearer sk-client-bench"),
    ]);
    let plan = route(router, &uri, &by_provider);
    assert_eq!(plan.provider, Provider::OpenAi);
    assert_eq!(&*plan.host, "api.openai.com");
    assert_eq!(static_auth(&plan).1, "Bearer sk-client-bench");
    g.bench_function("portkey_provider_header", |b| {
        b.iter(|| route(router, black_box(&uri), black_box(&by_provider)))
    });

    let single = client_headers(&[("x-portkey-config", SINGLE)]);
    let plan = route(router, &uri, &single);
    assert_eq!(plan.provider, Provider::Anthropic);
    assert_eq!(&*plan.host, "api.anthropic.com");
    // Anthropic's OpenAI-compatible endpoint takes the key as a Bearer token.
    assert_eq!(static_auth(&plan).0, "authorization");
    assert_eq!(static_auth(&plan).1, "Bearer sk-ant-bench");
    g.bench_function("portkey_config_single", |b| {
        b.iter(|| route(router, black_box(&uri), black_box(&single)))
    });

    let fallback = client_headers(&[("x-portkey-config", FALLBACK)]);
    let plan = route(router, &uri, &fallback);
    assert_eq!(plan.provider, Provider::OpenAi);
    assert_eq!(static_auth(&plan).1, "Bearer sk-bench-a");
    let parsed = router.parse(&uri, HOST, &fallback).expect("parses");
    assert_eq!(router.targets(&parsed), 2);
    g.bench_function("portkey_config_fallback", |b| {
        b.iter(|| route(router, black_box(&uri), black_box(&fallback)))
    });

    // What a config costs the first time a runtime sees its text (later ones hit the runtime's
    // cache of parsed configs, as above).
    let tree = keyway::routing::portkey::parse_stored(FALLBACK).expect("config parses");
    assert_eq!(tree.leaves().len(), 2);
    g.bench_function("portkey_config_parse_cold", |b| {
        b.iter(|| keyway::routing::portkey::parse_stored(black_box(FALLBACK)))
    });
    g.finish();
}

/// The client's request as Pingora hands it to the proxy.
fn client_request(h: &HeaderMap) -> RequestHeader {
    let mut req = RequestHeader::build("POST", PATH.as_bytes(), Some(h.len())).expect("request");
    for (name, value) in h {
        req.append_header(name.clone(), value.clone())
            .expect("header");
    }
    req
}

fn bench_rewrite(c: &mut Criterion, router: &Router, also_strip: &[http::HeaderName]) {
    let uri = Uri::from_static(PATH);
    let h = client_headers(&[
        ("x-portkey-provider", "openai"),
        ("authorization", "Bearer sk-client-bench"),
    ]);
    let plan = route(router, &uri, &h);
    let template = client_request(&h);

    let mut req = template.clone();
    keyway::proxy::rewrite(&mut req, &plan, None, None, also_strip).expect("rewrite");
    assert!(req
        .headers
        .keys()
        .all(|n| !n.as_str().starts_with("x-portkey-")));
    assert_eq!(req.headers["host"], "api.openai.com");
    assert_eq!(req.headers["authorization"], "Bearer sk-client-bench");
    assert_eq!(req.headers["content-type"], "application/json");
    assert_eq!(req.uri.path(), plan.path.as_deref().unwrap_or(PATH));

    bench_rewrite_of(c, "rewrite_openai", &template, &plan, also_strip);
}

/// Times `proxy::rewrite` of copies of `template` (each copy made outside the timed part).
fn bench_rewrite_of(
    c: &mut Criterion,
    id: &str,
    template: &RequestHeader,
    plan: &Plan,
    also_strip: &[http::HeaderName],
) {
    let mut g = c.benchmark_group("upstream");
    g.bench_function(id, |b| {
        b.iter_batched(
            || template.clone(),
            |mut req| {
                keyway::proxy::rewrite(&mut req, black_box(plan), None, None, also_strip)
                    .expect("rewrite");
                req
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// The same two steps for the load test's request: the key comes from the configuration.
fn bench_configured_key(c: &mut Criterion, router: &Router, also_strip: &[http::HeaderName]) {
    let uri = Uri::from_static(PATH);
    let h = client_headers(&[("x-portkey-provider", "openai")]);
    let plan = route(router, &uri, &h);
    assert_eq!(static_auth(&plan).1, "Bearer sk-configured-bench");
    let mut g = c.benchmark_group("routing");
    g.bench_function("portkey_provider_configured_key", |b| {
        b.iter(|| route(router, black_box(&uri), black_box(&h)))
    });
    g.finish();

    let template = client_request(&h);
    let mut req = template.clone();
    keyway::proxy::rewrite(&mut req, &plan, None, None, also_strip).expect("rewrite");
    assert_eq!(req.headers["authorization"], "Bearer sk-configured-bench");
    bench_rewrite_of(c, "rewrite_configured_key", &template, &plan, also_strip);
}

fn benches(c: &mut Criterion) {
    let (rt, _warm) = support::runtime(CONFIG);
    bench_portkey(c, &rt.router);
    bench_rewrite(c, &rt.router, &rt.auth.credential_headers);
    let (keyed, _warm) = support::runtime(KEYED);
    bench_configured_key(c, &keyed.router, &keyed.auth.credential_headers);
}

criterion_group!(routing, benches);
criterion_main!(routing);
