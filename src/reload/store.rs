//! Following the store: connect (with back-off), then read its version every poll interval and,
//! on PostgreSQL, `LISTEN` on `keyway_changes` so a change from another instance is live here
//! in milliseconds; the version check is the backstop for a notification lost while the
//! listening connection was down. When the store is unreachable, the running snapshot keeps
//! serving, every failed check is counted, and checks back off; the first check that works
//! catches up.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;

use super::Reloader;
use crate::cache::renewal::schedule::retry_delay;
use crate::cache::renewal::FailureClass;
use crate::store::{shown_url, Engine, Store, StoreSettings};

/// The PostgreSQL channel writers notify.
pub const CHANNEL: &str = "keyway_changes";
/// The longest wait between checks of an unreachable store.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// The longest a connection attempt may take.
const CONNECT_WITHIN: Duration = Duration::from_secs(10);

/// Failures in a row, and the wait before the next attempt.
#[derive(Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    fn failed(&mut self, jitter01: f64) -> Duration {
        self.failures += 1;
        retry_delay(FailureClass::Transient, self.failures, jitter01).min(MAX_BACKOFF)
    }

    /// Resets; whether the store had been failing.
    fn succeeded(&mut self) -> bool {
        std::mem::take(&mut self.failures) > 0
    }
}

impl Reloader {
    /// Follows the store for the life of the process (returns at once without one).
    pub async fn follow_store(&self) {
        let Some(settings) = self.fixed.store.clone() else {
            return;
        };
        let store = self.connect(&settings).await;
        let mut backoff = Backoff::default();
        let mut listener = None;
        loop {
            let wait = match store.version().await {
                Ok(v) => {
                    if backoff.succeeded() {
                        log::info!("store: reachable again at version {v}");
                    }
                    self.warm.metrics.control.checked_now();
                    if self.version() != Some(v) {
                        self.reload_store(v, "store changed").await;
                    }
                    if listener.is_none() && store.engine() == Engine::Postgres {
                        listener = listen(store.url()).await;
                    }
                    settings.poll
                }
                Err(e) => {
                    self.warm.metrics.store_error("poll");
                    if backoff.failures == 0 {
                        log::warn!(
                            "store: unreachable, serving the snapshot this instance has: {e}"
                        );
                    }
                    if self.version().is_none() {
                        self.warm
                            .set_store_problem(Some(format!("cannot read it: {e}")));
                    }
                    backoff.failed(self.warm.timing.jitter.sample())
                }
            };
            match listener.as_mut() {
                None => tokio::time::sleep(wait).await,
                Some(l) => {
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        n = l.recv() => {
                            if let Err(e) = n {
                                log::debug!("store: notification listener lost ({e}); polling until it is back");
                                listener = None;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Opens the store, retrying with back-off until it works. The first snapshot is loaded
    /// right after, by the first version check.
    async fn connect(&self, settings: &StoreSettings) -> Arc<Store> {
        let mut backoff = Backoff::default();
        let shown = shown_url(&settings.url);
        loop {
            let opened = tokio::time::timeout(CONNECT_WITHIN, Store::open(settings)).await;
            let error = match opened {
                Ok(Ok(s)) => {
                    log::info!("store: connected to {shown}");
                    let s = Arc::new(s);
                    self.store.store(Some(s.clone()));
                    return s;
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer within {CONNECT_WITHIN:?}"),
            };
            self.warm.metrics.store_error("connect");
            self.warm
                .set_store_problem(Some(format!("cannot connect to {shown}: {error}")));
            let wait = backoff.failed(self.warm.timing.jitter.sample());
            log::warn!("store: cannot connect to {shown} ({error}); next attempt in {wait:?}");
            tokio::time::sleep(wait).await;
        }
    }
}

/// A listener on the change channel; `None` (polling covers) when it cannot be made.
async fn listen(url: &str) -> Option<PgListener> {
    let made = async {
        let mut l = PgListener::connect(url).await?;
        l.listen(CHANNEL).await?;
        Ok::<_, sqlx::Error>(l)
    };
    match tokio::time::timeout(CONNECT_WITHIN, made).await {
        Ok(Ok(l)) => Some(l),
        Ok(Err(e)) => {
            log::debug!("store: cannot listen for changes ({e}); polling");
            None
        }
        Err(_) => None,
    }
}
