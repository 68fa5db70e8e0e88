//! What every counted answer costs in `crate::observe` and its metrics: the token counters of
//! one label set (`UsageMetrics::tokens`: a `with_label_values` lookup per kind), and the usage
//! scan of a whole OpenAI JSON answer and of a 9-event stream. Each result is checked before
//! anything is timed. (A cache of the counters by a hash of the label set measured 86 against
//! 108 ns here: not worth its code.)

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use pingora_prometheus::prometheus::Registry;

use keyway::metrics::usage::{UsageLabels, UsageMetrics};
use keyway::observe::usage::{Scanner, Shape, Tokens};
use keyway::vocab::Provider;

const JSON: &[u8] = br#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the fixed load-test upstream!"},"finish_reason":"stop"}],"usage":{"prompt_tokens":14,"completion_tokens":8,"total_tokens":22}}"#;

fn stream() -> Vec<u8> {
    let mut s = String::new();
    for word in [
        "Hello ",
        "from ",
        "the ",
        "fixed ",
        "load-test ",
        "upstream ",
        "! ",
    ] {
        s += &format!("data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{word}\"}},\"finish_reason\":null}}]}}\n\n");
    }
    s += "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":14,\"completion_tokens\":8,\"total_tokens\":22}}\n\ndata: [DONE]\n\n";
    s.into_bytes()
}

fn expected() -> Tokens {
    Tokens {
        prompt: Some(14),
        completion: Some(8),
        total: Some(22),
    }
}

fn benches(c: &mut Criterion) {
    let labels = UsageLabels {
        provider: Some(Provider::OpenAi),
        route: "portkey",
        workspace: "team-a",
        model: "gpt-4o-mini",
    };
    let registry = Registry::new();
    let usage = UsageMetrics::new(&registry).unwrap();
    usage.tokens(&labels, Some(14), Some(8), Some(22));
    assert_eq!(
        registry
            .gather()
            .iter()
            .find(|f| f.name() == "keyway_llm_tokens_total")
            .map(|f| f.get_metric().len()),
        Some(3)
    );

    let mut g = c.benchmark_group("token_counters");
    g.bench_function("tokens", |b| {
        b.iter(|| usage.tokens(black_box(&labels), Some(14), Some(8), Some(22)))
    });
    g.finish();

    let sse = stream();
    let mut s = Scanner::new(Shape::Json);
    s.feed_last(JSON);
    s.finish();
    assert_eq!(s.tokens, expected());
    let mut s = Scanner::new(Shape::Sse);
    s.feed_last(&sse);
    s.finish();
    assert_eq!(s.tokens, expected());
    assert_eq!(s.model.as_deref(), Some("gpt-4o-mini"));

    let mut g = c.benchmark_group("usage_scan");
    g.bench_function("json_whole", |b| {
        b.iter(|| {
            let mut s = Scanner::new(Shape::Json);
            s.feed_last(black_box(JSON));
            s.finish();
            s.tokens
        })
    });
    g.bench_function("sse_9_events", |b| {
        b.iter(|| {
            let mut s = Scanner::new(Shape::Sse);
            s.feed_last(black_box(&sse));
            s.finish();
            s.tokens
        })
    });
    g.finish();
}

criterion_group!(observe, benches);
criterion_main!(observe);
