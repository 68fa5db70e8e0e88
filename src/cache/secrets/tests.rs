use std::sync::atomic::AtomicUsize;
use std::sync::Mutex;

use async_trait::async_trait;

use super::*;
use crate::credentials::secrets::{SecretDoc, SecretFetcher};

/// A fetcher that counts calls, answers with the current value or fails, and can be slowed.
#[derive(Debug, Default)]
struct Counting {
    calls: AtomicUsize,
    value: Mutex<Option<String>>,
    delay_ms: AtomicU64,
}

impl Counting {
    fn set(&self, v: Option<&str>) {
        *self.value.lock().unwrap() = v.map(str::to_owned);
    }
    fn calls(&self) -> usize {
        self.calls.load(Relaxed)
    }
}

#[async_trait]
impl SecretFetcher for Counting {
    async fn fetch(&self) -> Result<SecretDoc, SecretError> {
        self.calls.fetch_add(1, Relaxed);
        tokio::time::sleep(Duration::from_millis(self.delay_ms.load(Relaxed))).await;
        match self.value.lock().unwrap().clone() {
            Some(v) => Ok(SecretDoc::Text(Secret::new(v))),
            None => Err(SecretError::Unavailable {
                manager: ManagerType::HashicorpVault,
                reason: "connection refused".into(),
            }),
        }
    }
}

fn store(ttl_ms: u64, max_stale_ms: u64, prefetch: bool) -> (Arc<SecretStore>, Arc<Counting>) {
    let (s, f, _) = store_with(ttl_ms, max_stale_ms, prefetch, vec![None]);
    (s, f)
}

fn spec(key: Option<String>) -> EntrySpec {
    use sha2::{Digest, Sha256};
    EntrySpec {
        key: SecretKey(Sha256::digest(key.as_deref().unwrap_or("").as_bytes()).into()),
        slug: "openai-prod".into(),
        manager: ManagerType::HashicorpVault,
        secret_key: key,
        allowed: Some(Arc::from(vec![Arc::from("team-a")])),
    }
}

/// A store with one active entry per key of `keys`, all read through one counting fetcher.
fn store_with(
    ttl_ms: u64,
    max_stale_ms: u64,
    prefetch: bool,
    keys: Vec<Option<String>>,
) -> (Arc<SecretStore>, Arc<Counting>, Vec<Arc<Entry>>) {
    let policy = SecretPolicy {
        ttl: Duration::from_millis(ttl_ms),
        max_stale: Duration::from_millis(max_stale_ms),
        prefetch,
        fetch_timeout: Duration::from_secs(5),
    };
    let fetcher = Arc::new(Counting::default());
    let metrics = Arc::new(Metrics::new(&pingora_prometheus::prometheus::Registry::new()).unwrap());
    let store = Arc::new(SecretStore::new(policy, metrics, Timing::system()));
    let entries: Vec<Arc<Entry>> = keys
        .into_iter()
        .map(|k| {
            let f: Fetcher = fetcher.clone();
            store.entry(spec(k), || f)
        })
        .collect();
    store.activate(&entries);
    (store, fetcher, entries)
}

/// The store's only entry.
fn one(s: &SecretStore) -> Arc<Entry> {
    s.active.load()[0].clone()
}

#[tokio::test]
async fn concurrent_misses_make_one_fetch() {
    let (s, f) = store(60_000, 0, false);
    f.set(Some("v1"));
    f.delay_ms.store(100, Relaxed);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.get(&one(&s)).await.map(|c| c.value.expose().to_owned()) })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), "v1");
    }
    assert_eq!(f.calls(), 1);
}

#[tokio::test]
async fn a_failed_cold_fetch_is_not_repeated_by_every_waiter() {
    let (s, f) = store(60_000, 0, false);
    f.delay_ms.store(50, Relaxed);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.get(&one(&s)).await })
        })
        .collect();
    for t in tasks {
        let e = t.await.unwrap().unwrap_err();
        assert_eq!(&*e.slug, "openai-prod");
        assert_eq!(
            e.to_string(),
            "secret reference 'openai-prod' is unavailable (hashicorp_vault: unavailable)"
        );
    }
    assert_eq!(f.calls(), 1);
}

