//! What keyway records of each request: its id (`request_id`), the access log (`access_log`)
//! and the LLM usage read from the answer as it passes (`usage`). Nothing here imports
//! Pingora: `proxy/observe.rs` feeds it from the hooks. Per request the work is a few clock
//! reads, the usage scan of a 2xx JSON or SSE answer and, when the request is logged, one
//! formatted line handed to the writer thread.

pub mod access_log;
pub mod decode;
pub mod model;
pub mod request_id;
pub mod usage;

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderValue;

use crate::config::observe::ObserveSettings;
use crate::metrics::usage::UsageLabels;
use crate::metrics::Metrics;
use access_log::{AccessLog, Record};
use decode::{Encoding, Reader};
use usage::{Shape, Tokens};

/// The process's recorder, made once at start (`[access_log]` and `[usage]` are restart-only).
#[derive(Debug)]
pub struct Observer {
    log: Option<AccessLog>,
    usage: bool,
    /// The `model` label's allow-list.
    models: Vec<Box<str>>,
    metrics: Arc<Metrics>,
}

impl Observer {
    /// Opens the access log when it is enabled (a file that cannot be opened fails start-up).
    pub fn new(s: &ObserveSettings, metrics: Arc<Metrics>) -> std::io::Result<Observer> {
        let log = match s.access_log.enabled {
            true => Some(AccessLog::start(
                &s.access_log,
                metrics.usage.access_log_dropped.clone(),
            )?),
            false => None,
        };
        Ok(Observer {
            log,
            usage: s.usage.enabled,
            models: s.usage.models.iter().map(|m| m.as_str().into()).collect(),
            metrics,
        })
    }

    /// The `model` label: the allow-list's entry the name matches (`model.rs`), else `other`.
    pub fn model_label(&self, model: Option<&str>) -> &str {
        model::label(&self.models, model)
    }

    /// Has the access log reopen its file (`SIGHUP`, after logrotate renamed it).
    pub fn reopen_log(&self) {
        if let Some(log) = &self.log {
            log.reopen();
        }
    }

    /// A request begins with its id (`made`: keyway's, replacing whatever the client sent):
    /// whether it will be logged.
    pub fn start(&self, state: &mut State, id: HeaderValue, made: bool) {
        state.request_id = Some(id);
        state.id_made = made;
        state.logged = self.log.as_ref().is_some_and(AccessLog::sampled);
    }

    /// An upstream attempt begins. The clock is read only for a request that will be logged
    /// (the timings below are the access log's).
    pub fn attempt(&self, state: &mut State) {
        state.attempts += 1;
        if state.logged {
            state.upstream_start.get_or_insert_with(Instant::now);
        }
    }

    /// The upstream's answer header arrived (the last attempt's counts).
    pub fn answer(
        &self,
        state: &mut State,
        started: Instant,
        status: u16,
        body: (Shape, Encoding),
    ) {
        if state.logged {
            state.ttfb = Some(started.elapsed());
        }
        state.scanner = match (self.usage, status) {
            (true, 200..=299) => Reader::new(body.0, body.1).map(Box::new),
            _ => None,
        };
    }

    /// A piece of the answer's body passes to the client.
    pub fn body(
        &self,
        state: &mut State,
        started: Instant,
        chunk: &[u8],
        end: bool,
    ) -> Option<Duration> {
        let s = state.scanner.as_mut()?;
        let mut ttft = None;
        let first = match end {
            true => s.feed_last(chunk),
            false => s.feed(chunk),
        };
        if first {
            ttft = Some(started.elapsed());
            state.ttft = ttft;
        }
        if end {
            s.finish();
            if state.logged {
                state.upstream_end = Some(Instant::now());
            }
        }
        ttft
    }

    pub fn time_to_first_token(&self, provider: Option<crate::vocab::Provider>, d: Duration) {
        self.metrics
            .usage
            .time_to_first_token(provider, d.as_secs_f64());
    }

    /// The request ended: sizes and tokens are counted and its line is queued.
    pub fn finish(&self, state: &mut State, done: Done) {
        let m = &self.metrics.usage;
        m.sizes(done.provider, done.bytes_in, done.bytes_out);
        let stream = state
            .scanner
            .as_ref()
            .is_some_and(|s| s.shape() == Shape::Sse);
        let (tokens, model) = match state.scanner.as_mut() {
            Some(s) => {
                s.finish();
                s.result()
            }
            None => (Tokens::default(), None),
        };
        if tokens.known() {
            let labels = UsageLabels {
                provider: done.provider,
                route: done.route.unwrap_or("none"),
                workspace: done.workspace.unwrap_or("none"),
                model: self.model_label(model),
            };
            m.tokens(&labels, tokens.prompt, tokens.completion, tokens.total());
        }
        let Some(log) = self.log.as_ref().filter(|_| state.logged) else {
            return;
        };
        let upstream = state.upstream_start.map(|s| {
            state
                .upstream_end
                .unwrap_or_else(Instant::now)
                .saturating_duration_since(s)
        });
        let time = access_log::now();
        let id = state.request_id.as_ref().and_then(|v| v.to_str().ok());
        let record = Record {
            time: &time,
            request_id: id.unwrap_or("-"),
            method: done.method,
            path: access_log::bounded_path(done.path),
            status: done.status,
            duration_ms: access_log::ms(done.elapsed),
            ttfb_ms: state.ttfb.map(access_log::ms),
            upstream_ms: upstream.map(access_log::ms),
            ttft_ms: state.ttft.map(access_log::ms),
            provider: done.provider.map(|p| p.as_str()),
            route: done.route,
            target: done.target,
            attempts: done.attempts.unwrap_or(state.attempts),
            workspace: done.workspace,
            virtual_key: done.virtual_key,
            bytes_in: done.bytes_in,
            bytes_out: done.bytes_out,
            stream,
            model,
            prompt_tokens: tokens.prompt,
            completion_tokens: tokens.completion,
            total_tokens: tokens.total(),
        };
        log.send(record.to_line());
    }
}

/// One request's observations.
#[derive(Debug, Default)]
pub struct State {
    pub request_id: Option<HeaderValue>,
    /// The id is keyway's: it replaces the client's header(s) on the upstream request.
    pub id_made: bool,
    /// This request is written to the access log (sampled in).
    logged: bool,
    /// Upstream attempts begun (Pingora's retries of a reused connection included).
    attempts: u32,
    upstream_start: Option<Instant>,
    upstream_end: Option<Instant>,
    ttfb: Option<Duration>,
    ttft: Option<Duration>,
    scanner: Option<Box<Reader>>,
}

impl State {
    /// The answer's token usage and model, as far as they were read (complete once
    /// `Observer::finish` has run).
    pub fn usage(&self) -> (Tokens, Option<&str>) {
        match &self.scanner {
            Some(s) => s.result(),
            None => (Tokens::default(), None),
        }
    }
}

/// What the proxy knows of a request when it ends.
pub struct Done<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub elapsed: Duration,
    pub provider: Option<crate::vocab::Provider>,
    pub route: Option<&'a str>,
    pub target: Option<u32>,
    /// The strategy's count of attempts, when the request has one.
    pub attempts: Option<u32>,
    pub workspace: Option<&'a str>,
    pub virtual_key: Option<&'a str>,
    pub bytes_in: u64,
    pub bytes_out: u64,
}
