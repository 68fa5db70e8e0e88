//! Token slots with controlled time: a fake source whose tokens live an hour on a `ManualClock`,
//! failing on demand. Static stability (a failing refresh keeps the old token while it lives),
//! the back-off by class, single-flight first use, and pins across a configuration reload.

use std::sync::atomic::AtomicU32;
use std::sync::Mutex;

use async_trait::async_trait;

use super::*;
use crate::cache::renewal::{Clock, FixedJitter, ManualClock};
use crate::credentials::spec::ClientSecret;

const HOUR: Duration = Duration::from_secs(3600);

#[derive(Debug)]
struct Source {
    clock: Arc<ManualClock>,
    fail: Mutex<Option<CredentialError>>,
    fetches: AtomicU32,
}

#[async_trait]
impl CredentialSource for Source {
    fn mode(&self) -> AuthMode {
        AuthMode::Entra
    }

    async fn fetch(&self) -> Result<Token, CredentialError> {
        let n = self.fetches.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(e) = self.fail.lock().unwrap().clone() {
            return Err(e);
        }
        Ok(Token {
            value: Secret::new(format!("token-{n}")),
            expires_at: self.clock.wall() + HOUR,
        })
    }
}

fn unavailable() -> CredentialError {
    CredentialError::Unavailable {
        mode: AuthMode::Entra,
        endpoint: "entra".into(),
        reason: "HTTP 503".into(),
    }
}

fn rejected() -> CredentialError {
    CredentialError::Rejected {
        mode: AuthMode::Entra,
        status: 401,
        code: "invalid_client".into(),
        aadsts: None,
    }
}

fn spec(secret: &str) -> TokenSpec {
    TokenSpec::Entra {
        tenant: "t".into(),
        client_id: "c".into(),
        secret: ClientSecret::Value(Secret::new(secret)),
        scope: "s/.default".into(),
    }
}

struct World {
    clock: Arc<ManualClock>,
    cache: TokenCache,
    source: Arc<Source>,
    metrics: Metrics,
}

fn world() -> World {
    let clock = ManualClock::new();
    let timing = Timing {
        clock: clock.clone(),
        jitter: Arc::new(FixedJitter(0.5)),
    };
    let source = Arc::new(Source {
        clock: clock.clone(),
        fail: Mutex::new(None),
        fetches: AtomicU32::new(0),
    });
    World {
        clock,
        cache: TokenCache::new(8, HOUR, timing),
        source,
        metrics: Metrics::new(&pingora_prometheus::prometheus::Registry::new()).unwrap(),
    }
}

impl World {
    fn slot(&self, secret: &str, configured: bool) -> Arc<TokenSlot> {
        let s = self.source.clone();
        self.cache.slot(&spec(secret), configured, || s).unwrap()
    }

    fn fail(&self, e: Option<CredentialError>) {
        *self.source.fail.lock().unwrap() = e;
    }

    fn fetches(&self) -> u32 {
        self.source.fetches.load(Ordering::SeqCst)
    }

    fn token(slot: &TokenSlot) -> Option<String> {
        slot.current().map(|t| t.token.expose().to_owned())
    }
}

#[tokio::test]
async fn an_outage_costs_no_request_while_the_token_lives() {
    let w = world();
    let slot = w.slot("s1", true);
    assert!(slot.claim_due(), "a configured slot is due at once");
    slot.refresh(&w.metrics).await.unwrap();
    assert_eq!(World::token(&slot).as_deref(), Some("token-1"));

    // Renewal at 45 min; the identity provider is down from then on.
    w.clock.advance(Duration::from_secs(45 * 60));
    w.fail(Some(unavailable()));
    let mut tries = 0;
    while w.clock.wall() + Duration::from_secs(1) < slot.current().unwrap().expires_at {
        if slot.claim_due() {
            tries += 1;
            assert!(slot.refresh(&w.metrics).await.is_err());
        }
        // Every request in the meantime is served the old token, without a fetch.
        let before = w.fetches();
        assert_eq!(
            slot.get(&w.metrics).await.unwrap().token.expose(),
            "token-1"
        );
        assert_eq!(w.fetches(), before);
        w.clock.advance(Duration::from_millis(500));
    }
    // Retries were spaced 1 s, 2 s, 4 s ... 60 s over the last 15 minutes: a handful, not one
    // per request or per tick.
    assert!((15..=25).contains(&tries), "{tries} retries");

    // Past expiry with the provider still down: the error, still without a fetch per request.
    w.clock.advance(Duration::from_secs(2));
    assert!(slot.current().is_none());
    let fetches = w.fetches();
    let e = slot.get(&w.metrics).await.unwrap_err();
    let e2 = slot.get(&w.metrics).await.unwrap_err();
    assert!(e.is_transient() && e2.is_transient());
    assert!(w.fetches() <= fetches + 1);

    // The provider is back: the next retry brings a token.
    w.fail(None);
    w.clock.advance(Duration::from_secs(61));
    assert!(slot.claim_due());
    slot.refresh(&w.metrics).await.unwrap();
    assert!(World::token(&slot).is_some());
}

