//! The hooks' side of `crate::observe`: the request id on the way in, out and upstream, the
//! answer's shape and body for the usage scan, and the request's facts when it ends.

use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;

use super::{Ctx, Gateway};
use crate::observe::{decode::Encoding, request_id, usage::Shape, Done};

impl Gateway {
    /// The request's id: the client's when it sent one sane id (it then goes upstream as it
    /// is), else a new one ([`observe_upstream`](Self::observe_upstream) sends it instead).
    pub(super) fn observe_request(&self, session: &Session, ctx: &mut Ctx) {
        let mut sent = session
            .req_header()
            .headers
            .get_all(request_id::HEADER)
            .iter();
        let (first, more) = (sent.next(), sent.next());
        let id = request_id::accept_or_make(first.filter(|_| more.is_none()));
        let made = first != Some(&id);
        self.observe.start(&mut ctx.obs, id, made);
    }

    /// The request leaves for the upstream: a new id replaces whatever the client sent. Set
    /// here, on Pingora's copy of the request, after the credentials were stripped (the map
    /// then has room for it).
    pub(super) fn observe_upstream(&self, req: &mut RequestHeader, ctx: &Ctx) {
        if let Some(id) = ctx.obs.request_id.as_ref().filter(|_| ctx.obs.id_made) {
            let _ = req.insert_header(request_id::NAME, id.clone());
        }
    }

    /// An upstream attempt begins.
    pub(super) fn observe_attempt(&self, ctx: &mut Ctx) {
        self.observe.attempt(&mut ctx.obs);
    }

    /// The upstream's answer header: its time and what its body is.
    pub(super) fn observe_answer(&self, resp: &ResponseHeader, ctx: &mut Ctx) {
        let h = &resp.headers;
        let ct = h.get(http::header::CONTENT_TYPE).map(|v| v.as_bytes());
        let ce = h.get(http::header::CONTENT_ENCODING).map(|v| v.as_bytes());
        let body = (Shape::of(ct), Encoding::of(ce));
        let status = resp.status.as_u16();
        self.observe.answer(&mut ctx.obs, ctx.started, status, body);
    }

    /// The id goes back to the client on the proxied answer.
    pub(super) fn observe_response(&self, resp: &mut ResponseHeader, ctx: &Ctx) {
        if let Some(id) = &ctx.obs.request_id {
            let _ = resp.insert_header(request_id::NAME, id.clone());
        }
    }

    /// A piece of the answer passes: read for usage, never held.
    pub(super) fn observe_body(&self, body: &Option<Bytes>, end: bool, ctx: &mut Ctx) {
        let chunk = body.as_deref().unwrap_or_default();
        if let Some(ttft) = self.observe.body(&mut ctx.obs, ctx.started, chunk, end) {
            self.observe.time_to_first_token(ctx.provider(), ttft);
        }
    }

    /// The request ended.
    pub(super) fn observe_finished(
        &self,
        session: &Session,
        ctx: &mut Ctx,
        status: u16,
        elapsed: std::time::Duration,
    ) {
        let req = session.req_header();
        let plan = ctx.plan.as_ref();
        let route = plan.and_then(|p| ctx.rt.routes.names().get(p.route.0));
        let done = Done {
            method: req.method.as_str(),
            path: req.uri.path(),
            status,
            elapsed,
            provider: ctx.provider(),
            route: route.map(String::as_str),
            target: ctx.strategy.as_ref().map(|a| a.current().0),
            attempts: ctx.strategy.as_ref().map(|a| a.made),
            workspace: ctx.caller.as_ref().and_then(|c| c.workspace.as_deref()),
            virtual_key: plan.and_then(|p| p.virtual_key.as_deref()),
            bytes_in: session.as_ref().body_bytes_read() as u64,
            bytes_out: session.as_ref().body_bytes_sent() as u64,
        };
        self.observe.finish(&mut ctx.obs, done);
    }
}
