//! Upstream host → address cache. Pingora's `HttpPeer::new` resolves names synchronously (and
//! panics on failure), so peers are always built from addresses taken from here.
//!
//! Reads are lock-free (`ArcSwap` of an immutable map). A host is resolved on the request path
//! only the first time it is seen (off the worker's thread, through tokio); after that the
//! refresher re-resolves it in the background and drops hosts idle for `IDLE_DROP`.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

/// A dynamic host unused this long is forgotten (hosts from the config are kept).
const IDLE_DROP: Duration = Duration::from_secs(600);
/// Upper bound on cached hosts, so caller-chosen custom hosts cannot grow it without limit.
const MAX_HOSTS: usize = 4096;

#[derive(Debug)]
struct Entry {
    addrs: ArcSwap<Vec<IpAddr>>,
    next: AtomicUsize,
    last_used: AtomicU64,
    pinned: bool,
}

#[derive(Debug)]
pub struct Dns {
    map: ArcSwap<HashMap<Arc<str>, Arc<Entry>>>,
    epoch: Instant,
}

impl Default for Dns {
    fn default() -> Self {
        Dns {
            map: ArcSwap::from_pointee(HashMap::new()),
            epoch: Instant::now(),
        }
    }
}

impl Dns {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_secs()
    }

    /// An address for `host`: an IP literal as is, a cached name round-robin over its
    /// addresses, an unseen name resolved now.
    pub async fn addr_for(&self, host: &str) -> io::Result<IpAddr> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(ip);
        }
        if let Some(e) = self.map.load().get(host) {
            e.last_used.store(self.now(), Ordering::Relaxed);
            let addrs = e.addrs.load();
            let i = e.next.fetch_add(1, Ordering::Relaxed);
            return Ok(addrs[i % addrs.len()]);
        }
        // Boxed: a request awaits it only for a host it has not seen yet.
        let addrs = Box::pin(lookup(host)).await?;
        let first = addrs[0];
        self.insert(host, addrs, false);
        Ok(first)
    }

    /// Resolves hosts known at start-up; they stay cached while keyway runs.
    pub async fn pin(&self, hosts: &[Arc<str>]) -> Vec<(Arc<str>, io::Error)> {
        let mut failed = Vec::new();
        for h in hosts {
            if h.parse::<IpAddr>().is_ok() {
                continue;
            }
            match lookup(h).await {
                Ok(addrs) => self.insert(h, addrs, true),
                Err(e) => failed.push((h.clone(), e)),
            }
        }
        failed
    }

    fn insert(&self, host: &str, addrs: Vec<IpAddr>, pinned: bool) {
        let now = self.now();
        self.map.rcu(|m| {
            let mut m = HashMap::clone(m);
            if m.len() >= MAX_HOSTS {
                // Forget the least recently used unpinned host.
                if let Some(k) = m
                    .iter()
                    .filter(|(_, e)| !e.pinned)
                    .min_by_key(|(_, e)| e.last_used.load(Ordering::Relaxed))
                    .map(|(k, _)| k.clone())
                {
                    m.remove(&k);
                }
            }
            m.insert(
                Arc::from(host),
                Arc::new(Entry {
                    addrs: ArcSwap::from_pointee(addrs.clone()),
                    next: AtomicUsize::new(0),
                    last_used: AtomicU64::new(now),
                    pinned,
                }),
            );
            m
        });
    }

    /// Re-resolves every cached host and forgets idle dynamic ones. A failed lookup keeps the
    /// old addresses (a DNS blip must not take an upstream away). Returns the failure count.
    pub async fn refresh(&self) -> usize {
        let now = self.now();
        let idle = IDLE_DROP.as_secs();
        let snapshot = self.map.load_full();
        let stale: Vec<Arc<str>> = snapshot
            .iter()
            .filter(|(_, e)| {
                !e.pinned && now.saturating_sub(e.last_used.load(Ordering::Relaxed)) > idle
            })
            .map(|(k, _)| k.clone())
            .collect();
        if !stale.is_empty() {
            self.map.rcu(|m| {
                let mut m = HashMap::clone(m);
                for k in &stale {
                    m.remove(k);
                }
                m
            });
        }
        let mut failures = 0;
        for (host, entry) in self.map.load_full().iter() {
            match lookup(host).await {
                Ok(addrs) => entry.addrs.store(Arc::new(addrs)),
                Err(e) => {
                    failures += 1;
                    log::warn!("dns: re-resolving {host} failed, keeping the last addresses: {e}");
                }
            }
        }
        failures
    }

    pub fn host_count(&self) -> usize {
        self.map.load().len()
    }
}

async fn lookup(host: &str) -> io::Result<Vec<IpAddr>> {
    let addrs: Vec<IpAddr> = tokio::net::lookup_host((host, 0))
        .await?
        .map(|a| a.ip())
        .collect();
    if addrs.is_empty() {
        return Err(io::Error::new(io::ErrorKind::NotFound, "no addresses"));
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn literals_pass_and_names_are_cached() {
        let dns = Dns::default();
        assert_eq!(
            dns.addr_for("127.0.0.1").await.unwrap(),
            IpAddr::from([127, 0, 0, 1])
        );
        assert_eq!(dns.host_count(), 0);
        let ip = dns.addr_for("localhost").await.unwrap();
        assert!(ip.is_loopback());
        assert_eq!(dns.host_count(), 1);
        assert!(dns.addr_for("no-such-host.invalid").await.is_err());
        assert_eq!(dns.host_count(), 1);
        assert_eq!(dns.refresh().await, 0);
        assert_eq!(dns.host_count(), 1);
    }
}
