//! Credential caches on the request path, hits only (a miss waits on an identity provider or a
//! secret manager, which no bench should time): a token slot's current token (`TokenSlot::get`,
//! for a credential the plan carries), the same reached from the credential's description (a
//! header credential: key digest, slot lookup, token), and a mapped key from the secret store
//! turned into its header (`SecretStore::get` then `SecretAuth::header`, as the proxy does).
//! Each cache is filled through a fake source and its answer checked before anything is timed.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use criterion::{criterion_group, criterion_main, Criterion};
use futures_util::FutureExt;
use http::HeaderValue;
use sha2::{Digest, Sha256};

use keyway::cache::renewal::Timing;
use keyway::cache::secrets::{Entry, EntrySpec, SecretKey, SecretPolicy, SecretStore};
use keyway::cache::tokens::{CachedToken, TokenCache, TokenSlot};
use keyway::credentials::secrets::{Fetcher, ManagerType, SecretDoc, SecretError, SecretFetcher};
use keyway::credentials::spec::{ClientSecret, TokenSpec};
use keyway::credentials::{AuthMode, CredentialError, CredentialSource, Token};
use keyway::metrics::Metrics;
use keyway::routing::SecretAuth;
use keyway::secret::Secret;

const HOUR: Duration = Duration::from_secs(3600);

/// An identity provider that always answers with the same hour-long token.
#[derive(Debug)]
struct FixedToken;

#[async_trait]
impl CredentialSource for FixedToken {
    fn mode(&self) -> AuthMode {
        AuthMode::Entra
    }

    async fn fetch(&self) -> Result<Token, CredentialError> {
        Ok(Token {
            value: Secret::new("bench-access-token"),
            expires_at: SystemTime::now() + HOUR,
        })
    }
}

/// A secret manager that always answers with the same key.
#[derive(Debug)]
struct FixedSecret;

#[async_trait]
impl SecretFetcher for FixedSecret {
    async fn fetch(&self) -> Result<SecretDoc, SecretError> {
        Ok(SecretDoc::Text(Secret::new("sk-bench-mapped-key")))
    }
}

fn metrics() -> Arc<Metrics> {
    let registry = pingora_prometheus::prometheus::Registry::new();
    Arc::new(Metrics::new(&registry).expect("metrics register"))
}

fn spec() -> TokenSpec {
    TokenSpec::Entra {
        tenant: "bench-tenant".into(),
        client_id: "bench-client".into(),
        secret: ClientSecret::Value(Secret::new("bench-client-secret")),
        scope: keyway::credentials::COGNITIVE_SCOPE.into(),
    }
}

/// A hit: the future completes on its first poll, with no executor in the timing.
fn token_hit(slot: &TokenSlot, m: &Metrics) -> Arc<CachedToken> {
    slot.get(m)
        .now_or_never()
        .expect("a cached token is served without waiting")
        .expect("the cached token is valid")
}

fn bench_tokens(c: &mut Criterion, tokio: &tokio::runtime::Runtime) {
    let m = metrics();
    let cache = TokenCache::new(64, HOUR, Timing::system());
    let spec = spec();
    let slot = cache
        .slot(&spec, true, || Arc::new(FixedToken))
        .expect("slot");
    tokio.block_on(slot.get(&m)).expect("first fetch");
    let t = token_hit(&slot, &m);
    assert_eq!(t.header, "Bearer bench-access-token");

    let mut g = c.benchmark_group("token_cache");
    g.bench_function("slot_hit", |b| b.iter(|| token_hit(black_box(&slot), &m)));

    let keyed = |s: &TokenSpec| {
        let slot = cache.slot(s, false, || unreachable!("the slot exists"));
        token_hit(&slot.expect("slot"), &m)
    };
    assert!(Arc::ptr_eq(&keyed(&spec), &t));
    g.bench_function("keyed_hit", |b| b.iter(|| keyed(black_box(&spec))));
    g.finish();
}

fn bench_secrets(c: &mut Criterion, tokio: &tokio::runtime::Runtime) {
    let policy = SecretPolicy {
        ttl: HOUR,
        max_stale: HOUR,
        prefetch: false,
        fetch_timeout: Duration::from_secs(5),
    };
    let store = SecretStore::new(policy, metrics(), Timing::system());
    let spec = EntrySpec {
        key: SecretKey(Sha256::digest(b"bench vault openai-prod").into()),
        slug: "openai-prod".into(),
        manager: ManagerType::HashicorpVault,
        secret_key: None,
        allowed: None,
    };
    let fetcher: Fetcher = Arc::new(FixedSecret);
    let entry = store.entry(spec, || fetcher);
    store.activate(std::slice::from_ref(&entry));
    let auth = SecretAuth::new(entry.clone(), http::header::AUTHORIZATION, true);
    tokio.block_on(store.get(&entry)).expect("first fetch");

    let hit = |e: &Entry| -> HeaderValue {
        let cached = store
            .get(e)
            .now_or_never()
            .expect("a cached secret is served without waiting")
            .expect("the cached secret is fresh");
        auth.header(&cached).expect("header-safe")
    };
    assert_eq!(hit(&entry), "Bearer sk-bench-mapped-key");

    let mut g = c.benchmark_group("secret_cache");
    g.bench_function("hit_to_header", |b| b.iter(|| hit(black_box(&entry))));
    g.finish();
}

fn benches(c: &mut Criterion) {
    // Only the first fetches run on it (the secret fetch is bounded by a tokio timer).
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    bench_tokens(c, &tokio);
    bench_secrets(c, &tokio);
}

criterion_group!(caches, benches);
criterion_main!(caches);