#[tokio::test]
async fn a_rejected_credential_is_not_asked_again_for_fifteen_seconds() {
    let w = world();
    let slot = w.slot("caller-secret", false);
    assert!(
        !slot.claim_due(),
        "a header credential waits for its first request"
    );
    w.fail(Some(rejected()));
    assert!(slot.get(&w.metrics).await.is_err());
    assert_eq!(w.fetches(), 1);
    // The caller tries again and again: the refusal is answered from the slot.
    for _ in 0..5 {
        w.clock.advance(Duration::from_secs(2));
        let e = slot.get(&w.metrics).await.unwrap_err();
        assert!(matches!(e, CredentialError::Rejected { .. }));
    }
    assert_eq!(w.fetches(), 1);
    w.clock.advance(Duration::from_secs(5));
    w.fail(None);
    assert!(slot.get(&w.metrics).await.is_ok());
    assert_eq!(w.fetches(), 2);
}

#[tokio::test]
async fn concurrent_first_uses_make_one_fetch() {
    let w = Arc::new(world());
    let slot = w.slot("shared", false);
    let gets = (0..20).map(|_| {
        let (slot, w) = (slot.clone(), w.clone());
        async move {
            slot.get(&w.metrics)
                .await
                .map(|t| t.token.expose().to_owned())
        }
    });
    let got = futures_util_join(gets).await;
    assert!(got
        .iter()
        .all(|t| t.as_ref().ok().map(String::as_str) == Some("token-1")));
    assert_eq!(w.fetches(), 1);
}

async fn futures_util_join<F: std::future::Future>(fs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut out = Vec::new();
    let handles: Vec<_> = fs.collect();
    for f in handles {
        out.push(f.await);
    }
    out
}

#[tokio::test]
async fn a_reload_that_keeps_a_credential_keeps_its_token_and_drops_the_rest() {
    let w = world();
    let kept = w.slot("kept", true);
    let gone = w.slot("gone", true);
    w.cache
        .pin(&[("kept".into(), kept.clone()), ("gone".into(), gone.clone())]);
    for s in [&kept, &gone] {
        assert!(s.claim_due());
        s.refresh(&w.metrics).await.unwrap();
    }
    assert_eq!(w.fetches(), 2);
    // The new configuration: `kept` under a new name, `gone` removed, `new` added.
    let again = w.slot("kept", true);
    assert!(Arc::ptr_eq(&again, &kept), "same credential, same slot");
    let new = w.slot("new", true);
    w.cache.pin(&[
        ("renamed".into(), again.clone()),
        ("new".into(), new.clone()),
    ]);
    assert!(
        again.has_token(),
        "zero token requests for the kept credential"
    );
    assert_eq!(w.fetches(), 2);
    let names: Vec<String> = w
        .cache
        .pinned()
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    assert_eq!(names, ["new", "renamed"]);
    assert!(
        w.cache.get(&gone.key).is_none(),
        "dropped from the refresher"
    );
    assert!(w.cache.is_pinned(&new.key) && !w.cache.is_pinned(&gone.key));
    // A request that still held the dropped slot finishes with it.
    assert!(gone.current().is_some());
}

#[tokio::test]
async fn the_lifetime_stays_while_seconds_left_run_down_and_a_failed_refresh_keeps_both() {
    let w = world();
    let slot = w.slot("s-life", true);
    assert_eq!((slot.lifetime_seconds(), slot.seconds_left()), (0.0, 0.0));
    assert!(slot.claim_due());
    slot.refresh(&w.metrics).await.unwrap();
    assert_eq!(slot.lifetime_seconds(), 3600.0);
    assert_eq!(slot.seconds_left(), 3600.0);

    // 55 min on, every refresh failed: 5 min left of an hour, below the alert's 15%.
    w.clock.advance(Duration::from_secs(55 * 60));
    w.fail(Some(unavailable()));
    assert!(slot.claim_due());
    assert!(slot.refresh(&w.metrics).await.is_err());
    assert_eq!(slot.lifetime_seconds(), 3600.0, "the old token is kept");
    assert_eq!(slot.seconds_left(), 300.0);
    assert!(slot.seconds_left() < 0.15 * slot.lifetime_seconds());

    // A fresh token of its own lifetime resets both.
    w.fail(None);
    w.clock.advance(Duration::from_secs(120));
    assert!(slot.claim_due());
    slot.refresh(&w.metrics).await.unwrap();
    assert_eq!(
        (slot.lifetime_seconds(), slot.seconds_left()),
        (3600.0, 3600.0)
    );
}
