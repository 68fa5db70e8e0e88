//! The proxy listener's client connections, between Pingora's accept loop and its HTTP proxy:
//! the cap on how many are open at once (`keyway_client_connections`), the wait between the
//! requests of a kept-alive HTTP/1 connection, and the [`Guarded`] stream that carries the
//! request-header deadline.
//!
//! Pingora 0.9.1 has no hook at accept time that sees a connection end (its `ConnectionFilter`
//! is behind a cargo feature and answers only yes or no per address), so [`Counted`] wraps the
//! proxy app itself: it is the `ServerApp` the listening service runs and holds a slot of the
//! cap for the whole life of the connection (every request on it). A connection over the cap is
//! dropped before a byte of it is read: the client sees the connection closed.
//!
//! An HTTP/1 connection is served here request by request, as Pingora's own `ServerApp` does
//! (same keep-alive defaults, same per-connection settings carried from one request to the
//! next), with one difference: before each request (the first too) the connection waits for
//! it here, holding only the stream, and not inside the proxy's request future, which is
//! allocated per request and sized for the whole proxy path. That is most of what an idle
//! keep-alive connection cost (README, Limits). HTTP/2 (ALPN or h2c) goes to Pingora's loop
//! unchanged.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use pingora_prometheus::prometheus::{IntCounter, IntGauge};

use super::guarded::Guarded;
use crate::config::LimitSettings;
use crate::metrics::limits::{Limit, LimitMetrics};

/// Pingora's keep-alive timeout for a client connection between requests (its `ServerApp`
/// sets 60 s on every new HTTP/1 connection).
const KEEPALIVE: Duration = Duration::from_secs(60);

/// The proxy app `A` behind the connection cap and the header deadline.
pub struct Counted<A> {
    inner: Arc<A>,
    open: AtomicUsize,
    cap: usize,
    header_timeout: Duration,
    gauge: IntGauge,
    refused: IntCounter,
    header_deadline: IntCounter,
}

impl<A> Counted<A> {
    pub fn new(inner: A, limits: &LimitSettings, metrics: &LimitMetrics) -> Counted<A> {
        Counted {
            inner: Arc::new(inner),
            open: AtomicUsize::new(0),
            cap: limits.max_client_connections,
            header_timeout: limits.header_timeout,
            gauge: metrics.client_connections.clone(),
            refused: metrics.counter(Limit::Connections),
            header_deadline: metrics.counter(Limit::HeaderDeadline),
        }
    }

    /// A slot of the cap, or `None` when every one is taken.
    fn slot(&self) -> Option<Slot<'_, A>> {
        let taken = self.open.fetch_add(1, Ordering::AcqRel);
        if taken >= self.cap {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        self.gauge.inc();
        Some(Slot(self))
    }
}

/// One open client connection: given back when the connection ends, however it ends.
struct Slot<'a, A>(&'a Counted<A>);

impl<A> Drop for Slot<'_, A> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.gauge.dec();
    }
}

impl<A: HttpServerApp + Send + Sync + 'static> Counted<A> {
    /// Pingora's loop for what keyway does not serve itself: HTTP/2, h2c and custom protocols.
    async fn delegate(self: &Arc<Self>, stream: Stream, shutdown: &ShutdownWatch) {
        let mut next = ServerApp::process_new(&self.inner, stream, shutdown).await;
        while let Some(stream) = next {
            next = ServerApp::process_new(&self.inner, stream, shutdown).await;
        }
    }

    /// Every request of an HTTP/1 connection, waiting for each next one outside the proxy.
    /// The wait reads the socket, so it relies on nothing of the next request being held by
    /// Pingora already: true while keyway leaves Pingora's HTTP/1 pipelining off (a request
    /// with bytes read past its end is then not reused at all).
    async fn serve_h1(self: &Arc<Self>, mut stream: Box<Guarded>, shutdown: &ShutdownWatch) {
        let mut carried: Option<Option<HttpPersistentSettings>> = None;
        loop {
            // A connection accepted before a shutdown began still gets its first request
            // served, as in Pingora; an idle kept-alive one is closed.
            let watch = carried.is_some().then(|| shutdown.clone());
            if !stream.next_request(KEEPALIVE, watch).await {
                return;
            }
            let mut session = ServerSession::new_http1(stream);
            match carried.take() {
                // Pingora's defaults for a new connection.
                None => {
                    let keepalive = (!*shutdown.borrow()).then_some(KEEPALIVE.as_secs());
                    session.set_keepalive(keepalive);
                    let limit = self
                        .inner
                        .server_options()
                        .and_then(|o| o.keepalive_request_limit);
                    session.set_keepalive_reuses_remaining(limit);
                }
                Some(Some(settings)) => settings.apply_to_session(&mut session),
                Some(None) => {}
            }
            let Some(reused) = self.inner.process_new_http(session, shutdown).await else {
                return;
            };
            let (next, settings) = reused.consume();
            stream = match next.into_any().downcast::<Guarded>() {
                Ok(g) => g,
                // Not the stream handed in (no Pingora path does this): no more requests.
                Err(_) => return,
            };
            carried = Some(settings);
        }
    }
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> ServerApp for Counted<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let Some(_slot) = self.slot() else {
            self.refused.inc();
            // Dropping the stream closes the connection; nothing of it was read.
            return None;
        };
        let guarded = Box::new(Guarded::new(
            stream,
            self.header_timeout,
            self.header_deadline.clone(),
        ));
        let pingora_serves = guarded.is_h2()
            || self
                .inner
                .server_options()
                .is_some_and(|o| o.h2c || o.force_custom);
        match pingora_serves {
            true => self.delegate(guarded, shutdown).await,
            false => self.serve_h1(guarded, shutdown).await,
        }
        None
    }

    async fn cleanup(&self) {
        self.inner.http_cleanup().await
    }
}
