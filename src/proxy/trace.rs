//! The proxy's side of tracing (`crate::trace` holds the logic): reads the client's
//! `traceparent` when a request arrives, sends keyway's own upstream with each attempt, notes
//! each attempt's status and ends the request's spans. Every function is a no-op without
//! `[tracing]` (the context holds `None`).

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pingora::http::RequestHeader;
use pingora::proxy::Session;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora::Result;

use super::Ctx;
use crate::trace::{span, Arrival, Exporter, GenAi, RequestTrace, Tracer, Upstream};

const TRACEPARENT: &str = "traceparent";

/// When the request arrives: its trace, when tracing is on.
pub(super) fn begin(tracer: Option<&Arc<Tracer>>, session: &Session) -> Option<Box<RequestTrace>> {
    let tracer = tracer?;
    let req = session.req_header();
    let tls = session
        .as_ref()
        .digest()
        .is_some_and(|d| d.ssl_digest.is_some());
    Some(Box::new(RequestTrace::begin(
        tracer,
        req.headers.get(TRACEPARENT).map(|v| v.as_bytes()),
        Arrival {
            method: &req.method,
            path: req.uri.path(),
            host: super::request_host(req),
            tls,
        },
    )))
}

/// Each attempt: a CLIENT span, and its `traceparent` on the upstream request (replacing the
/// client's; `tracestate` passes unchanged).
pub(super) fn upstream(ctx: &mut Ctx, req: &mut RequestHeader) -> Result<()> {
    let (Some(t), Some(plan)) = (ctx.trace.as_deref_mut(), ctx.plan.as_ref()) else {
        return Ok(());
    };
    let value = t.upstream(Upstream {
        provider: plan.provider,
        host: plan.host.clone(),
        port: plan.port,
        tls: plan.tls,
    });
    req.insert_header(TRACEPARENT, value)
}

/// An attempt's answer arrived.
pub(super) fn status(ctx: &mut Ctx, status: u16) {
    if let Some(t) = ctx.trace.as_deref_mut() {
        t.upstream_status(status);
    }
}

/// The request ended with `status` (0: no answer): its spans go to the exporter's queue.
pub(super) fn finish(session: &Session, ctx: &mut Ctx, status: u16) {
    let Some(t) = ctx.trace.take().filter(|t| t.sampled()) else {
        return;
    };
    // The answer's model and usage as `observe` read them (it finished the scan first).
    let (tokens, response_model) = ctx.obs.usage();
    let g = GenAi {
        request_model: request_model(session, ctx),
        response_model: response_model.map(str::to_owned),
        input_tokens: tokens.prompt,
        output_tokens: tokens.completion,
    };
    t.finish(status, ctx.provider(), &g);
}

/// The request's `model`: from the kept body, else from Pingora's retry buffer (up to 64 KiB
/// of the body, when it was not cut).
fn request_model(session: &Session, ctx: &Ctx) -> Option<String> {
    if let Some(b) = &ctx.body {
        return span::request_model(b);
    }
    let s = session.as_ref();
    if s.retry_buffer_truncated() {
        return None;
    }
    span::request_model(&s.get_retry_buffer()?)
}

/// The exporter as a Pingora background service (its own runtime).
pub struct TraceExport(Mutex<Option<Exporter>>);

impl TraceExport {
    pub fn new(exporter: Exporter) -> TraceExport {
        TraceExport(Mutex::new(Some(exporter)))
    }
}

#[async_trait]
impl BackgroundService for TraceExport {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let exporter = self.0.lock().ok().and_then(|mut e| e.take());
        if let Some(e) = exporter {
            e.run(async move {
                let _ = shutdown.changed().await;
            })
            .await;
        }
    }
}
