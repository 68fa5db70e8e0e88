//! The runtime snapshot a request starts on: `ArcSwap::load_full` of the active runtime (what
//! `Gateway::new_ctx` does, the `Arc` dropped again as at the request's end), and the borrowed
//! `load` guard for comparison. The snapshot is checked to be the runtime stored before anything
//! is timed.

mod support;

use std::hint::black_box;
use std::sync::Arc;

use arc_swap::ArcSwap;
use criterion::{criterion_group, criterion_main, Criterion};

use keyway::runtime::{digest_of, Runtime};

const CONFIG: &str = r#"
[workspaces.team-a]

[credentials.openai-a]
type = "api_key"
key = "sk-bench-upstream"

[virtual_keys.vk-a]
workspace = "team-a"
provider = "openai"
credential = "openai-a"
"#;

fn benches(c: &mut Criterion) {
    let (rt, _warm) = support::runtime(CONFIG);
    let active: Arc<ArcSwap<Runtime>> = Arc::new(ArcSwap::from_pointee(rt));
    assert_eq!(active.load_full().digest, digest_of(CONFIG));
    assert!(!active.load().awaits_store);

    let mut g = c.benchmark_group("runtime");
    g.bench_function("snapshot_load_full", |b| {
        b.iter(|| black_box(&*active).load_full())
    });
    g.bench_function("snapshot_load_guard", |b| {
        b.iter(|| black_box(&*active).load().awaits_store)
    });
    g.finish();
}

criterion_group!(runtime, benches);
criterion_main!(runtime);
