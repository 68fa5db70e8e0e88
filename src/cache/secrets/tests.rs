use std::sync::atomic::AtomicUsize;
use std::sync::Mutex;

use super::*;
use crate::config::secrets::{SecretReference, SourceConfig};
use crate::credentials::secrets::vault::{VaultAuth, VaultSettings};
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
    store_with(
        ttl_ms,
        max_stale_ms,
        prefetch,
        vec![SecretUse {
            reference: 0,
            key: None,
        }],
    )
}

fn store_with(
    ttl_ms: u64,
    max_stale_ms: u64,
    prefetch: bool,
    uses: Vec<SecretUse>,
) -> (Arc<SecretStore>, Arc<Counting>) {
    let reference = SecretReference {
        name: "r".into(),
        slug: "openai-prod".into(),
        manager: ManagerType::HashicorpVault,
        source: SourceConfig::Vault(VaultSettings {
            addr: url::Url::parse("http://127.0.0.1:1").unwrap(),
            auth: VaultAuth::Token(Secret::new("t")),
            namespace: None,
            mount: "secret".into(),
            kv_version: 2,
        }),
        path: "p".into(),
        key: None,
        allowed_workspaces: Some(Arc::from(vec![Arc::from("team-a")])),
        shown: serde_json::Value::Null,
    };
    let settings = SecretsSettings {
        ttl: Duration::from_millis(ttl_ms),
        max_stale: Duration::from_millis(max_stale_ms),
        prefetch,
        fetch_timeout: Duration::from_secs(5),
        references: vec![reference],
    };
    let fetcher = Arc::new(Counting::default());
    let metrics = Arc::new(
        Metrics::new(
            &pingora_prometheus::prometheus::Registry::new(),
            &["none".into()],
        )
        .unwrap(),
    );
    let f: Fetcher = fetcher.clone();
    (
        Arc::new(SecretStore::new(&settings, uses, &[Some(f)], metrics)),
        fetcher,
    )
}

#[tokio::test]
async fn concurrent_misses_make_one_fetch() {
    let (s, f) = store(60_000, 0, false);
    f.set(Some("v1"));
    f.delay_ms.store(100, Relaxed);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.get(0).await.map(|c| c.value.expose().to_owned()) })
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
            tokio::spawn(async move { s.get(0).await })
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
    assert_eq!(s.get(0).await.unwrap().value.expose(), "v1");
    f.set(Some("v2"));
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(
        s.get(0).await.unwrap().value.expose(),
        "v2",
        "rotated after the TTL"
    );
    assert_eq!(f.calls(), 2);
    f.set(None);
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(
        s.get(0).await.unwrap().value.expose(),
        "v2",
        "stale on error"
    );
    assert_eq!(f.calls(), 3);
    // Backing off: no new fetch for every request.
    assert_eq!(s.get(0).await.unwrap().value.expose(), "v2");
    assert_eq!(f.calls(), 3);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let e = s.get(0).await.unwrap_err();
    assert!(
        e.to_string().contains("openai-prod"),
        "past max staleness: {e}"
    );
}

#[tokio::test]
async fn a_rejected_version_is_refetched_once() {
    let (s, f) = store(60_000, 0, false);
    f.set(Some("old"));
    let c = s.get(0).await.unwrap();
    f.set(Some("new"));
    assert_eq!(
        s.get(0).await.unwrap().value.expose(),
        "old",
        "cached within the TTL"
    );
    s.reject(0, c.version);
    assert_eq!(s.get(0).await.unwrap().value.expose(), "new");
    assert_eq!(s.get(0).await.unwrap().value.expose(), "new");
    assert_eq!(f.calls(), 2);
}

#[tokio::test]
async fn the_refresher_renews_values_in_use_before_they_expire() {
    let (s, f) = store(1000, 0, false);
    f.set(Some("v1"));
    s.get(0).await.unwrap();
    f.set(Some("v2"));
    // Not due before ~75% of the TTL.
    s.refresh_due();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(f.calls(), 1);
    tokio::time::sleep(Duration::from_millis(800)).await;
    s.get(0).await.unwrap(); // in use
    s.refresh_due();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(f.calls(), 2);
    assert_eq!(
        s.get(0).await.unwrap().value.expose(),
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
    assert!(s.allows(0, Some("team-a")));
    assert!(!s.allows(0, Some("team-b")));
    assert!(!s.allows(0, None));
}

#[tokio::test]
async fn many_entries_stay_cached_without_evictions() {
    let n = 300;
    let uses = (0..n)
        .map(|i| SecretUse {
            reference: 0,
            key: Some(format!("k{i}")),
        })
        .collect();
    let (s, f) = store_with(60_000, 0, false, uses);
    let doc: serde_json::Map<String, serde_json::Value> = (0..n)
        .map(|i| (format!("k{i}"), format!("v{i}").into()))
        .collect();
    f.set(Some(&serde_json::Value::Object(doc).to_string()));
    for round in 0..2 {
        for id in 0..n {
            assert_eq!(s.get(id).await.unwrap().value.expose(), format!("v{id}"));
        }
        assert_eq!(f.calls(), n, "round {round}: every entry fetched once");
    }
}

#[tokio::test]
async fn requests_do_not_wait_behind_a_hanging_renewal() {
    let (s, f) = store(50, 60_000, false);
    f.set(Some("v1"));
    s.get(0).await.unwrap();
    tokio::time::sleep(Duration::from_millis(80)).await;
    // The manager now hangs for 2 s; the first request past the TTL starts the renewal...
    f.delay_ms.store(2000, Relaxed);
    let first = {
        let s = s.clone();
        tokio::spawn(async move { s.get(0).await.map(|c| c.value.expose().to_owned()) })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    // ...and the others are served the stale value at once instead of queueing behind it.
    for _ in 0..10 {
        assert_eq!(s.get(0).await.unwrap().value.expose(), "v1");
    }
    assert!(
        !first.is_finished(),
        "the stale answers came before the renewal ended"
    );
    f.set(Some("v2"));
    assert_eq!(first.await.unwrap().unwrap(), "v2");
    assert_eq!(f.calls(), 2);
}
