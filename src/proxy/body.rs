//! Keeping a request body before anything is sent upstream: to read its `model` for an
//! allow-list, its params for conditional routing, to apply a target's `override_params`, and
//! to send it again on each attempt of a strategy.
//!
//! Pingora 0.9 replays a body only from its retry buffer (64 KiB, fixed) and sends that buffer
//! on every attempt once the client's body is complete. So a body with a `Content-Length` is
//! read here with the buffer off until at most 64 KiB remain, then with it on: the buffer holds
//! the tail, Pingora hands it to `request_body_filter` on each attempt, and the filter sends the
//! whole kept body (or that target's version of it) instead.

use bytes::{Bytes, BytesMut};
use pingora::proxy::Session;
use serde_json::{Map, Value};

use crate::error::{ErrorResponse, GatewayError};

/// What Pingora's retry buffer holds (`BODY_BUF_LIMIT` in pingora-core): a body up to this size
/// is replayed by Pingora itself.
pub(super) const RETRY_BUFFER: usize = 64 * 1024;

/// The request's `Content-Length`; `None` for a chunked body.
pub(super) fn content_length(session: &Session) -> Option<usize> {
    session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
}

/// Reads and keeps the whole body when it is at most `limit` bytes. `Ok(None)`: the body is
/// larger (or chunked and `must` is false) and was left unread, to be streamed to the first
/// target as usual. `must`: the caller cannot go on without the body (a chunked body over the
/// retry buffer is then refused, since it cannot be forwarded once read).
pub(super) async fn keep(
    session: &mut Session,
    limit: usize,
    must: bool,
) -> Result<Option<Bytes>, ErrorResponse> {
    let fail = |e: GatewayError| ErrorResponse::from(&e);
    if session.as_mut().is_body_empty() {
        return Ok(Some(Bytes::new()));
    }
    let length = content_length(session);
    let mut remaining = match length {
        Some(n) if n > limit => {
            return match must {
                true => Err(fail(GatewayError::BodyTooLarge)),
                false => Ok(None),
            }
        }
        Some(n) => n,
        None if !must => return Ok(None),
        // Chunked: only what fits the retry buffer can be both read here and forwarded.
        None => RETRY_BUFFER,
    };
    let mut body = BytesMut::with_capacity(length.unwrap_or(4096));
    let mut buffering = false;
    loop {
        if !buffering && remaining <= RETRY_BUFFER {
            session.as_mut().enable_retry_buffering();
            buffering = true;
        }
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                remaining = remaining.saturating_sub(chunk.len());
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) if super::limits::body_stalled(&e) => {
                return Err(fail(GatewayError::BodyTimedOut))
            }
            Err(_) => return Err(fail(GatewayError::BodyUnreadable)),
        }
        if session.as_ref().retry_buffer_truncated() {
            return Err(fail(GatewayError::BodyTooLarge));
        }
    }
    if !buffering || session.as_ref().get_retry_buffer().is_none() {
        // Nothing for Pingora to hand to the filter: the body could not be sent.
        return Err(fail(GatewayError::BodyUnreadable));
    }
    Ok(Some(body.freeze()))
}

/// `body` with `overrides` merged into its top level; the body as it is when it is not a JSON
/// object.
pub(super) fn with_overrides(body: &Bytes, overrides: &Map<String, Value>) -> Bytes {
    match serde_json::from_slice::<Map<String, Value>>(body) {
        Ok(mut m) => {
            for (k, v) in overrides {
                m.insert(k.clone(), v.clone());
            }
            match serde_json::to_vec(&m) {
                Ok(v) => Bytes::from(v),
                Err(_) => body.clone(),
            }
        }
        Err(_) => body.clone(),
    }
}
