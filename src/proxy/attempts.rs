//! A request with a strategy (fallback, load balancing, conditions, retries): the walk over its
//! targets, one Pingora attempt per step. Each attempt gets its target's plan, credential and
//! body; the decision after an attempt is taken before anything reaches the client, so a
//! stream that has begun is never retried.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorType};
use serde_json::Value;

use crate::routing::strategy::{retry_after, Env, LeafId, Next, Outcome, Tree, Walk};

/// The error an attempt ends with when the walk goes on: Pingora then calls `upstream_peer`
/// again.
pub(super) const NEXT_ATTEMPT: ErrorType = ErrorType::Custom("keyway: next attempt");

const LAST_USED: HeaderName = HeaderName::from_static("x-portkey-last-used-option-index");
const RETRY_COUNT: HeaderName = HeaderName::from_static("x-portkey-retry-attempt-count");
const METADATA: &str = "x-portkey-metadata";

pub(super) struct Attempts {
    /// The strategy's shape (targets are planned when the walk reaches them).
    tree: Tree<()>,
    /// The virtual key granted to each target, by leaf.
    granted: Vec<Option<Arc<str>>>,
    walk: Walk,
    /// `x-portkey-metadata` and the JSON body, for conditions met later in the walk.
    metadata: Option<Value>,
    params: Option<Value>,
    /// Attempts started so far.
    pub made: u32,
    /// Wait before the next attempt (back-off or `retry-after`).
    pub delay: Duration,
    /// The last attempt timed out: the answer is Portkey's 408 when nothing else answered.
    pub timed_out: Option<Duration>,
    /// The walk has ended: an answer is final (a later error in its body is not an attempt).
    pub done: bool,
}

/// What the request reads for conditions.
pub(super) fn env_inputs(session: &Session, body: Option<&Bytes>, reads_params: bool) -> Inputs {
    let metadata = session
        .req_header()
        .headers
        .get(METADATA)
        .and_then(|v| serde_json::from_slice::<Value>(v.as_bytes()).ok())
        .filter(Value::is_object);
    let params = match (reads_params, body) {
        (true, Some(b)) => serde_json::from_slice::<Value>(b).ok(),
        _ => None,
    };
    Inputs { metadata, params }
}

pub(super) struct Inputs {
    metadata: Option<Value>,
    params: Option<Value>,
}

fn env<'a>(metadata: &'a Option<Value>, params: &'a Option<Value>, pathname: &'a str) -> Env<'a> {
    Env {
        metadata: metadata.as_ref(),
        params: params.as_ref(),
        pathname,
    }
}

fn uniform() -> f64 {
    rand::random::<f64>()
}

impl Attempts {
    /// Starts the walk: the first target, or the conditional routing's refusal.
    pub fn start(
        tree: Tree<()>,
        granted: Vec<Option<Arc<str>>>,
        inputs: Inputs,
        pathname: &str,
    ) -> Result<(Attempts, LeafId), String> {
        let e = env(&inputs.metadata, &inputs.params, pathname);
        let (walk, first) =
            Walk::start(&tree, &e, Instant::now(), &mut uniform).map_err(|e| e.to_string())?;
        Ok((
            Attempts {
                tree,
                granted,
                walk,
                metadata: inputs.metadata,
                params: inputs.params,
                made: 0,
                delay: Duration::ZERO,
                timed_out: None,
                done: false,
            },
            first,
        ))
    }

    /// The virtual key granted to target `leaf`.
    pub fn granted(&self, leaf: LeafId) -> Option<&str> {
        self.granted.get(leaf.0 as usize).and_then(|v| v.as_deref())
    }

    pub fn current(&self) -> LeafId {
        self.walk.current()
    }

    /// The overrides of the current target, if it has any.
    pub fn overrides(&self) -> Option<&serde_json::Map<String, Value>> {
        self.tree
            .leaf(self.walk.current())
            .override_params
            .as_deref()
    }

    /// After an attempt ended with `outcome`: the next step. `budget` is how many more
    /// attempts may be made (0 when the body cannot be sent again or the answer has begun);
    /// `timeout` is the attempt's own.
    pub fn after(
        &mut self,
        outcome: Outcome,
        pathname: &str,
        budget: u32,
        base: Duration,
        timeout: Option<Duration>,
    ) -> Next {
        let e = env(&self.metadata, &self.params, pathname);
        self.timed_out = match outcome {
            Outcome::Timeout => timeout,
            _ => None,
        };
        let next = self.walk.next(
            &self.tree,
            outcome,
            &e,
            Instant::now(),
            base,
            budget,
            &mut uniform,
        );
        self.delay = match next {
            Next::Retry { after, .. } => after,
            _ => Duration::ZERO,
        };
        self.done = next == Next::Done;
        next
    }

    /// Portkey's response headers: which target answered, after how many retries.
    pub fn marks(&self) -> [(HeaderName, HeaderValue); 2] {
        let leaf = self.tree.leaf(self.walk.current());
        let path = HeaderValue::from_str(&leaf.path).unwrap_or(HeaderValue::from_static(""));
        [
            (LAST_USED, path),
            (RETRY_COUNT, HeaderValue::from(self.walk.retries())),
        ]
    }

    pub fn mark(&self, resp: &mut ResponseHeader) {
        for (name, value) in self.marks() {
            let _ = resp.insert_header(name, value);
        }
    }
}

/// Portkey's headers on the answer to a config without a strategy: its one target, no retry.
pub(super) fn plain_marks() -> [(HeaderName, HeaderValue); 2] {
    [
        (LAST_USED, HeaderValue::from_static("config")),
        (RETRY_COUNT, HeaderValue::from_static("0")),
    ]
}

/// The outcome an upstream answer stands for, with the wait it asks for.
pub(super) fn status_outcome(resp: &ResponseHeader) -> Outcome {
    let code = resp.status.as_u16();
    let retry_after = match code {
        429 | 503 => retry_after(|name| resp.headers.get(name).and_then(|v| v.to_str().ok())),
        _ => None,
    };
    Outcome::Status { code, retry_after }
}

/// The outcome an upstream error stands for.
pub(super) fn error_outcome(e: &Error) -> Outcome {
    use ErrorType::*;
    match e.etype() {
        ReadTimedout | WriteTimedout => Outcome::Timeout,
        ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError | TLSHandshakeTimedout
        | TLSHandshakeFailure | SocketError | BindError | ConnectProxyFailure => {
            Outcome::ConnectError
        }
        _ => Outcome::Error,
    }
}

/// The error that makes Pingora make the next attempt.
pub(super) fn next_attempt() -> Box<Error> {
    let mut e = Error::explain(NEXT_ATTEMPT, "the routing strategy moves on");
    e.set_retry(true);
    e
}

/// A metric label for an attempt's outcome.
pub(super) fn outcome_label(o: Outcome) -> &'static str {
    match o {
        Outcome::Status { code, .. } => match code {
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        },
        Outcome::Timeout => "timeout",
        Outcome::ConnectError => "connect_error",
        Outcome::Error => "error",
    }
}
