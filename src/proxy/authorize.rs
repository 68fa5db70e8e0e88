//! Reading the request's `model` for an allow-list: the whole body (Pingora keeps it in its
//! retry buffer and forwards it afterwards), read before anything is sent upstream.

use pingora::proxy::Session;
use serde::Deserialize;

use crate::error::{ErrorResponse, GatewayError, BODY_CHECK_LIMIT};

pub(super) async fn read_model(session: &mut Session) -> Result<String, ErrorResponse> {
    #[derive(Deserialize)]
    struct Body {
        model: Option<String>,
    }
    let fail = |e: GatewayError| ErrorResponse::from(&e);
    session.as_mut().enable_retry_buffering();
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(_) => return Err(fail(GatewayError::BodyUnreadable)),
        }
        if body.len() > BODY_CHECK_LIMIT {
            return Err(fail(GatewayError::BodyTooLarge));
        }
    }
    match serde_json::from_slice::<Body>(&body) {
        Ok(Body { model: Some(m) }) if !m.is_empty() => Ok(m),
        Ok(_) => Err(fail(GatewayError::BodyWithoutModel)),
        Err(_) => Err(fail(GatewayError::BodyNotJson)),
    }
}
