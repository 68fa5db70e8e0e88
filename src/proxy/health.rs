//! The metrics listener: `/metrics` (Prometheus text, served by pingora-prometheus), `/healthz`
//! (the process answers) and `/readyz` (start-up work is done and traffic is accepted).

use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use pingora_prometheus::PrometheusHttpApp;

pub struct HealthApp {
    pub ready: Arc<crate::refresh::readiness::Readiness>,
}

fn text(status: u16, body: &str) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "text/plain")
        .header(http::header::CONTENT_LENGTH, body.len())
        .body(body.as_bytes().to_vec())
        .expect("static response parts are valid")
}

#[async_trait]
impl ServeHttp for HealthApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        match session.req_header().uri.path() {
            "/metrics" => PrometheusHttpApp.response(session).await,
            "/healthz" => text(200, "ok\n"),
            "/readyz" => {
                let status = if self.ready.is_ready() { 200 } else { 503 };
                text(status, &self.ready.body())
            }
            _ => text(404, "not found: /metrics, /healthz, /readyz\n"),
        }
    }
}
