//! Who may do what, in the enforced posture: authenticate the caller (gateway key or JWT), then
//! check the provider and — only when some allow-list restricts models — the request's `model`,
//! read from the body before anything is sent upstream.

use std::time::SystemTime;

use pingora::proxy::Session;
use serde::Deserialize;

use super::Gateway;
use crate::auth::{AuthError, Caller};
use crate::error::ErrorResponse;
use crate::routing::Plan;

/// Pingora replays a request body it buffered for retries up to this size; a body read to check
/// its model must fit, or it could not be forwarded.
const MODEL_CHECK_LIMIT: usize = 64 * 1024;

impl Gateway {
    pub(super) async fn authenticate(
        &self,
        session: &Session,
    ) -> Result<Option<Caller>, ErrorResponse> {
        match self
            .auth
            .authenticate(&session.req_header().headers, SystemTime::now())
            .await
        {
            Ok(Some(c)) => {
                self.metrics.auth(Some(c.method), None);
                Ok(Some(c))
            }
            Ok(None) => Ok(None),
            // Counted under the method that presented the refused credential.
            Err(r) => {
                self.metrics.auth(r.method, Some(r.error.outcome_kind()));
                Err(ErrorResponse::from(&r.error))
            }
        }
    }

    pub(super) async fn authorize(
        &self,
        session: &mut Session,
        caller: &Caller,
        plan: &Plan,
    ) -> Result<(), ErrorResponse> {
        let provider = plan.provider.as_str();
        let denied = |e: AuthError| {
            self.metrics
                .auth(Some(caller.method), Some(e.outcome_kind()));
            ErrorResponse::from(&e)
        };
        let a = &self.auth;
        a.workspaces
            .authorize(caller, provider, None)
            .map_err(denied)?;
        let vk = plan
            .virtual_key
            .as_deref()
            .and_then(|id| a.virtual_keys.get(id));
        let restricted = caller.allowed_models.is_some()
            || vk.is_some_and(|v| v.allowed_models.is_some())
            || a.workspaces
                .get(&caller.workspace)
                .is_some_and(|w| w.allowed_models.is_some());
        if !restricted {
            return Ok(());
        }
        let model = read_model(session).await?;
        a.workspaces
            .authorize(caller, provider, Some(&model))
            .map_err(denied)?;
        if let Some(v) = vk {
            v.authorize_model(Some(&model)).map_err(denied)?;
        }
        Ok(())
    }
}

/// Reads the whole body (Pingora keeps it in its retry buffer and forwards it afterwards) and
/// returns its `model`.
async fn read_model(session: &mut Session) -> Result<String, ErrorResponse> {
    #[derive(Deserialize)]
    struct Body {
        model: Option<String>,
    }
    session.as_mut().enable_retry_buffering();
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(_) => {
                return Err(ErrorResponse::new(
                    400,
                    "the request body could not be read",
                ))
            }
        }
        if body.len() > MODEL_CHECK_LIMIT {
            return Err(ErrorResponse::new(
                413,
                "the request body is over 64 KiB: too large to check its model against the allow-list",
            ));
        }
    }
    match serde_json::from_slice::<Body>(&body) {
        Ok(Body { model: Some(m) }) if !m.is_empty() => Ok(m),
        Ok(_) => Err(ErrorResponse::new(
            400,
            "the request body names no model, and this caller may use only some models",
        )),
        Err(_) => Err(ErrorResponse::new(
            400,
            "the request body is not JSON, and this caller may use only some models",
        )),
    }
}
