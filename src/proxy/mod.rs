//! The `ProxyHttp` implementation. Each hook is a dispatcher: `prepare.rs` authenticates,
//! routes and authorizes (auth, then routing, then the grant's allow-lists), `upstream.rs`
//! rewrites the request, `respond.rs` writes keyway's own answers. A request loads the active
//! runtime once, in `new_ctx`, and uses that snapshot to its end.

pub mod admin_api;
mod attempts;
mod authorize;
mod body;
pub mod connections;
mod guarded;
pub mod health;
pub mod ingress;
mod limits;
mod observe;
mod prepare;
mod respond;
pub mod trace;
mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, Result};

use bytes::Bytes;

use crate::cache::tokens::CachedToken;
use crate::error::{self, ErrorResponse, GatewayError};
use crate::routing::strategy::{Next, Outcome};
use crate::routing::{Plan, UpstreamAuth};
use crate::runtime::{Runtime, Warm};
use crate::vocab::{Provider, RouteId};
use attempts::Attempts;

/// The upstream rewrite, for `benches/routing.rs`; not an API.
#[doc(hidden)]
pub use upstream::rewrite;

pub struct Gateway {
    pub runtime: Arc<ArcSwap<Runtime>>,
    pub warm: Arc<Warm>,
    /// The admin API, when `[admin] on_proxy_listener` serves it here too.
    pub admin: Option<Arc<crate::control::ControlPlane>>,
    /// Request ids, the access log and usage metrics.
    pub observe: Arc<crate::observe::Observer>,
    /// Span export, with `[tracing]`.
    pub tracer: Option<Arc<crate::trace::Tracer>>,
    /// `[limits]`: checked first in `request_filter` (`limits.rs`).
    pub limits: crate::config::LimitSettings,
}

/// Per-request state.
pub struct Ctx {
    /// The runtime this request started on; it ends on it too.
    rt: Arc<Runtime>,
    started: Instant,
    plan: Option<Plan>,
    addr: Option<SocketAddr>,
    /// The token this request carries upstream, when its credential is a token.
    token: Option<Arc<CachedToken>>,
    /// The mapped key this request carries upstream: its header and the value's version.
    secret: Option<(http::HeaderValue, u64)>,
    /// The upstream rejected `token` with 401 and the request is being sent again.
    retrying_401: bool,
    /// Who is calling, in the enforced posture (workspace and role, for later steps).
    pub caller: Option<crate::auth::Caller>,
    /// The request body, when it was kept (a strategy or an allow-list needs it).
    body: Option<Bytes>,
    /// What the current attempt sends instead of Pingora's buffer: the kept body, with the
    /// target's `override_params`.
    send: Option<Bytes>,
    /// The walk of a request with a routing strategy.
    strategy: Option<Box<Attempts>>,
    /// The body is over the replay limit: one attempt only.
    no_replay: bool,
    /// A config without a strategy: its answer gets Portkey's headers all the same.
    mark_config: bool,
    /// An admin API request (counted by the admin metrics, not as traffic).
    admin: bool,
    /// Request id, timings and the usage scan (`observe.rs`).
    obs: crate::observe::State,
    /// The request's trace, with `[tracing]`.
    trace: Option<Box<crate::trace::RequestTrace>>,
    _in_flight: Option<InFlight>,
}

/// Pingora's `CTX`: the request's [`Ctx`], boxed. Pingora holds its `CTX` by value in the
/// future it allocates and copies for every request (three times over, by that future's size),
/// so a pointer there instead of the ~600-byte state copies less than the box costs. The
/// hooks reach the state through it; the rest of `proxy` takes `&mut Ctx`.
pub struct CtxBox(Box<Ctx>);

impl std::ops::Deref for CtxBox {
    type Target = Ctx;

    fn deref(&self) -> &Ctx {
        &self.0
    }
}

impl std::ops::DerefMut for CtxBox {
    fn deref_mut(&mut self) -> &mut Ctx {
        &mut self.0
    }
}

impl Ctx {
    fn provider(&self) -> Option<Provider> {
        self.plan.as_ref().map(|p| p.provider)
    }

    fn route(&self) -> RouteId {
        self.plan.as_ref().map_or(RouteId::NONE, |p| p.route)
    }
}

