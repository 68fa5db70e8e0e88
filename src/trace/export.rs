//! Span export: the request path hands finished spans to a bounded queue without waiting
//! (a full queue drops the span and counts it); one background task gathers them into batches
//! and POSTs each as an OTLP `ExportTraceServiceRequest` (protobuf, the `opentelemetry-proto`
//! types) to the collector with keyway's HTTP client. A failed batch is counted and dropped:
//! tracing never holds memory or requests back for a collector that is down.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};

use http::{HeaderMap, HeaderValue};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use prost::Message;
use tokio::sync::mpsc;

use super::span::{key_value, SpanRecord, Value};
use crate::config::tracing::TracingSettings;
use crate::metrics::trace::TraceMetrics;

/// The longest wait between two sends once shutdown has begun.
const SHUTDOWN_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

/// The request path's side: sampling decisions and the queue's sending end.
#[derive(Debug)]
pub struct Tracer {
    tx: mpsc::Sender<SpanRecord>,
    /// A new trace is sampled when its id's low 63 bits are below this (`sample_ratio` × 2^63).
    threshold: u64,
    metrics: TraceMetrics,
}

impl Tracer {
    /// The tracer and the exporter that drains its queue (run it with [`Exporter::run`]).
    pub fn new(s: &TracingSettings, metrics: TraceMetrics) -> (Tracer, Exporter) {
        let (tx, rx) = mpsc::channel(s.max_queue);
        let tracer = Tracer {
            tx,
            threshold: (s.sample_ratio * (1u64 << 63) as f64) as u64,
            metrics: metrics.clone(),
        };
        (tracer, Exporter::new(s, rx, metrics))
    }

    /// Whether a trace keyway starts is recorded (the trace id decides, so every service that
    /// samples by ratio on the same id agrees).
    pub fn sample_new(&self, trace_id: &[u8; 16]) -> bool {
        let low = u64::from_be_bytes(trace_id[8..].try_into().expect("8 bytes"));
        (low >> 1) < self.threshold
    }

    /// Queues a finished span; never waits. A full queue drops it (counted).
    pub fn submit(&self, span: SpanRecord) {
        if self.tx.try_send(span).is_err() {
            self.metrics.dropped.inc();
        }
    }
}

/// The background side: batches and sends.
pub struct Exporter {
    rx: mpsc::Receiver<SpanRecord>,
    client: reqwest::Client,
    url: url::Url,
    headers: HeaderMap,
    resource: Resource,
    max_batch: usize,
    delay: std::time::Duration,
    metrics: TraceMetrics,
    /// The last export failed (a failure after a success is logged at warn, the rest at debug).
    failing: AtomicBool,
}

impl Exporter {
    fn new(s: &TracingSettings, rx: mpsc::Receiver<SpanRecord>, metrics: TraceMetrics) -> Self {
        let mut headers = HeaderMap::new();
        for (name, v) in &s.headers {
            if let Ok(mut v) = HeaderValue::from_str(v.expose()) {
                v.set_sensitive(true);
                headers.insert(name.clone(), v);
            }
        }
        let client = reqwest::Client::builder()
            .timeout(s.timeout)
            .build()
            .unwrap_or_default();
        let resource = Resource {
            attributes: vec![
                key_value("service.name", Value::Str(s.service_name.clone().into())),
                key_value(
                    "service.version",
                    Value::Str(env!("CARGO_PKG_VERSION").into()),
                ),
            ],
            ..Resource::default()
        };
        Exporter {
            rx,
            client,
            url: s.endpoint.clone(),
            headers,
            resource,
            max_batch: s.max_batch,
            delay: s.delay,
            metrics,
            failing: AtomicBool::new(false),
        }
    }

