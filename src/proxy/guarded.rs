//! The client stream of an HTTP/1 connection as Pingora reads it, with the total deadline for
//! a request header that Pingora lacks (it bounds each read only, by its 60 s keep-alive
//! timeout, so a header sent a byte at a time never ends), and the wait for the next request
//! on a kept-alive connection (`connections.rs`).
//!
//! The wait reads what has come of the next request (the one read the parser would have made)
//! into a buffer on the stack of that poll, keeps those bytes and hands them to the parser
//! first: an idle connection holds no read buffer and a request costs no extra system call.
//!
//! The clock starts at the first byte of each request and, when it runs out before the proxy
//! has parsed the header, fails the read Pingora is waiting on: Pingora closes the connection
//! (no answer; it has no request to answer) and `keyway_limit_rejections_total
//! {limit="header_deadline"}` counts it. Its timer is set at the first read of an unfinished
//! header that has to wait (microseconds after the first byte), so a header that comes whole
//! costs none. The proxy's `request_filter` stops the clock ([`header_read`]) and its
//! `logging` re-arms it for the next request ([`request_done`]). HTTP/2 (ALPN or the h2c
//! preface) is left alone: its streams share the connection and are bounded by Pingora's
//! HTTP/2 settings.

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
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
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
    /// The header number the clock runs for, from the header's first byte.
    armed: Option<u32>,
    /// The clock's timer is set for the armed header. It is set only when a read of an
    /// unfinished header has to wait: a header that comes whole in one read costs no timer.
    timer_set: bool,
    /// The connection's one timer, allocated at its first wait: the keep-alive wait between
    /// requests and the header clock take turns with it.
    sleep: Option<Pin<Box<Sleep>>>,
    first_read: bool,
    /// What the wait for the next request read, handed to the parser before the socket is read
    /// again (empty, and unallocated, otherwise).
    stash: Vec<u8>,
    stash_at: usize,
}

/// Most bytes the wait for a request reads at once: a typical request header whole. The buffer
/// is on the stack of each poll only, so an idle connection holds none of it.
const WAIT_READ: usize = 4096;

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
            armed: None,
            timer_set: false,
            sleep: None,
            first_read: true,
            stash: Vec::new(),
            stash_at: 0,
        }
    }

    pub(super) fn is_h2(&self) -> bool {
        self.h2
    }

    /// Waits, at most `idle`, for the next request and reads what has come of it (the one read
    /// the parser would have made; there is no extra system call); `false` when the client
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
        let mut stopping = std::pin::pin!(stopping);
        // The header clock gives the timer up to the wait.
        self.timer_set = false;
        let mut waiting = false;
        std::future::poll_fn(|cx| {
            if let Poll::Ready(got) = self.poll_stash(cx) {
                return Poll::Ready(got);
            }
            if stopping.as_mut().poll(cx).is_ready() {
                return Poll::Ready(false);
            }
            let deadline = match std::mem::replace(&mut waiting, true) {
                false => Some(tokio::time::Instant::now() + idle),
                true => None,
            };
            match self.timer(deadline).poll(cx) {
                Poll::Ready(()) => Poll::Ready(false),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    /// Reads what has come into the stash: `Ready(false)` at the end of the stream or on an
    /// error (nothing of a request was read, so the connection just closes).
    fn poll_stash(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        let mut space = [std::mem::MaybeUninit::<u8>::uninit(); WAIT_READ];
        let mut buf = ReadBuf::uninit(&mut space);
        match Pin::new(&mut self.inner).poll_read(cx, &mut buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                self.stash = buf.filled().to_vec();
                self.stash_at = 0;
                Poll::Ready(true)
            }
            Poll::Ready(_) => Poll::Ready(false),
        }
    }

    /// The connection's timer, first set to (or moved to) `deadline` when one is given.
    fn timer(&mut self, deadline: Option<tokio::time::Instant>) -> Pin<&mut Sleep> {
        let timeout = self.timeout;
        let sleep = self.sleep.get_or_insert_with(|| {
            let d = deadline.unwrap_or_else(|| tokio::time::Instant::now() + timeout);
            Box::pin(tokio::time::sleep_until(d))
        });
        if let Some(d) = deadline {
            if sleep.deadline() != d {
                sleep.as_mut().reset(d);
            }
        }
        sleep.as_mut()
    }

    fn header_read(&self) {
        self.headers.fetch_add(1, Ordering::AcqRel);
        self.past_header.store(true, Ordering::Release);
    }

    fn request_done(&self) {
        self.past_header.store(false, Ordering::Release);
    }

    /// The clock is for the header being read now.
    fn clock_is_current(&self) -> bool {
        !self.past_header.load(Ordering::Acquire)
            && self.armed == Some(self.headers.load(Ordering::Acquire))
    }

    /// After bytes came in: starts the clock at the first byte of a header (its timer is set at
    /// the first read that has to wait, microseconds later).
    fn after_read(&mut self, got: &[u8]) {
        if got.is_empty() || self.h2 {
            return;
        }
        if std::mem::take(&mut self.first_read) && got.starts_with(H2_PREFACE_START) {
            self.h2 = true;
            return;
        }
        if self.armed.is_none() && !self.past_header.load(Ordering::Acquire) {
            self.armed = Some(self.headers.load(Ordering::Acquire));
            self.timer_set = false;
        }
    }
}

/// The request's header has been parsed: its clock stops.
pub(super) fn header_read(session: &Session) {
    if let Some(g) = guarded(session) {
        g.header_read();
    }
}

/// The request is over: the next byte on the connection starts the next header's clock.
pub(super) fn request_done(session: &Session) {
    if let Some(g) = guarded(session) {
        g.request_done();
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
        if this.stash_at < this.stash.len() && buf.remaining() > 0 {
            let rest = &this.stash[this.stash_at..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.stash_at += n;
            let stash = std::mem::take(&mut this.stash);
            this.after_read(&stash[this.stash_at - n..this.stash_at]);
            if this.stash_at < stash.len() {
                this.stash = stash;
            }
            return Poll::Ready(Ok(()));
        }
        if !this.clock_is_current() {
            this.armed = None;
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        match polled {
            Poll::Ready(Ok(())) => this.after_read(&buf.filled()[before..]),
            Poll::Pending if this.clock_is_current() => {
                let deadline = match std::mem::replace(&mut this.timer_set, true) {
                    false => Some(tokio::time::Instant::now() + this.timeout),
                    true => None,
                };
                if this.timer(deadline).poll(cx).is_ready() {
                    this.armed = None;
                    this.timer_set = false;
                    this.expired.inc();
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "request header deadline (limits.header_timeout_ms)",
                    )));
                }
            }
            _ => {}
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

#[cfg(test)]
#[path = "guarded_tests.rs"]
mod tests;
