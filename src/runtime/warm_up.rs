//! Fetching what a runtime lacks before it goes live: configured tokens without one, prefetched
//! secrets without a value, JWT key sets never loaded, configured hosts never resolved. Bounded:
//! whatever is still missing after the wait is fetched by the refresher afterwards, and requests
//! that need it meanwhile answer as at start-up (503 for a secret, 502 for a token).

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use super::{JwksWatch, Runtime, Warm};
use crate::cache::secrets::Entry;
use crate::cache::tokens::TokenSlot;

/// The outcome of a warm-up: what was still missing when it ended.
#[derive(Debug, Default)]
pub struct WarmUp {
    pub missing: Vec<String>,
}

impl Runtime {
    /// What this runtime still lacks, one line each (the `/readyz` body).
    pub fn missing(&self, warm: &Warm) -> Vec<String> {
        let mut missing: Vec<String> = self
            .pinned
            .iter()
            .filter(|(_, s)| !s.has_token())
            .map(|(name, s)| format!("credential '{name}' (no {} token yet)", s.mode))
            .collect();
        if self.secret_policy.prefetch {
            let mut slugs: Vec<&Arc<str>> = self
                .secrets
                .iter()
                .filter(|e| warm.secrets.value(e).is_none())
                .map(|e| e.slug())
                .collect();
            slugs.sort();
            slugs.dedup();
            missing.extend(
                slugs
                    .into_iter()
                    .map(|slug| format!("secret reference '{slug}' (no value yet)")),
            );
        }
        missing.extend(self.jwks.iter().filter(|j| !j.cache.is_loaded()).map(|j| {
            format!(
                "JWT validator {} (no keys yet from its {})",
                j.name,
                j.cache.source_label()
            )
        }));
        if self.awaits_store {
            missing.push(match warm.store_problem() {
                Some(why) => format!("the store's objects (not loaded: {why})"),
                None => "the store's objects (not loaded yet)".to_owned(),
            });
        }
        missing
    }

    /// Fetches what is missing and new (not in `previous`, whose missing items the refresher is
    /// already after), concurrently, waiting at most `within`.
    pub async fn warm_up(
        &self,
        warm: &Arc<Warm>,
        within: Duration,
        previous: Option<&Runtime>,
    ) -> WarmUp {
        let had_slot = |s: &Arc<TokenSlot>| {
            previous.is_some_and(|p| p.pinned.iter().any(|(_, x)| Arc::ptr_eq(x, s)))
        };
        let had_entry =
            |e: &Arc<Entry>| previous.is_some_and(|p| p.secrets.iter().any(|x| Arc::ptr_eq(x, e)));
        let had_jwks = |j: &JwksWatch| {
            previous.is_some_and(|p| p.jwks.iter().any(|x| Arc::ptr_eq(&x.cache, &j.cache)))
        };
        let mut tasks = JoinSet::new();
        for (_, slot) in self
            .pinned
            .iter()
            .filter(|(_, s)| !s.has_token() && !had_slot(s))
        {
            let (slot, warm) = (slot.clone(), warm.clone());
            tasks.spawn(async move {
                let _ = slot.get(&warm.metrics).await;
            });
        }
        if self.secret_policy.prefetch {
            for e in self
                .secrets
                .iter()
                .filter(|e| warm.secrets.value(e).is_none() && !had_entry(e))
            {
                let (e, warm) = (e.clone(), warm.clone());
                tasks.spawn(async move {
                    let _ = warm.secrets.get(&e).await;
                });
            }
        }
        for j in self
            .jwks
            .iter()
            .filter(|j| !j.cache.is_loaded() && !had_jwks(j))
        {
            let j = j.clone();
            tasks.spawn(async move {
                if j.cache.refresh().await.is_ok() {
                    j.cache.renewal().succeeded_in(j.every);
                }
            });
        }
        let (dns, hosts) = (warm.dns.clone(), self.fixed_hosts.clone());
        tasks.spawn(async move {
            for (host, e) in dns.pin(&hosts).await {
                log::warn!("dns: cannot resolve {host} ({e}); will retry on first use");
            }
        });
        let all = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(within, all).await.is_err() {
            log::warn!(
                "warm-up did not finish within {} s; the rest is fetched in the background",
                within.as_secs()
            );
        }
        WarmUp {
            missing: self.missing(warm),
        }
    }
}
