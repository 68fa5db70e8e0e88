//! Preparing one request, in the order the arrows point: authenticate the caller, read what the
//! request asks for, grant the virtual key each target uses, plan every target, then check the
//! grants' allow-lists (reading the body's model only when some list restricts models) and the
//! secrets' workspaces, keep the body when a strategy needs it, resolve the first target and
//! take its credential from the cache. On any error nothing has left keyway.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use pingora::proxy::Session;
use smallvec::SmallVec;

use super::attempts::{self, Attempts};
use super::{authorize, body, request_host, Ctx, Gateway};
use crate::auth::gate::{Grant, Refusal};
use crate::cache::secrets::Cached;
use crate::cache::tokens::{CachedToken, TokenSlot};
use crate::error::{ErrorResponse, GatewayError, BODY_CHECK_LIMIT};
use crate::routing::custom_host::ip_is_forbidden;
use crate::routing::{Access, Plan, RouteError, SecretAuth, UpstreamAuth};
use crate::runtime::Runtime;

/// What routing needs to know of a target's grant.
fn access<'a>(rt: &'a Runtime, grant: &'a Grant<'_>) -> Access<'a> {
    Access {
        enforced: rt.auth.enforced(),
        virtual_key: grant.virtual_key.map(|v| &*v.id),
        workspace: grant.caller.as_ref().and_then(|c| c.workspace.as_deref()),
    }
}

/// Plans target `leaf` of the request, reading its headers again (an inline config comes from
/// the runtime's cache of parsed configs): at the first attempt and when the walk moves on.
pub(super) fn plan_target(
    rt: &Runtime,
    session: &Session,
    leaf: usize,
    virtual_key: Option<&str>,
    workspace: Option<&str>,
) -> Result<Plan, ErrorResponse> {
    let route_err = |e: RouteError| ErrorResponse::from(&e);
    let req = session.req_header();
    let parsed = rt
        .router
        .parse(&req.uri, request_host(req), &req.headers)
        .map_err(route_err)?;
    let access = Access {
        enforced: rt.auth.enforced(),
        virtual_key,
        workspace,
    };
    rt.router
        .plan(&parsed, leaf, &req.uri, &req.headers, access)
        .map_err(route_err)
}

/// A target whose credential comes from a secret reference serves only the workspaces that
/// reference allows.
pub(super) fn check_secret(plan: &Plan, workspace: Option<Arc<str>>) -> Result<(), ErrorResponse> {
    match &plan.secret {
        Some(e) if !e.allows(workspace.as_deref()) => {
            Err(ErrorResponse::from(&GatewayError::SecretForbidden {
                slug: e.slug().clone(),
                workspace,
            }))
        }
        _ => Ok(()),
    }
}