/// Holds the in-flight gauge up for the life of a request, whichever way it ends.
struct InFlight(pingora_prometheus::prometheus::IntGauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Gateway {
    /// After a 401: a fresh token or secret for the retry (single flight with concurrent
    /// requests).
    async fn renew_credential(&self, ctx: &mut Ctx) -> Result<()> {
        let as_error = |e: GatewayError| {
            let resp = ErrorResponse::from(&e);
            Error::explain(pingora::ErrorType::HTTPStatus(resp.status), resp.message)
        };
        match ctx.plan.as_ref().and_then(|p| p.auth.as_ref()) {
            Some(UpstreamAuth::Token(slot)) => {
                ctx.token = Some(self.token(slot).await.map_err(as_error)?);
            }
            Some(UpstreamAuth::Secret(s)) => {
                ctx.secret = Some(self.secret_header(s).await.map_err(as_error)?);
            }
            _ => {}
        }
        Ok(())
    }

    /// On a 401 to a cached token or a mapped key: drop it (the secret store refetches the
    /// key) and ask Pingora to send the request again, once, when the request body is still
    /// held in Pingora's retry buffer.
    fn on_upstream_status(&self, session: &Session, status: u16, ctx: &mut Ctx) -> Result<()> {
        if status != 401 || ctx.retrying_401 {
            return Ok(());
        }
        match (
            ctx.plan.as_ref().and_then(|p| p.auth.as_ref()),
            &ctx.token,
            &ctx.secret,
        ) {
            (Some(UpstreamAuth::Token(slot)), Some(token), _) => slot.reject(token),
            (Some(UpstreamAuth::Secret(s)), _, Some((_, version))) => {
                self.warm.secrets.reject(&s.entry, *version)
            }
            _ => return Ok(()),
        }
        if session.as_ref().retry_buffer_truncated() {
            return Ok(());
        }
        ctx.retrying_401 = true;
        self.warm.metrics.upstream_401_retries.inc();
        let mut e = Error::explain(
            pingora::ErrorType::HTTPStatus(401),
            "upstream rejected the credential",
        );
        e.set_retry(true);
        Err(e)
    }

    /// Counts an attempt of a strategy and decides the next step: `true` when another attempt
    /// follows (Pingora is asked to try again), `false` when this answer or error is final.
    fn after_attempt(&self, session: &Session, ctx: &mut Ctx, outcome: Outcome) -> bool {
        let rt = ctx.rt.clone();
        let Some(a) = ctx.strategy.as_mut().filter(|a| !a.done) else {
            return false;
        };
        let route = rt.routes.names()[ctx.plan.as_ref().map_or(0, |p| p.route.0)].as_str();
        let provider = ctx.plan.as_ref().map_or("none", |p| p.provider.as_str());
        let m = &self.warm.metrics.strategy;
        m.attempt(provider, route, attempts::outcome_label(outcome));
        // Another attempt needs the body again and nothing sent to the client yet.
        let replayable =
            ctx.send.is_some() || (!ctx.no_replay && !session.as_ref().retry_buffer_truncated());
        let budget = match replayable && session.response_written().is_none() {
            true => rt.timeouts.max_attempts.saturating_sub(a.made),
            false => 0,
        };
        let path = session.req_header().uri.path();
        let timeout = ctx.plan.as_ref().and_then(|p| p.read_timeout);
        match a.after(outcome, path, budget, rt.timeouts.backoff, timeout) {
            Next::Done => false,
            Next::Retry { .. } => {
                m.retry(route);
                true
            }
            Next::Fallback { .. } => {
                m.fallback(route);
                true
            }
        }
    }

    /// Before a strategy's next attempt: its wait, then its target's plan, address, credential
    /// and body. A target that cannot be planned (or may not serve the caller) ends the request
    /// with its error.
    async fn next_target(&self, session: &Session, ctx: &mut Ctx) -> Result<()> {
        let Some(a) = ctx.strategy.as_ref() else {
            return Ok(());
        };
        if !a.delay.is_zero() {
            tokio::time::sleep(a.delay).await;
        }
        let as_error = |resp: ErrorResponse| {
            Error::explain(pingora::ErrorType::HTTPStatus(resp.status), resp.message)
        };
        let leaf = a.current();
        let workspace = ctx.caller.as_ref().and_then(|c| c.workspace.clone());
        let plan = prepare::plan_target(
            &ctx.rt,
            session,
            leaf.0 as usize,
            a.granted(leaf),
            workspace.as_deref(),
        )
        .map_err(as_error)?;
        prepare::check_secret(&plan, workspace).map_err(as_error)?;
        ctx.send = self.body_for(a, ctx.body.as_ref());
        ctx.retrying_401 = false;
        let addr = self.ready(&plan, ctx).await.map_err(as_error)?;
        ctx.addr = Some(addr);
        ctx.plan = Some(plan);
        Ok(())
    }

    fn peer(&self, rt: &Runtime, plan: &Plan, addr: SocketAddr) -> HttpPeer {
        let t = &rt.timeouts;
        // SNI only over TLS: a clear-text peer needs no name (and no String per request).
        let sni = match plan.tls {
            true => plan.host.to_string(),
            false => String::new(),
        };
        let mut peer = HttpPeer::new(addr, plan.tls, sni);
        let o = &mut peer.options;
        o.connection_timeout = Some(t.connect);
        o.total_connection_timeout = Some(t.total_connect);
        o.read_timeout = Some(plan.read_timeout.unwrap_or(t.read));
        o.write_timeout = Some(plan.read_timeout.unwrap_or(t.read));
        o.idle_timeout = Some(t.idle);
        peer
    }
}

/// The request's host without port: `Host` for HTTP/1, the URI authority for HTTP/2.
fn request_host(req: &RequestHeader) -> Option<&str> {
    let raw = match req.headers.get(http::header::HOST) {
        Some(v) => v.to_str().ok()?,
        None => req.uri.authority()?.as_str(),
    };
    if let Some(v6) = raw.strip_prefix('[') {
        return v6.split(']').next();
    }
    Some(match raw.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => raw,
    })
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = CtxBox;

    /// No downstream modules: Pingora's default adds a response compressor, switched off, that
    /// every request would still create and every body chunk pass through. keyway streams
    /// answers as the provider sent them.
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    fn new_ctx(&self) -> CtxBox {
        CtxBox(Box::new(Ctx {
            rt: self.runtime.load_full(),
            started: Instant::now(),
            plan: None,
            addr: None,
            token: None,
            secret: None,
            retrying_401: false,
            caller: None,
            body: None,
            send: None,
            strategy: None,
            no_replay: false,
            mark_config: false,
            admin: false,
            obs: Default::default(),
            trace: None,
            _in_flight: None,
        }))
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut CtxBox) -> Result<bool> {
        self.observe_request(session, ctx);
        let id = ctx.obs.request_id.as_ref();
        if limits::refused(session, &self.limits, &self.warm.metrics.limits, id).await {
            return Ok(true);
        }
        if let Some(control) = &self.admin {
            if crate::control::resource(session.req_header().uri.path()).is_some() {
                ctx.admin = true;
                Box::pin(admin_api::on_proxy(control, session)).await;
                return Ok(true);
            }
        }
        ctx.trace = trace::begin(self.tracer.as_ref(), session);
        let m = &self.warm.metrics;
        m.in_flight.inc();
        ctx._in_flight = Some(InFlight(m.in_flight.clone()));
        match self.prepare(session, ctx).await {
            Ok(()) => Ok(false),
            Err(resp) => {
                Box::pin(respond::error(session, &resp, ctx.obs.request_id.as_ref())).await;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut CtxBox,
    ) -> Result<Box<HttpPeer>> {
        self.observe_attempt(ctx);
        // Both awaited only on a retry or a strategy's next target: boxed where taken, as in
        // `prepare` (inline, they would size the future Pingora boxes for every request).
        if ctx.retrying_401 {
            Box::pin(self.renew_credential(ctx)).await?;
        } else if let Some(a) = ctx.strategy.as_mut() {
            a.made += 1;
            if a.made > 1 {
                Box::pin(self.next_target(session, ctx)).await?;
            }
        }
        match (&ctx.plan, ctx.addr) {
            (Some(plan), Some(addr)) => Ok(Box::new(self.peer(&ctx.rt, plan, addr))),
            _ => Err(Error::explain(
                pingora::ErrorType::InternalError,
                "upstream_peer without a plan",
            )),
        }
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut CtxBox,
    ) -> Result<()> {
        // The client's body was read before the attempt: Pingora hands over what its retry
        // buffer holds, and the attempt sends the kept body (its target's version) instead.
        if let Some(send) = &ctx.send {
            *body = (!send.is_empty()).then(|| send.clone());
        }
        Ok(())
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut CtxBox,
    ) -> Result<()> {
        if let Some(send) = &ctx.send {
            req.remove_header(&http::header::TRANSFER_ENCODING);
            req.insert_header(http::header::CONTENT_LENGTH, send.len())?;
        }
        self.observe_upstream(req, ctx);
        trace::upstream(ctx, req)?;
        match &ctx.plan {
            Some(plan) => upstream::rewrite(
                req,
                plan,
                ctx.token.as_deref(),
                ctx.secret.as_ref().map(|s| &s.0),
                &ctx.rt.auth.credential_headers,
            ),
            None => Ok(()),
        }
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut CtxBox,
    ) -> Result<()> {
        self.observe_answer(resp, ctx);
        trace::status(ctx, resp.status.as_u16());
        self.on_upstream_status(session, resp.status.as_u16(), ctx)?;
        if ctx.strategy.is_some() {
            let outcome = attempts::status_outcome(resp);
            if self.after_attempt(session, ctx, outcome) {
                return Err(attempts::next_attempt());
            }
            if let Some(a) = &ctx.strategy {
                a.mark(resp);
            }
        } else if ctx.mark_config {
            for (name, value) in attempts::plain_marks() {
                resp.insert_header(name, value)?;
            }
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut CtxBox,
    ) -> Result<()> {
        self.observe_response(resp, ctx);
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut CtxBox,
    ) -> Result<Option<Duration>> {
        self.observe_body(body, end_of_stream, ctx);
        Ok(None)
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut CtxBox,
        client_reused: bool,
    ) -> Box<Error> {
        let ctx: &mut Ctx = ctx;
        let mut e = e.more_context(format!("peer {peer}"));
        if *e.etype() == attempts::NEXT_ATTEMPT
            || (ctx.retrying_401 && matches!(e.etype(), pingora::ErrorType::HTTPStatus(401)))
        {
            // Our own request to retry: the body is buffered (checked before asking).
            return e;
        }
        if let Some(a) = ctx.strategy.as_mut().filter(|a| !a.done) {
            // A pooled connection the upstream had closed: the same target again, as Pingora
            // does for any request, and not an attempt of the strategy.
            e.retry.decide_reuse(client_reused);
            let replayable = ctx.send.is_some()
                || (!ctx.no_replay && !session.as_ref().retry_buffer_truncated());
            if e.retry() && replayable && session.response_written().is_none() {
                a.made = a.made.saturating_sub(1);
                a.delay = std::time::Duration::ZERO;
                return e;
            }
        }
        if ctx.strategy.is_some() {
            let outcome = attempts::error_outcome(&e);
            let again = self.after_attempt(session, ctx, outcome);
            e.set_retry(again);
            return e;
        }
        if !session.req_header().method.is_idempotent() || session.as_ref().retry_buffer_truncated()
        {
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        e
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut CtxBox,
        mut e: Box<Error>,
    ) -> Box<Error> {
        self.warm.metrics.connect_error(ctx.provider());
        if ctx.strategy.is_some() {
            let again = self.after_attempt(session, ctx, Outcome::ConnectError);
            e.set_retry(again);
        }
        e
    }

    fn suppress_proxy_warn_log(
        &self,
        _session: &Session,
        ctx: &CtxBox,
        e: &Error,
        _context: pingora::proxy::ProxyWarnLogContext,
    ) -> bool {
        // A strategy moving on is routine (counted in keyway_upstream_attempts_total).
        *e.etype() == attempts::NEXT_ATTEMPT || ctx.strategy.is_some()
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut CtxBox,
    ) -> FailToProxy {
        let timed_out = match &ctx.strategy {
            Some(a) => a.timed_out,
            // A request timeout the caller set (x-portkey-request-timeout, request_timeout).
            None => ctx
                .plan
                .as_ref()
                .and_then(|p| p.read_timeout)
                .filter(|_| attempts::error_outcome(e) == Outcome::Timeout),
        };
        let answer = match timed_out {
            Some(t) if e.esource() == &pingora::ErrorSource::Upstream => {
                Some(ErrorResponse::request_timeout(t.as_millis()))
            }
            _ => error::for_proxy_error(e),
        };
        let marks = match &ctx.strategy {
            Some(a) => Some(a.marks()),
            None => ctx.mark_config.then(attempts::plain_marks),
        };
        let code = match answer {
            Some(resp) if session.response_written().is_none() => {
                let marks = marks.as_ref().map_or(&[][..], |m| &m[..]);
                respond::error_with(session, &resp, marks, ctx.obs.request_id.as_ref()).await;
                resp.status
            }
            _ => 0,
        };
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut CtxBox) {
        limits::finished(session, e, &self.warm.metrics.limits);
        if ctx.admin {
            return;
        }
        let status = session
            .response_written()
            .map_or(0, |r: &ResponseHeader| r.status.as_u16());
        let elapsed: Duration = ctx.started.elapsed();
        self.warm.metrics.finished(
            &ctx.rt.routes,
            ctx.provider(),
            ctx.route(),
            status,
            elapsed.as_secs_f64(),
        );
        self.observe_finished(session, ctx, status, elapsed);
        trace::finish(session, ctx, status);
    }

    fn request_summary(&self, session: &Session, _ctx: &CtxBox) -> String {
        // Method and path only: headers and query strings may carry keys.
        let req = session.req_header();
        format!("{} {}", req.method, req.uri.path())
    }
}
