//! The `ProxyHttp` implementation. Each hook is a dispatcher: routing decides (`routing`),
//! `upstream.rs` rewrites the request, `respond.rs` writes keyway's own answers.

mod authorize;
mod respond;
mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, Result};

use crate::cache::dns::Dns;
use crate::cache::tokens::CachedToken;
use crate::config::Timeouts;
use crate::error::{self, ErrorResponse};
use crate::metrics::Metrics;
use crate::routing::custom_host::ip_is_forbidden;
use crate::routing::provider::Provider;
use crate::routing::{Plan, RouteError, RouteId, Router, UpstreamAuth};

pub struct Gateway {
    pub auth: Arc<crate::auth::gate::Authenticator>,
    pub router: Arc<Router>,
    pub secrets: Arc<crate::cache::secrets::SecretStore>,
    pub dns: Arc<Dns>,
    pub metrics: Arc<Metrics>,
    pub timeouts: Timeouts,
}

/// Per-request state.
pub struct Ctx {
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
    /// Authenticates, routes and authorizes the request and resolves its upstream; on error
    /// nothing has left keyway.
    async fn prepare(&self, session: &mut Session, ctx: &mut Ctx) -> Result<(), ErrorResponse> {
        let caller = self.authenticate(session).await?;
        let req = session.req_header();
        let plan = self
            .router
            .route(&req.uri, request_host(req), &req.headers, caller.as_ref())
            .map_err(|e| {
                if let RouteError::Denied(a) = &e {
                    self.metrics.auth(
                        Some(crate::auth::AuthMethod::VirtualKey),
                        Some(a.outcome_kind()),
                    );
                }
                ErrorResponse::from(&e)
            })?;
        if let Some(c) = &caller {
            self.authorize(session, c, &plan).await?;
        }
        ctx.caller = caller;
        let ip = self.dns.addr_for(&plan.host).await.map_err(|_| {
            ErrorResponse::new(
                502,
                format!("upstream host {} cannot be resolved", plan.host),
            )
        })?;
        if plan.check_resolved_ips && ip_is_forbidden(ip) {
            let e = RouteError::ForbiddenCustomHost(
                "resolves to a loopback, private or link-local address".into(),
            );
            return Err(ErrorResponse::from(&e));
        }
        if let Some(id) = plan.secret_ref {
            let workspace = ctx.caller.as_ref().map(|c| &*c.workspace);
            if !self.secrets.allows(id, workspace) {
                return Err(error::secret_forbidden(self.secrets.slug(id), workspace));
            }
        }
        match &plan.auth {
            Some(UpstreamAuth::Token(slot)) => {
                let token = slot
                    .get(&self.metrics)
                    .await
                    .map_err(|e| error::for_credential(&e, slot.name.is_some()))?;
                ctx.token = Some(token);
            }
            Some(UpstreamAuth::Secret(s)) => ctx.secret = Some(self.secret_header(s).await?),
            _ => {}
        }
        ctx.addr = Some(SocketAddr::new(ip, plan.port));
        ctx.plan = Some(plan);
        Ok(())
    }

    /// The mapped key's header for this request (the store fetches it if it must).
    async fn secret_header(
        &self,
        s: &crate::routing::SecretAuth,
    ) -> Result<(http::HeaderValue, u64), ErrorResponse> {
        let c = self.secrets.get(s.id).await.map_err(|e| {
            // The store already logged the failure (once per fetch, with back-off): a request
            // that finds it adds only a debug line, so an outage does not flood the log.
            log::debug!("{e}: {}", e.cause);
            error::for_secret(&e)
        })?;
        match s.header(&c) {
            Some(h) => Ok((h, c.version)),
            None => Err(ErrorResponse::openai(
                503,
                format!(
                    "secret reference '{}' holds characters not allowed in a header",
                    self.secrets.slug(s.id)
                ),
                "secret_unavailable",
            )),
        }
    }

    /// After a 401: a fresh token or secret for the retry (single flight with concurrent
    /// requests).
    async fn renew_credential(&self, ctx: &mut Ctx) -> Result<()> {
        let as_error = |resp: ErrorResponse| {
            Error::explain(pingora::ErrorType::HTTPStatus(resp.status), resp.message)
        };
        match ctx.plan.as_ref().and_then(|p| p.auth.as_ref()) {
            Some(UpstreamAuth::Token(slot)) => {
                let token = slot
                    .get(&self.metrics)
                    .await
                    .map_err(|e| as_error(error::for_credential(&e, slot.name.is_some())))?;
                ctx.token = Some(token);
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
                self.secrets.reject(s.id, *version)
            }
            _ => return Ok(()),
        }
        if session.as_ref().retry_buffer_truncated() {
            return Ok(());
        }
        ctx.retrying_401 = true;
        self.metrics.upstream_401_retries.inc();
        let mut e = Error::explain(
            pingora::ErrorType::HTTPStatus(401),
            "upstream rejected the credential",
        );
        e.set_retry(true);
        Err(e)
    }

    fn peer(&self, plan: &Plan, addr: SocketAddr) -> HttpPeer {
        let mut peer = HttpPeer::new(addr, plan.tls, plan.host.to_string());
        let o = &mut peer.options;
        o.connection_timeout = Some(self.timeouts.connect);
        o.total_connection_timeout = Some(self.timeouts.total_connect);
        o.read_timeout = Some(plan.read_timeout.unwrap_or(self.timeouts.read));
        o.write_timeout = Some(plan.read_timeout.unwrap_or(self.timeouts.read));
        o.idle_timeout = Some(self.timeouts.idle);
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
            started: Instant::now(),
            plan: None,
            addr: None,
            token: None,
            secret: None,
            retrying_401: false,
            caller: None,
            _in_flight: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        // Pingora calls request_filter with &mut Session; prepare needs it to read bodies.
        self.metrics.in_flight.inc();
        ctx._in_flight = Some(InFlight(self.metrics.in_flight.clone()));
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
            (Some(plan), Some(addr)) => Ok(Box::new(self.peer(plan, addr))),
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
                &self.auth.credential_headers,
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
        self.metrics.connect_error(ctx.provider());
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
        let status = session
            .response_written()
            .map_or(0, |r: &ResponseHeader| r.status.as_u16());
        let elapsed: Duration = ctx.started.elapsed();
        self.metrics
            .finished(ctx.provider(), ctx.route(), status, elapsed.as_secs_f64());
    }

    fn request_summary(&self, session: &Session, _ctx: &Ctx) -> String {
        // Method and path only: headers and query strings may carry keys.
        let req = session.req_header();
        format!("{} {}", req.method, req.uri.path())
    }
}
