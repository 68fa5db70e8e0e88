//! The admin API over HTTP: on its own listener (a Pingora `ServeHttp` app), and on the proxy's
//! listener under the same paths when `[admin] on_proxy_listener` is set. Both read the request
//! the same way (body at most [`MAX_BODY`], 413 beyond) and answer JSON with an
//! `x-portkey-request-id` (the Portkey SDK retries a 5xx only when that header is absent, and
//! an admin write must not be retried behind the caller's back).

use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;

use crate::control::http::{AdminRequest, AdminResponse, ApiError};
use crate::control::{ControlPlane, MAX_BODY};

pub struct AdminApi {
    pub control: Arc<ControlPlane>,
}

/// The request as the control plane takes it, or the refusal of an oversized or unreadable body.
async fn read(session: &mut ServerSession) -> Result<AdminRequest, ApiError> {
    let mut body = BytesMut::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(ApiError::new(
                        413,
                        "body_too_large",
                        format!("the body exceeds {MAX_BODY} bytes"),
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => {
                return Err(ApiError::new(
                    400,
                    "unreadable_body",
                    format!("the body could not be read: {}", e.etype().as_str()),
                ))
            }
        }
    }
    let h = session.req_header();
    Ok(AdminRequest {
        method: h.method.clone(),
        path: h.uri.path().to_owned(),
        query: h.uri.query().map(str::to_owned),
        headers: h.headers.clone(),
        body: body.freeze(),
    })
}

/// Serves one admin request read from `session`.
pub async fn answer(control: &ControlPlane, session: &mut ServerSession) -> (u16, Bytes) {
    let resp = match read(session).await {
        Ok(req) => control.handle(req).await,
        Err(e) => {
            let r = e.response();
            control.metrics.admin_request("other", r.status);
            r
        }
    };
    render(&resp)
}

fn render(resp: &AdminResponse) -> (u16, Bytes) {
    let mut text = serde_json::to_vec(&resp.body).unwrap_or_default();
    text.push(b'\n');
    (resp.status, Bytes::from(text))
}

fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[async_trait]
impl ServeHttp for AdminApi {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let (status, body) = answer(&self.control, session).await;
        Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::CONTENT_LENGTH, body.len())
            .header("x-portkey-request-id", request_id())
            .body(body.to_vec())
            .unwrap_or_default()
    }
}

/// Serves an admin request that arrived on the proxy listener.
pub async fn on_proxy(control: &ControlPlane, session: &mut pingora::proxy::Session) {
    let (status, body) = answer(control, session).await;
    let Ok(mut header) = ResponseHeader::build(status, Some(3)) else {
        return;
    };
    let ok = header
        .insert_header("content-type", "application/json")
        .is_ok()
        && header.insert_header("content-length", body.len()).is_ok()
        && header
            .insert_header("x-portkey-request-id", request_id())
            .is_ok();
    if ok
        && session
            .write_response_header(Box::new(header), false)
            .await
            .is_ok()
    {
        let _ = session.write_response_body(Some(body), true).await;
    }
}
