//! The `ProxyHttp` implementation. Each hook is a dispatcher: `prepare.rs` authenticates,
//! routes and authorizes (auth, then routing, then the grant's allow-lists), `upstream.rs`
//! rewrites the request, `respond.rs` writes keyway's own answers. A request loads the active
//! runtime once, in `new_ctx`, and uses that snapshot to its end.

pub mod admin_api;
mod authorize;
pub mod health;
mod prepare;
mod respond;
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

use crate::cache::tokens::CachedToken;
use crate::error::{self, ErrorResponse, GatewayError};
use crate::routing::{Plan, UpstreamAuth};
use crate::runtime::{Runtime, Warm};
use crate::vocab::{Provider, RouteId};

pub struct Gateway {
    pub runtime: Arc<ArcSwap<Runtime>>,
    pub warm: Arc<Warm>,
    /// The admin API, when `[admin] on_proxy_listener` serves it here too.
    pub admin: Option<Arc<crate::control::ControlPlane>>,
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
    /// An admin API request (counted by the admin metrics, not as traffic).
    admin: bool,
    _in_flight: Option<InFlight>,
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

    fn peer(&self, rt: &Runtime, plan: &Plan, addr: SocketAddr) -> HttpPeer {
        let t = &rt.timeouts;
        let mut peer = HttpPeer::new(addr, plan.tls, plan.host.to_string());
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
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            rt: self.runtime.load_full(),
            started: Instant::now(),
            plan: None,
            addr: None,
            token: None,
            secret: None,
            retrying_401: false,
            caller: None,
            admin: false,
            _in_flight: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        if let Some(control) = &self.admin {
            if crate::control::resource(session.req_header().uri.path()).is_some() {
                ctx.admin = true;
                admin_api::on_proxy(control, session).await;
                return Ok(true);
            }
        }
        let m = &self.warm.metrics;
        m.in_flight.inc();
        ctx._in_flight = Some(InFlight(m.in_flight.clone()));
        match self.prepare(session, ctx).await {
            Ok(()) => Ok(false),
            Err(resp) => {
                respond::error(session, &resp).await;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        if ctx.retrying_401 {
            self.renew_credential(ctx).await?;
        }
        match (&ctx.plan, ctx.addr) {
            (Some(plan), Some(addr)) => Ok(Box::new(self.peer(&ctx.rt, plan, addr))),
            _ => Err(Error::explain(
                pingora::ErrorType::InternalError,
                "upstream_peer without a plan",
            )),
        }
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
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
        ctx: &mut Ctx,
    ) -> Result<()> {
        self.on_upstream_status(session, resp.status.as_u16(), ctx)
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Ctx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("peer {peer}"));
        if ctx.retrying_401 && matches!(e.etype(), pingora::ErrorType::HTTPStatus(401)) {
            // Our own request to retry: the body is buffered (checked before asking).
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
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        e: Box<Error>,
    ) -> Box<Error> {
        self.warm.metrics.connect_error(ctx.provider());
        e
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, _ctx: &mut Ctx) -> FailToProxy {
        let code = match error::for_proxy_error(e) {
            Some(resp) if session.response_written().is_none() => {
                respond::error(session, &resp).await;
                resp.status
            }
            _ => 0,
        };
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
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
    }

    fn request_summary(&self, session: &Session, _ctx: &Ctx) -> String {
        // Method and path only: headers and query strings may carry keys.
        let req = session.req_header();
        format!("{} {}", req.method, req.uri.path())
    }
}
