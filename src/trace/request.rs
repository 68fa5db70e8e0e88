//! One request's trace: the SERVER span keyway opens when the request arrives (child of the
//! client's `traceparent` when it sent a valid one, a new trace otherwise) and a CLIENT span per
//! upstream attempt, whose id is the parent named in the `traceparent` sent upstream. Spans are
//! built and queued when the request ends; an unsampled request only carries ids.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http::HeaderValue;

use super::context::{self, SpanContext, SAMPLED};
use super::export::Tracer;
use super::span::{self, GenAi, Kind, SpanRecord};
use crate::vocab::Provider;

/// The request as it arrived.
#[derive(Debug, Clone, Copy)]
pub struct Arrival<'a> {
    pub method: &'a http::Method,
    pub path: &'a str,
    /// `Host` without its port.
    pub host: Option<&'a str>,
    /// It came over TLS.
    pub tls: bool,
}

/// What the SERVER span says about the request (kept only when it is sampled).
#[derive(Debug)]
struct Arrived {
    method: &'static str,
    path: String,
    host: Option<String>,
    tls: bool,
}

/// One attempt to the upstream.
#[derive(Debug)]
struct Attempt {
    span_id: [u8; 8],
    start: u64,
    end: Option<u64>,
    provider: Provider,
    host: Arc<str>,
    port: u16,
    tls: bool,
    status: Option<u16>,
}

/// Where the upstream attempt goes.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub provider: Provider,
    pub host: Arc<str>,
    pub port: u16,
    pub tls: bool,
}

#[derive(Debug)]
pub struct RequestTrace {
    tracer: Arc<Tracer>,
    /// The SERVER span's ids and the trace's flags.
    server: SpanContext,
    /// The client's span, when its `traceparent` was valid.
    parent: Option<[u8; 8]>,
    start_unix_nano: u64,
    started: Instant,
    arrival: Option<Arrived>,
    attempts: Vec<Attempt>,
}

impl RequestTrace {
    /// Starts the request's trace from its `traceparent` (ignored when invalid).
    pub fn begin(tracer: &Arc<Tracer>, traceparent: Option<&[u8]>, a: Arrival) -> RequestTrace {
        let (trace_id, parent, sampled) = match traceparent.and_then(context::parse) {
            Some(p) => (p.trace_id, Some(p.span_id), p.sampled()),
            None => {
                let id = context::new_trace_id();
                (id, None, tracer.sample_new(&id))
            }
        };
        let arrival = sampled.then(|| Arrived {
            method: method_name(a.method),
            path: a.path.to_owned(),
            host: a.host.map(str::to_owned),
            tls: a.tls,
        });
        RequestTrace {
            tracer: tracer.clone(),
            server: SpanContext {
                trace_id,
                span_id: context::new_span_id(),
                flags: if sampled { SAMPLED } else { 0 },
            },
            parent,
            start_unix_nano: unix_nanos(),
            started: Instant::now(),
            arrival,
            attempts: Vec::new(),
        }
    }

    /// Whether this request's spans are recorded.
    pub fn sampled(&self) -> bool {
        self.arrival.is_some()
    }

    /// An attempt leaves for `to`: the previous one (if any) has ended. Returns the
    /// `traceparent` to send, naming this attempt's CLIENT span as the parent.
    pub fn upstream(&mut self, to: Upstream) -> HeaderValue {
        let now = self.now();
        if let Some(last) = self.attempts.last_mut() {
            last.end.get_or_insert(now);
        }
        let span_id = context::new_span_id();
        if self.arrival.is_some() && self.attempts.len() < MAX_ATTEMPT_SPANS {
            self.attempts.push(Attempt {
                span_id,
                start: now,
                end: None,
                provider: to.provider,
                host: to.host,
                port: to.port,
                tls: to.tls,
                status: None,
            });
        }
        SpanContext {
            span_id,
            ..self.server
        }
        .to_header()
    }

    /// The current attempt's answer arrived with `status`.
    pub fn upstream_status(&mut self, status: u16) {
        if let Some(last) = self.attempts.last_mut() {
            last.status = Some(status);
        }
    }

    /// Ends the request: queues its spans when it is sampled. `status` is what the client got
    /// (0: no answer), `provider` the one that served it, `g` the model call's details.
    pub fn finish(self, status: u16, provider: Option<Provider>, g: &GenAi) {
        let Some(a) = &self.arrival else {
            return;
        };
        let end = self.now();
        let op = span::operation(&a.path);
        let last = self.attempts.len().saturating_sub(1);
        for (i, at) in self.attempts.iter().enumerate() {
            // The answer's model and usage belong to the attempt that produced it.
            let g = match i == last {
                true => Cow::Borrowed(g),
                false => Cow::Owned(GenAi {
                    request_model: g.request_model.clone(),
                    ..GenAi::default()
                }),
            };
            self.tracer.submit(self.client_span(at, a, op, &g, end));
        }
        let mut s = self.record(self.server, self.parent, a.method.into(), Kind::Server, end);
        s.parent_is_remote = self.parent.is_some();
        s.str("http.request.method", a.method);
        s.str("url.path", a.path.clone());
        s.str("url.scheme", if a.tls { "https" } else { "http" });
        if let Some(h) = &a.host {
            s.str("server.address", h.clone());
        }
        http_outcome(&mut s, status);
        s.gen_ai(op, provider, g);
        self.tracer.submit(s);
    }

