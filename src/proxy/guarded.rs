//! The client stream of an HTTP/1 connection as Pingora reads it, with the total deadline for
//! a request header that Pingora lacks (it bounds each read only, by its 60 s keep-alive
//! timeout, so a header sent a byte at a time never ends), and the wait for the first byte of
//! the next request on a kept-alive connection (`connections.rs`).
//!
//! The clock starts at the first byte of each request and, when it runs out before the proxy
//! has parsed the header, fails the read Pingora is waiting on: Pingora closes the connection
//! (no answer; it has no request to answer) and `keyway_limit_rejections_total
//! {limit="header_deadline"}` counts it. The proxy's `request_filter` stops the clock
//! ([`header_read`]) and its `logging` re-arms it for the next request ([`request_done`]).
//! HTTP/2 (ALPN or the h2c preface) is left alone: its streams share the connection and are
//! bounded by Pingora's HTTP/2 settings.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use pingora::proxy::Session;
use pingora::server::ShutdownWatch;
use pingora_prometheus::prometheus::IntCounter;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// A client stream with the header deadline. Pingora owns it while it serves a request; the
/// proxy's hooks reach it through the session's stream.
#[derive(Debug)]
pub struct Guarded {
    inner: Stream,
    timeout: Duration,
    expired: IntCounter,
    /// HTTP/2: no header deadline.
    h2: bool,
    /// Set by the proxy while no request header is being awaited (between `request_filter`
    /// and `logging`).
    past_header: AtomicBool,
    /// Headers the proxy has parsed on this connection: a running clock belongs to the request
    /// whose number it was started under.
    headers: AtomicU32,
    clock: Option<(Pin<Box<Sleep>>, u32)>,
    first_read: bool,
    /// The first byte of the next request, read while the connection waited for it.
    stash: Option<u8>,
}

const H2_PREFACE_START: &[u8] = b"PRI * HTTP/2";

impl Guarded {
    pub(super) fn new(inner: Stream, timeout: Duration, expired: IntCounter) -> Guarded {
        let h2 = matches!(inner.selected_alpn_proto(), Some(ALPN::H2));
        Guarded {
            inner,
            timeout,
            expired,
            h2,
            past_header: AtomicBool::new(false),
            headers: AtomicU32::new(0),
            clock: None,
            first_read: true,
            stash: None,
        }
    }

    pub(super) fn is_h2(&self) -> bool {
        self.h2
    }

    /// Waits, at most `idle`, for the first byte of the next request; `false` when the client
    /// closed, the wait ran out or (with a `shutdown` watch) the server is shutting down: the
    /// connection is then closed.
    pub(super) async fn next_request(
        &mut self,
        idle: Duration,
        shutdown: Option<ShutdownWatch>,
    ) -> bool {
        let stopping = async move {
            match shutdown {
                Some(mut s) if !*s.borrow() => {
                    let _ = s.changed().await;
                }
                Some(_) => {}
                None => std::future::pending().await,
            }
        };
        let mut byte = [0u8; 1];
        tokio::select! {
            read = tokio::time::timeout(idle, self.inner.read(&mut byte)) => match read {
                Ok(Ok(1)) => {
                    self.stash = Some(byte[0]);
                    true
                }
                _ => false,
            },
            _ = stopping => false,
        }
    }

    /// The clock is for the header being read now.
    fn clock_is_current(&self) -> bool {
        !self.past_header.load(Ordering::Acquire)
            && self
                .clock
                .as_ref()
                .is_some_and(|(_, n)| *n == self.headers.load(Ordering::Acquire))
    }

    /// After bytes came in: starts the clock at the first byte of a header.
    fn after_read(&mut self, got: &[u8]) {
        if got.is_empty() || self.h2 {
            return;
        }
        if std::mem::take(&mut self.first_read) && got.starts_with(H2_PREFACE_START) {
            self.h2 = true;
            return;
        }
        if self.clock.is_none() && !self.past_header.load(Ordering::Acquire) {
            let n = self.headers.load(Ordering::Acquire);
            self.clock = Some((Box::pin(tokio::time::sleep(self.timeout)), n));
        }
    }
}

/// The request's header has been parsed: its clock stops.
pub(super) fn header_read(session: &Session) {
    if let Some(g) = guarded(session) {
        g.headers.fetch_add(1, Ordering::AcqRel);
        g.past_header.store(true, Ordering::Release);
    }
}

/// The request is over: the next byte on the connection starts the next header's clock.
pub(super) fn request_done(session: &Session) {
    if let Some(g) = guarded(session) {
        g.past_header.store(false, Ordering::Release);
    }
}

fn guarded(session: &Session) -> Option<&Guarded> {
    session
        .as_downstream()
        .stream()?
        .as_any()
        .downcast_ref::<Guarded>()
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(b) = this.stash.take() {
            if buf.remaining() > 0 {
                buf.put_slice(&[b]);
                this.after_read(&[b]);
                return Poll::Ready(Ok(()));
            }
            this.stash = Some(b);
        }
        if this.clock_is_current() {
            if let Some((sleep, _)) = this.clock.as_mut() {
                if sleep.as_mut().poll(cx).is_ready() {
                    this.clock = None;
                    this.expired.inc();
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "request header deadline (limits.header_timeout_ms)",
                    )));
                }
            }
        } else {
            this.clock = None;
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            this.after_read(&buf.filled()[before..]);
        }
        polled
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for Guarded {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for Guarded {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Guarded {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Guarded {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Guarded {
    fn get_proxy_digest(&self) -> Option<Arc<pingora::protocols::raw_connect::ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: pingora::protocols::raw_connect::ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for Guarded {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for Guarded {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}
