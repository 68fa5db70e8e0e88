//! `[limits]` per request, first thing in `request_filter` (before any byte of the body is read
//! or anything is sent upstream): the header deadline stops, the request target and header
//! sizes are checked (414, 431) and the body-progress deadline is set on the client session.
//! At the end of each request (`logging`) a body that stalled is counted and the header deadline
//! is re-armed for the connection's next request. The connection-level half is `connections.rs`
//! (the cap) and `guarded.rs` (the header clock).

use pingora::proxy::Session;
use pingora::{Error, ErrorSource, ErrorType};

use super::{guarded, respond};
use crate::config::LimitSettings;
use crate::error::{ErrorResponse, GatewayError};
use crate::metrics::limits::{Limit, LimitMetrics};

/// Applies the per-request limits; `true` when the request was refused (the answer is written
/// and the connection will close).
pub(super) async fn refused(
    session: &mut Session,
    limits: &LimitSettings,
    metrics: &LimitMetrics,
    id: Option<&http::HeaderValue>,
) -> bool {
    guarded::header_read(session);
    // Pingora's own per-read timeout (60 s) would otherwise bound a stalled body.
    session.set_read_timeout(Some(limits.body_timeout));
    let refusal = match check(session, limits) {
        Some(r) => r,
        None => return false,
    };
    metrics.rejected(refusal);
    let e = match refusal {
        Limit::UriLength => GatewayError::UriTooLong(limits.max_uri_bytes),
        _ => GatewayError::HeaderTooLarge(limits.max_header_bytes),
    };
    // Boxed: only a refused request awaits it (inline, it would size every request's future).
    Box::pin(respond::error(session, &ErrorResponse::from(&e), id)).await;
    true
}

/// The limit the request's header breaks, if any: the target first (414), then the whole
/// header (431).
fn check(session: &Session, limits: &LimitSettings) -> Option<Limit> {
    let req = session.req_header();
    if req.raw_path().len() > limits.max_uri_bytes {
        return Some(Limit::UriLength);
    }
    (header_bytes(req) > limits.max_header_bytes).then_some(Limit::HeaderSize)
}

/// The request line and header fields as sent on HTTP/1: `METHOD SP target SP HTTP/1.1 CRLF`,
/// then `name: value CRLF` per field.
fn header_bytes(req: &pingora::http::RequestHeader) -> usize {
    const VERSION_AND_SEPARATORS: usize = " HTTP/1.1\r\n ".len();
    let line = req.method.as_str().len() + req.raw_path().len() + VERSION_AND_SEPARATORS;
    let fields: usize = req
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + ": \r\n".len())
        .sum();
    line + fields
}

/// The request is over: counts a body that stalled past its deadline and lets the next request
/// on the connection start its header clock.
pub(super) fn finished(session: &Session, e: Option<&Error>, metrics: &LimitMetrics) {
    if e.is_some_and(body_stalled) {
        metrics.rejected(Limit::BodyDeadline);
    }
    guarded::request_done(session);
}

/// Counts a body kept before routing (`body.rs`) that stalled: its 408.
pub(super) fn count_stall(resp: &ErrorResponse, metrics: &LimitMetrics) {
    if resp.status == 408 {
        metrics.rejected(Limit::BodyDeadline);
    }
}

/// A read of the client's body that ran out of `body_timeout_ms` (the proxy marks it as the
/// client's; read in `request_filter`, it carries no source).
pub(super) fn body_stalled(e: &Error) -> bool {
    *e.etype() == ErrorType::ReadTimedout && *e.esource() != ErrorSource::Upstream
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_bytes_count_the_request_line_and_every_field_as_sent() {
        let mut req = pingora::http::RequestHeader::build("POST", b"/v1/chat", None).unwrap();
        req.append_header("host", "a.example").unwrap();
        req.append_header("x-k", "12345").unwrap();
        let wire = "POST /v1/chat HTTP/1.1\r\nhost: a.example\r\nx-k: 12345\r\n";
        assert_eq!(header_bytes(&req), wire.len());
    }
}