#[tokio::test]
async fn expired_values_are_refetched_and_stale_ones_serve_while_the_manager_fails() {
    let (s, f) = store(50, 300, false);
    f.set(Some("v1"));
    assert_eq!(s.get(&one(&s)).await.unwrap().value.expose(), "v1");
    f.set(Some("v2"));
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(
        s.get(&one(&s)).await.unwrap().value.expose(),
        "v2",
        "rotated after the TTL"
    );
    assert_eq!(f.calls(), 2);
    f.set(None);
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(
        s.get(&one(&s)).await.unwrap().value.expose(),
        "v2",
        "stale on error"
    );
    assert_eq!(f.calls(), 3);
    // Backing off: no new fetch for every request.
    assert_eq!(s.get(&one(&s)).await.unwrap().value.expose(), "v2");
    assert_eq!(f.calls(), 3);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let e = s.get(&one(&s)).await.unwrap_err();
    assert!(
        e.to_string().contains("openai-prod"),
        "past max staleness: {e}"
    );
}

#[tokio::test]
async fn a_rejected_version_is_refetched_once() {
    let (s, f) = store(60_000, 0, false);
    f.set(Some("old"));
    let c = s.get(&one(&s)).await.unwrap();
    f.set(Some("new"));
    assert_eq!(
        s.get(&one(&s)).await.unwrap().value.expose(),
        "old",
        "cached within the TTL"
    );
    s.reject(&one(&s), c.version);
    assert_eq!(s.get(&one(&s)).await.unwrap().value.expose(), "new");
    assert_eq!(s.get(&one(&s)).await.unwrap().value.expose(), "new");
    assert_eq!(f.calls(), 2);
}

#[tokio::test]
async fn the_refresher_renews_values_in_use_before_they_expire() {
    let (s, f) = store(1000, 0, false);
    f.set(Some("v1"));
    s.get(&one(&s)).await.unwrap();
    f.set(Some("v2"));
    // Not due before ~75% of the TTL.
    s.refresh_due();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(f.calls(), 1);
    tokio::time::sleep(Duration::from_millis(800)).await;
    s.get(&one(&s)).await.unwrap(); // in use
    s.refresh_due();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(f.calls(), 2);
    assert_eq!(
        s.get(&one(&s)).await.unwrap().value.expose(),
        "v2",
        "renewed before expiry"
    );
}