    /// Sends batches until every tracer is gone: a batch goes when it is full or
    /// `schedule_delay_ms` after the last send. Once `shutdown` resolves (SIGTERM: the grace
    /// period starts, requests still finish) what is queued goes at once and then at least
    /// every second, until the process ends.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut stopping = false;
        let mut batch = Vec::with_capacity(self.max_batch);
        let mut tick = tokio::time::interval(self.delay);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let room = self.max_batch - batch.len();
            tokio::select! {
                _ = &mut shutdown, if !stopping => {
                    stopping = true;
                    tick = tokio::time::interval(self.delay.min(SHUTDOWN_DELAY));
                }
                n = self.rx.recv_many(&mut batch, room) => {
                    if n == 0 {
                        break;
                    }
                    if batch.len() >= self.max_batch {
                        self.send(std::mem::take(&mut batch)).await;
                        tick.reset();
                    }
                }
                _ = tick.tick() => {
                    if !batch.is_empty() {
                        self.send(std::mem::take(&mut batch)).await;
                    }
                }
            }
        }
        if !batch.is_empty() {
            self.send(batch).await;
        }
    }

    /// What is queued now (tests of the request path).
    #[cfg(test)]
    pub(crate) fn queued(&mut self) -> Vec<SpanRecord> {
        std::iter::from_fn(|| self.rx.try_recv().ok()).collect()
    }

    /// One export request for `spans`.
    async fn send(&self, spans: Vec<SpanRecord>) {
        let n = spans.len() as u64;
        let body = self.encode(spans);
        let sent = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(body)
            .send()
            .await;
        let problem = match sent {
            Ok(r) if r.status().is_success() => None,
            Ok(r) => Some(format!("the collector answered {}", r.status().as_u16())),
            // Without the URL: it is configuration, and the headers are never shown.
            Err(e) => Some(e.without_url().to_string()),
        };
        match problem {
            None => {
                self.metrics.exported.inc_by(n);
                self.failing.store(false, Ordering::Relaxed);
            }
            Some(p) => {
                self.metrics.export_failures.inc();
                self.metrics.dropped.inc_by(n);
                match self.failing.swap(true, Ordering::Relaxed) {
                    false => log::warn!(
                        "trace export failed ({p}); {n} spans dropped, see keyway_trace_export_failures_total"
                    ),
                    true => log::debug!("trace export failed again ({p}); {n} spans dropped"),
                }
            }
        }
    }

    fn encode(&self, spans: Vec<SpanRecord>) -> Vec<u8> {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(self.resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "keyway".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..InstrumentationScope::default()
                    }),
                    spans: spans.into_iter().map(SpanRecord::into_proto).collect(),
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        }
        .encode_to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::from_str;
    use crate::env::Env;

    fn tracer(ratio: &str) -> Tracer {
        tracer_and_metrics(ratio).0
    }

    /// A tracer with a queue of one, its (not running) exporter and its metrics.
    fn tracer_and_metrics(ratio: &str) -> (Tracer, Exporter, TraceMetrics) {
        let c = from_str(
            &format!("[tracing]\notlp_endpoint = \"http://127.0.0.1:9\"\nsample_ratio = {ratio}\nmax_queue_size = 1\nmax_export_batch_size = 1\n"),
            &Env::default(),
        )
        .unwrap();
        let registry = pingora_prometheus::prometheus::Registry::new();
        let m = TraceMetrics::new(&registry).unwrap();
        let (t, e) = Tracer::new(c.tracing.as_ref().unwrap(), m.clone());
        (t, e, m)
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_waiting() {
        let (t, _exporter, m) = tracer_and_metrics("1.0");
        let span = SpanRecord {
            context: crate::trace::context::SpanContext {
                trace_id: [1; 16],
                span_id: [2; 8],
                flags: 1,
            },
            parent: None,
            parent_is_remote: false,
            name: "POST".into(),
            kind: crate::trace::span::Kind::Server,
            start_unix_nano: 1,
            end_unix_nano: 2,
            attributes: Vec::new(),
            error: false,
        };
        t.submit(span.clone());
        t.submit(span.clone());
        t.submit(span);
        assert_eq!(m.dropped.get(), 2, "a queue of one keeps one span");
    }

    #[test]
    fn the_ratio_decides_by_the_trace_id() {
        let mut low = [0u8; 16];
        low[15] = 2;
        let high = [0xff; 16];
        let all = tracer("1.0");
        assert!(all.sample_new(&low) && all.sample_new(&high));
        let none = tracer("0.0");
        assert!(!none.sample_new(&low) && !none.sample_new(&high));
        let half = tracer("0.5");
        assert!(half.sample_new(&low) && !half.sample_new(&high));
    }
}
