//! Preparing one request, in the order the arrows point: authenticate the caller, read what the
//! request asks for, grant the virtual key it uses, route, then check the grant's allow-lists
//! (reading the body's model only when some list restricts models) and the secret's workspaces,
//! resolve the upstream and take the credential from its cache. On any error nothing has left
//! keyway.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use pingora::proxy::Session;

use super::{authorize, request_host, Ctx, Gateway};
use crate::auth::gate::Refusal;
use crate::cache::tokens::{CachedToken, TokenSlot};
use crate::error::{ErrorResponse, GatewayError};
use crate::routing::custom_host::ip_is_forbidden;
use crate::routing::{Access, RouteError, SecretAuth, UpstreamAuth};

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
        let caller = rt
            .auth
            .authenticate(&req.headers, SystemTime::now())
            .await
            .map_err(refused)?;
        if let Some(c) = &caller {
            m.auth(Some(c.method), None);
        }
        let route_err = |e: RouteError| ErrorResponse::from(&e);
        let parsed = rt
            .router
            .parse(&req.uri, request_host(req), &req.headers)
            .map_err(route_err)?;
        let named = parsed.virtual_key(&req.headers).map_err(route_err)?;
        let grant = rt.auth.grant(caller, named).map_err(refused)?;
        let access = Access {
            enforced: rt.auth.enforced(),
            virtual_key: grant.virtual_key.map(|v| &*v.id),
            workspace: grant.caller.as_ref().and_then(|c| c.workspace.as_deref()),
        };
        let plan = rt
            .router
            .plan(parsed, &req.uri, &req.headers, access)
            .map_err(route_err)?;
        rt.auth
            .authorize(&grant, plan.provider, None)
            .map_err(refused)?;
        if rt.auth.restricts_models(&grant) {
            let model = authorize::read_model(session).await?;
            rt.auth
                .authorize(&grant, plan.provider, Some(&model))
                .map_err(refused)?;
        }
        let workspace = grant.caller.as_ref().and_then(|c| c.workspace.clone());
        ctx.caller = grant.caller;
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
        if let Some(e) = &plan.secret {
            if !e.allows(workspace.as_deref()) {
                return Err(ErrorResponse::from(&GatewayError::SecretForbidden {
                    slug: e.slug().clone(),
                    workspace,
                }));
            }
        }
        let failed = |e: GatewayError| ErrorResponse::from(&e);
        match &plan.auth {
            Some(UpstreamAuth::Token(slot)) => {
                ctx.token = Some(self.token(slot).await.map_err(failed)?)
            }
            Some(UpstreamAuth::Secret(s)) => {
                ctx.secret = Some(self.secret_header(s).await.map_err(failed)?)
            }
            _ => {}
        }
        ctx.addr = Some(SocketAddr::new(ip, plan.port));
        ctx.plan = Some(plan);
        Ok(())
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
        let c = self.warm.secrets.get(&s.entry).await.map_err(|e| {
            // The store already logged the failure (once per fetch, with back-off): a request
            // that finds it adds only a debug line, so an outage does not flood the log.
            log::debug!("{e}: {}", e.cause);
            GatewayError::Secret(e)
        })?;
        match s.header(&c) {
            Some(h) => Ok((h, c.version)),
            None => Err(GatewayError::SecretNotHeaderSafe(s.entry.slug().clone())),
        }
    }
}
