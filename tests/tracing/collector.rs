//! A fake OTLP/HTTP collector: `/v1/traces` on 127.0.0.1, decoding each export request as an
//! `ExportTraceServiceRequest` (the `opentelemetry-proto` types) and answering a fixed status.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tokio::net::TcpListener;

/// One export request as the collector received it.
#[derive(Clone)]
pub struct Export {
    pub content_type: Option<String>,
    pub auth: Option<String>,
    pub request: ExportTraceServiceRequest,
}

/// A fake OTLP/HTTP collector on `/v1/traces` answering `status`.
pub struct Collector {
    port: u16,
    got: Arc<Mutex<Vec<Export>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Collector {
    pub async fn start(status: u16) -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let g = g.clone();
                tokio::spawn(async move {
                    let svc =
                        hyper::service::service_fn(move |req| receive(req, g.clone(), status));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Collector { port, got, task }
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn exports(&self) -> Vec<Export> {
        self.got.lock().unwrap().clone()
    }

    pub fn spans(&self) -> Vec<Span> {
        let mut out = Vec::new();
        for e in self.exports() {
            for rs in e.request.resource_spans {
                for ss in rs.scope_spans {
                    out.extend(ss.spans);
                }
            }
        }
        out
    }

    /// The spans of trace `trace` (hex), once there are `n` (bounded wait).
    pub async fn wait_spans(&self, trace: &str, n: usize) -> Vec<Span> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let spans: Vec<Span> = self
                .spans()
                .into_iter()
                .filter(|s| hex::encode(&s.trace_id) == trace)
                .collect();
            if spans.len() >= n {
                assert_eq!(spans.len(), n, "more spans than expected: {spans:?}");
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "the collector got {} of {n} spans of trace {trace}",
                spans.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(
    req: Request<Incoming>,
    got: Arc<Mutex<Vec<Export>>>,
    status: u16,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let header = |n: &str| req.headers().get(n).map(|v| v.to_str().unwrap().to_owned());
    let (content_type, auth) = (header("content-type"), header("x-collector-key"));
    let path = req.uri().path().to_owned();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(path, "/v1/traces");
    let request = ExportTraceServiceRequest::decode(body).expect("an ExportTraceServiceRequest");
    got.lock().unwrap().push(Export {
        content_type,
        auth,
        request,
    });
    let answer = ExportTraceServiceResponse::default().encode_to_vec();
    Ok(Response::builder()
        .status(status)
        .header("content-type", "application/x-protobuf")
        .body(Full::new(Bytes::from(answer)))
        .unwrap())
}
