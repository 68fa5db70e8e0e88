//! Reading the request's `model` for an allow-list, from the body kept before anything is sent
//! upstream (`body::keep`).

use bytes::Bytes;
use serde::Deserialize;

use crate::error::{ErrorResponse, GatewayError};

pub(super) fn model_of(body: Option<&Bytes>) -> Result<String, ErrorResponse> {
    #[derive(Deserialize)]
    struct Body {
        model: Option<String>,
    }
    let fail = |e: GatewayError| ErrorResponse::from(&e);
    let body = body.ok_or_else(|| fail(GatewayError::BodyTooLarge))?;
    match serde_json::from_slice::<Body>(body) {
        Ok(Body { model: Some(m) }) if !m.is_empty() => Ok(m),
        Ok(_) => Err(fail(GatewayError::BodyWithoutModel)),
        Err(_) => Err(fail(GatewayError::BodyNotJson)),
    }
}
