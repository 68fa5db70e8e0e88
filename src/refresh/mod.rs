//! The background service that keeps every cache warm. It is the only writer of those caches;
//! the request path reads them. Today it owns upstream DNS; credential refresh joins it here.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::cache::dns::Dns;
use crate::metrics::Metrics;

/// How often upstream hosts are re-resolved (getaddrinfo gives no TTL).
const DNS_REFRESH: Duration = Duration::from_secs(30);

pub struct Refresher {
    pub dns: Arc<Dns>,
    pub fixed_hosts: Vec<Arc<str>>,
    pub metrics: Arc<Metrics>,
    pub ready: Arc<AtomicBool>,
}

#[async_trait]
impl BackgroundService for Refresher {
    async fn start_with_ready_notifier(
        &self,
        mut shutdown: ShutdownWatch,
        ready: pingora::services::ServiceReadyNotifier,
    ) {
        // Unresolvable hosts do not block start-up: they are resolved on first use instead,
        // and a 502 names them if they still fail then.
        for (host, e) in self.dns.pin(&self.fixed_hosts).await {
            log::warn!("dns: cannot resolve {host} at start-up ({e}); will retry on first use");
        }
        crate::app::set_ready(&self.ready);
        ready.notify_ready();
        let mut tick = tokio::time::interval(DNS_REFRESH);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => {
                    let failed = self.dns.refresh().await;
                    self.metrics.dns_refresh_failures.inc_by(failed as u64);
                }
            }
        }
    }
}