impl Gateway {
    pub(super) async fn prepare(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
    ) -> Result<(), ErrorResponse> {
        let rt = ctx.rt.clone();
        let m = &self.warm.metrics;
        let refused = |r: Refusal| {
            m.auth(r.method, Some(r.error.outcome_kind()));
            ErrorResponse::from(&r.error)
        };
        let req = session.req_header();
        // The open posture authenticates nobody (and reads no clock).
        // Futures awaited only on some paths are boxed where they are taken: inline, each
        // would grow the future Pingora boxes (and copies) for every request.
        let caller = match rt.auth.enforced() {
            true => Some(
                Box::pin(rt.auth.identify(&req.headers, SystemTime::now()))
                    .await
                    .map_err(refused)?,
            ),
            false => None,
        };
        if let Some(c) = &caller {
            m.auth(Some(c.method), None);
        }
        let route_err = |e: RouteError| ErrorResponse::from(&e);
        let parsed = rt
            .router
            .parse(&req.uri, request_host(req), &req.headers)
            .map_err(route_err)?;
        // Every target's virtual key is granted and its provider authorized before anything
        // is sent: a config with a target the caller may not use is refused whole. A target
        // is planned when the walk reaches it (a load balance plans one of its targets).
        let n = rt.router.targets(&parsed);
        // Most requests have one target: its grant stays inline (no allocation).
        let mut grants: SmallVec<[Grant<'_>; 1]> = SmallVec::with_capacity(n);
        let mut providers = Vec::new();
        for leaf in 0..n {
            let named = parsed.virtual_key(leaf, &req.headers).map_err(route_err)?;
            let grant = rt.auth.grant(caller.clone(), named).map_err(refused)?;
            // Allow-lists bind authenticated callers only (the open posture has none).
            if grant.caller.is_some() {
                let vk = grant.virtual_key.map(|v| &*v.id);
                let provider = rt
                    .router
                    .provider(&parsed, leaf, &req.headers, vk)
                    .map_err(route_err)?;
                rt.auth.authorize(&grant, provider, None).map_err(refused)?;
                providers.push(provider);
            }
            grants.push(grant);
        }
        let workspace = caller.as_ref().and_then(|c| c.workspace.clone());
        let needs = rt.router.needs(&parsed);
        let start = |tree, inputs, path: &str| {
            let granted = grants
                .iter()
                .map(|g| g.virtual_key.map(|v| v.id.clone()))
                .collect();
            Attempts::start(tree, granted, inputs, path).map_err(|problem| {
                ErrorResponse::from(&RouteError::BadHeader {
                    header: "x-portkey-config",
                    problem,
                })
            })
        };
        // The plain path plans its one target now; a walk plans the target it starts with (now,
        // unless its conditions read the body), the others when it reaches them.
        let mut plan = None;
        let mut walk = None;
        let mut later = None;
        match needs {
            None => {
                ctx.mark_config = parsed.has_config();
                let access = access(&rt, &grants[0]);
                let p = rt.router.plan(&parsed, 0, &req.uri, &req.headers, access);
                plan = Some(p.map_err(route_err)?);
            }
            Some(nd) if !nd.reads_params => {
                let tree = rt
                    .router
                    .shape(&parsed)
                    .ok_or(RouteError::Internal("no shape"));
                let inputs = attempts::env_inputs(session, None, false);
                let (a, first) = start(tree.map_err(route_err)?, inputs, req.uri.path())?;
                let leaf = first.0 as usize;
                let access = access(&rt, &grants[leaf]);
                let p = rt
                    .router
                    .plan(&parsed, leaf, &req.uri, &req.headers, access);
                plan = Some(p.map_err(route_err)?);
                walk = Some(a);
            }
            Some(_) => later = rt.router.shape(&parsed),
        }
        let checks_models = grants.iter().any(|g| rt.auth.restricts_models(g));
        // The body is kept when a model must be checked, conditions read it or a target
        // overrides its params; for replay alone only when it is over Pingora's own retry
        // buffer (which replays smaller bodies at no cost) and within the limit.
        let must = checks_models || needs.is_some_and(|n| n.reads_params || n.overrides);
        let length = body::content_length(session);
        let replays = needs.is_some_and(|n| n.attempts > 1);
        if must || (replays && length.is_some_and(|n| n > body::RETRY_BUFFER)) {
            let limit = match checks_models {
                true => rt.timeouts.replay_limit.max(BODY_CHECK_LIMIT),
                false => rt.timeouts.replay_limit,
            };
            ctx.body = Box::pin(body::keep(session, limit, must))
                .await
                .inspect_err(|r| super::limits::count_stall(r, &m.limits))?;
        }
        // A body over the limit goes to the first target only, even when it would fit Pingora's
        // retry buffer.
        ctx.no_replay = ctx.body.is_none() && length.is_some_and(|n| n > rt.timeouts.replay_limit);
        if checks_models {
            let model = authorize::model_of(ctx.body.as_ref())?;
            let authenticated = grants.iter().filter(|g| g.caller.is_some());
            for (grant, provider) in authenticated.zip(providers) {
                rt.auth
                    .authorize(grant, provider, Some(&model))
                    .map_err(refused)?;
            }
        }
        if let Some(tree) = later {
            let inputs = attempts::env_inputs(session, ctx.body.as_ref(), true);
            let (a, first) = start(tree, inputs, session.req_header().uri.path())?;
            let vk = a.granted(first);
            plan = Some(plan_target(
                &rt,
                session,
                first.0 as usize,
                vk,
                workspace.as_deref(),
            )?);
            walk = Some(a);
        }
        if let Some(a) = walk {
            ctx.send = self.body_for(&a, ctx.body.as_ref());
            ctx.strategy = Some(Box::new(a));
        }
        ctx.caller = grants.into_iter().next().and_then(|g| g.caller);
        let plan = plan.ok_or_else(|| ErrorResponse::from(&RouteError::Internal("no plan")))?;
        check_secret(&plan, workspace)?;
        if ctx.send.is_none() {
            ctx.send = ctx.body.clone();
        }
        ctx.addr = Some(self.ready(&plan, ctx).await?);
        ctx.plan = Some(plan);
        Ok(())
    }

    /// What an attempt on the walk's current target sends: the kept body with the target's
    /// `override_params`.
    pub(super) fn body_for(
        &self,
        a: &Attempts,
        body: Option<&bytes::Bytes>,
    ) -> Option<bytes::Bytes> {
        let body = body?;
        Some(match a.overrides() {
            Some(o) => body::with_overrides(body, o),
            None => body.clone(),
        })
    }

    /// Resolves the plan's host and takes its credential from the cache: the upstream address.
    pub(super) async fn ready(
        &self,
        plan: &Plan,
        ctx: &mut Ctx,
    ) -> Result<SocketAddr, ErrorResponse> {
        let ip =
            self.warm.dns.addr_for(&plan.host).await.map_err(|_| {
                ErrorResponse::from(&GatewayError::UnresolvableHost(plan.host.clone()))
            })?;
        if plan.check_resolved_ips && ip_is_forbidden(ip) {
            let e = RouteError::ForbiddenCustomHost(
                "resolves to a loopback, private or link-local address".into(),
            );
            return Err(ErrorResponse::from(&e));
        }
        let failed = |e: GatewayError| ErrorResponse::from(&e);
        ctx.token = None;
        ctx.secret = None;
        match &plan.auth {
            // A valid cached token or fresh secret is taken without awaiting; a fetch's future
            // is boxed when one is needed.
            Some(UpstreamAuth::Token(slot)) => {
                ctx.token = Some(match slot.current() {
                    Some(t) => t,
                    None => Box::pin(self.token(slot)).await.map_err(failed)?,
                })
            }
            Some(UpstreamAuth::Secret(s)) => {
                let c = match self.warm.secrets.fresh_hit(&s.entry) {
                    Some(c) => c,
                    None => Box::pin(self.secret_value(s)).await.map_err(failed)?,
                };
                ctx.secret = Some(secret_header_of(s, &c).map_err(failed)?)
            }
            _ => {}
        }
        Ok(SocketAddr::new(ip, plan.port))
    }

    /// The slot's token, fetched (single flight) if it has none.
    pub(super) async fn token(&self, slot: &TokenSlot) -> Result<Arc<CachedToken>, GatewayError> {
        slot.get(&self.warm.metrics)
            .await
            .map_err(|error| GatewayError::Credential {
                error,
                configured: self.warm.tokens.is_pinned(&slot.key),
            })
    }

    /// The mapped key's header for this request (the store fetches it if it must).
    pub(super) async fn secret_header(
        &self,
        s: &SecretAuth,
    ) -> Result<(http::HeaderValue, u64), GatewayError> {
        let c = self.secret_value(s).await?;
        secret_header_of(s, &c)
    }

    /// The mapped key's value (the store fetches it if it must).
    async fn secret_value(&self, s: &SecretAuth) -> Result<Arc<Cached>, GatewayError> {
        self.warm.secrets.get(&s.entry).await.map_err(|e| {
            // The store already logged the failure (once per fetch, with back-off): a request
            // that finds it adds only a debug line, so an outage does not flood the log.
            log::debug!("{e}: {}", e.cause);
            GatewayError::Secret(e)
        })
    }
}

/// The header a mapped key's value makes, and the value's version.
fn secret_header_of(s: &SecretAuth, c: &Cached) -> Result<(http::HeaderValue, u64), GatewayError> {
    match s.header(c) {
        Some(h) => Ok((h, c.version)),
        None => Err(GatewayError::SecretNotHeaderSafe(s.entry.slug().clone())),
    }
}