    fn client_span(
        &self,
        at: &Attempt,
        a: &Arrived,
        op: Option<&'static str>,
        g: &GenAi,
        end: u64,
    ) -> SpanRecord {
        let name: Cow<'static, str> = match (op, &g.request_model) {
            (Some(op), Some(m)) => format!("{op} {m}").into(),
            (Some(op), None) => op.into(),
            (None, _) => a.method.into(),
        };
        let ctx = SpanContext {
            span_id: at.span_id,
            ..self.server
        };
        let mut s = self.record(ctx, Some(self.server.span_id), name, Kind::Client, end);
        s.start_unix_nano = at.start;
        s.end_unix_nano = at.end.unwrap_or(end);
        s.str("http.request.method", a.method);
        s.str("server.address", at.host.to_string());
        s.int("server.port", i64::from(at.port));
        s.str("url.scheme", if at.tls { "https" } else { "http" });
        http_outcome(&mut s, at.status.unwrap_or(0));
        s.gen_ai(op, Some(at.provider), g);
        s
    }

    fn record(
        &self,
        context: SpanContext,
        parent: Option<[u8; 8]>,
        name: Cow<'static, str>,
        kind: Kind,
        end: u64,
    ) -> SpanRecord {
        SpanRecord {
            context,
            parent,
            parent_is_remote: false,
            name,
            kind,
            start_unix_nano: self.start_unix_nano,
            end_unix_nano: end,
            attributes: Vec::with_capacity(16),
            error: false,
        }
    }

    fn now(&self) -> u64 {
        self.start_unix_nano + self.started.elapsed().as_nanos() as u64
    }
}

/// A request walks at most `max_attempts` (16) attempts plus a 401 retry each; more spans
/// than this are not kept.
const MAX_ATTEMPT_SPANS: usize = 32;

/// `http.response.status_code`; for no answer, or an error status (5xx for the server span,
/// 4xx too for a client span), `error.type` and an error status.
fn http_outcome(s: &mut SpanRecord, status: u16) {
    if status == 0 {
        s.str("error.type", "_OTHER");
        s.error = true;
        return;
    }
    s.int("http.response.status_code", i64::from(status));
    let first_error = match s.kind {
        Kind::Server => 500,
        Kind::Client => 400,
    };
    if status >= first_error {
        s.str("error.type", status.to_string());
        s.error = true;
    }
}

/// The method as the semantic conventions name it: the standard ones, else `_OTHER`.
fn method_name(m: &http::Method) -> &'static str {
    use http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::from_str;
    use crate::env::Env;
    use crate::metrics::trace::TraceMetrics;
    use crate::trace::Exporter;

    fn tracer() -> (Arc<Tracer>, Exporter) {
        let c = from_str(
            "[tracing]\notlp_endpoint = \"http://127.0.0.1:9\"\n",
            &Env::default(),
        )
        .unwrap();
        let m = TraceMetrics::new(&pingora_prometheus::prometheus::Registry::new()).unwrap();
        let (t, e) = Tracer::new(c.tracing.as_ref().unwrap(), m);
        (Arc::new(t), e)
    }

    fn arrival(m: &http::Method) -> Arrival<'_> {
        Arrival {
            method: m,
            path: "/v1/chat/completions",
            host: Some("gw.example"),
            tls: true,
        }
    }

    fn to() -> Upstream {
        Upstream {
            provider: Provider::OpenAi,
            host: "api.openai.com".into(),
            port: 443,
            tls: true,
        }
    }

    #[test]
    fn attempts_are_children_of_the_server_span_and_the_parents_sent_upstream() {
        let (t, mut e) = tracer();
        let tp = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let mut r = RequestTrace::begin(&t, Some(tp), arrival(&http::Method::POST));
        let first = context::parse(r.upstream(to()).as_bytes()).unwrap();
        r.upstream_status(503);
        let second = context::parse(r.upstream(to()).as_bytes()).unwrap();
        r.upstream_status(200);
        let g = GenAi {
            request_model: Some("gpt-4o".into()),
            output_tokens: Some(7),
            ..GenAi::default()
        };
        r.finish(200, Some(Provider::OpenAi), &g);
        let spans = e.queued();
        assert_eq!(spans.len(), 3);
        let (c1, c2, server) = (&spans[0], &spans[1], &spans[2]);
        assert_eq!(server.kind, Kind::Server);
        assert_eq!(server.parent, Some(*b"\xb7\xad\x6b\x71\x69\x20\x33\x31"));
        assert!(server.parent_is_remote);
        for (c, sent) in [(c1, first), (c2, second)] {
            assert_eq!(c.kind, Kind::Client);
            assert_eq!(c.parent, Some(server.context.span_id));
            assert_eq!(c.context.span_id, sent.span_id);
            assert_eq!(sent.trace_id, server.context.trace_id);
            assert!(sent.sampled());
            assert_eq!(c.name, "chat gpt-4o");
        }
        assert!(c1.error && !c2.error && !server.error);
        assert_eq!(c1.end_unix_nano, c2.start_unix_nano);
        let tokens = |s: &SpanRecord| {
            s.attributes
                .iter()
                .any(|(k, v)| *k == "gen_ai.usage.output_tokens" && *v == span::Value::Int(7))
        };
        assert!(!tokens(c1) && tokens(c2) && tokens(server));
    }

    #[test]
    fn an_unsampled_request_carries_ids_and_queues_nothing() {
        let (t, mut e) = tracer();
        let tp = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
        let mut r = RequestTrace::begin(&t, Some(tp), arrival(&http::Method::POST));
        assert!(!r.sampled());
        let sent = context::parse(r.upstream(to()).as_bytes()).unwrap();
        assert!(!sent.sampled());
        assert_eq!(
            hex::encode(sent.trace_id),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_ne!(hex::encode(sent.span_id), "b7ad6b7169203331");
        r.finish(200, None, &GenAi::default());
        assert!(e.queued().is_empty());
    }
}