#[tokio::test]
async fn prefetch_fills_every_entry_and_gates_readiness() {
    let (s, f) = store(60_000, 0, true);
    assert!(!s.ready());
    f.set(Some("v"));
    s.refresh_due();
    for _ in 0..100 {
        if s.ready() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(s.ready());
    assert_eq!(f.calls(), 1);
}

#[test]
fn workspaces_are_checked_and_the_open_posture_gets_only_open_references() {
    let (s, _) = store(1000, 0, false);
    let e = one(&s);
    assert!(e.allows(Some("team-a")));
    assert!(!e.allows(Some("team-b")));
    assert!(!e.allows(None));
}

#[tokio::test]
async fn many_entries_stay_cached_without_evictions() {
    let n = 300;
    let keys = (0..n).map(|i| Some(format!("k{i}"))).collect();
    let (s, f, entries) = store_with(60_000, 0, false, keys);
    let doc: serde_json::Map<String, serde_json::Value> = (0..n)
        .map(|i| (format!("k{i}"), format!("v{i}").into()))
        .collect();
    f.set(Some(&serde_json::Value::Object(doc).to_string()));
    for round in 0..2 {
        for (id, e) in entries.iter().enumerate() {
            assert_eq!(s.get(e).await.unwrap().value.expose(), format!("v{id}"));
        }
        assert_eq!(f.calls(), n, "round {round}: every entry fetched once");
    }
}

#[tokio::test]
async fn requests_do_not_wait_behind_a_hanging_renewal() {
    let (s, f) = store(50, 60_000, false);
    f.set(Some("v1"));
    s.get(&one(&s)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(80)).await;
    // The manager now hangs for 2 s; the first request past the TTL starts the renewal...
    f.delay_ms.store(2000, Relaxed);
    let first = {
        let s = s.clone();
        tokio::spawn(async move { s.get(&one(&s)).await.map(|c| c.value.expose().to_owned()) })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    // ...and the others are served the stale value at once instead of queueing behind it.
    for _ in 0..10 {
        assert_eq!(s.get(&one(&s)).await.unwrap().value.expose(), "v1");
    }
    assert!(
        !first.is_finished(),
        "the stale answers came before the renewal ended"
    );
    f.set(Some("v2"));
    assert_eq!(first.await.unwrap().unwrap(), "v2");
    assert_eq!(f.calls(), 2);
}

#[tokio::test]
async fn a_reload_keeps_the_entries_it_still_maps_warm_and_drops_the_rest() {
    let keys = vec![Some("k1".to_owned()), Some("k2".to_owned())];
    let (s, f, entries) = store_with(60_000, 0, false, keys);
    f.set(Some(r#"{"k1":"v1","k2":"v2","k3":"v3"}"#));
    for e in &entries {
        s.get(e).await.unwrap();
    }
    assert_eq!(f.calls(), 2);
    // The new configuration maps k1 (same reference, same key) and k3.
    let fetcher: Fetcher = f.clone();
    let k1 = s.entry(spec(Some("k1".into())), || fetcher.clone());
    let k3 = s.entry(spec(Some("k3".into())), || fetcher);
    assert!(Arc::ptr_eq(&k1, &entries[0]), "the same entry, warm");
    s.activate(&[k1.clone(), k3.clone()]);
    assert_eq!(s.get(&k1).await.unwrap().value.expose(), "v1");
    assert_eq!(f.calls(), 2, "zero fetches for the kept entry");
    assert_eq!(s.get(&k3).await.unwrap().value.expose(), "v3");
    assert_eq!(f.calls(), 3);
    // k2 is gone from the store: a later runtime mapping it again starts cold.
    assert!(s.value(&entries[1]).is_none());
    assert!(!Arc::ptr_eq(
        &s.entry(spec(Some("k2".into())), || f.clone()),
        &entries[1]
    ));
}

#[tokio::test]
async fn the_age_gauge_counts_values_in_use_and_outlives_one_dropped_past_its_bound() {
    let (s, f) = store(50, 100, false);
    let age = |s: &SecretStore| {
        s.metrics
            .freshness
            .secret_age_of(ManagerType::HashicorpVault)
    };
    f.set(Some("v1"));
    s.get(&one(&s)).await.unwrap();
    s.refresh_due();
    assert_eq!(age(&s), 0.0, "fetched but not used since: not counted");
    assert_eq!(s.metrics.freshness.secret_max_age.get(), 0.15);

    tokio::time::sleep(Duration::from_millis(20)).await;
    s.get(&one(&s)).await.unwrap();
    s.refresh_due();
    let a = age(&s);
    assert!((0.015..0.15).contains(&a), "in use, within its TTL: {a}");

    // The manager fails for longer than TTL + max_stale: the value is dropped, the age grows on.
    f.set(None);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(s.get(&one(&s)).await.is_err(), "past its bound");
    assert!(s.value(&one(&s)).is_none());
    s.refresh_due();
    let a = age(&s);
    assert!(
        a > s.metrics.freshness.secret_max_age.get(),
        "past the bound: {a}"
    );
}

#[tokio::test]
async fn the_request_paths_fresh_hit_serves_only_a_fresh_unrejected_value_and_never_fetches() {
    let (s, f) = store(50, 300, false);
    f.set(Some("v1"));
    assert!(s.fresh_hit(&one(&s)).is_none(), "cold: nothing to serve");
    assert_eq!(f.calls(), 0, "and nothing fetched");
    let c = s.get(&one(&s)).await.unwrap();
    let hit = s.fresh_hit(&one(&s)).expect("fresh after the fetch");
    assert_eq!((hit.value.expose(), hit.version), ("v1", c.version));
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert!(
        s.fresh_hit(&one(&s)).is_none(),
        "past the TTL: get renews it"
    );
    assert_eq!(f.calls(), 1);
    let c = s.get(&one(&s)).await.unwrap();
    assert!(s.fresh_hit(&one(&s)).is_some());
    s.reject(&one(&s), c.version);
    assert!(
        s.fresh_hit(&one(&s)).is_none(),
        "a rejected version is not served"
    );
    assert_eq!(f.calls(), 2);
}
