//! A finished span as keyway records it, its attributes (HTTP and GenAI semantic conventions)
//! and its OTLP form. Attributes carry methods, paths, hosts, models, statuses and token counts
//! only: never a header value, a query string or a body.

use std::borrow::Cow;

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode, Span, Status};

use super::context::SpanContext;
use crate::vocab::Provider;

/// What a request tells about the model call: the request's model, the answer's model and the
/// usage the answer reported. Empty fields are left out of the span.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GenAi {
    pub request_model: Option<String>,
    pub response_model: Option<String>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
}

/// An attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(Cow<'static, str>),
    Int(i64),
}

/// Whether keyway received the request (`Server`) or sent it upstream (`Client`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Server,
    Client,
}

/// A finished span, ready to export.
#[derive(Debug, Clone)]
pub struct SpanRecord {
    /// The span's own ids and flags.
    pub context: SpanContext,
    /// The parent span: the client's (remote) for the server span, the server span for a
    /// client span.
    pub parent: Option<[u8; 8]>,
    pub parent_is_remote: bool,
    pub name: Cow<'static, str>,
    pub kind: Kind,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub attributes: Vec<(&'static str, Value)>,
    pub error: bool,
}

impl SpanRecord {
    pub fn str(&mut self, key: &'static str, v: impl Into<Cow<'static, str>>) {
        self.attributes.push((key, Value::Str(v.into())));
    }

    pub fn int(&mut self, key: &'static str, v: i64) {
        self.attributes.push((key, Value::Int(v)));
    }

    /// The `gen_ai.*` attributes of `op` against `provider` with `g`'s models and usage.
    pub fn gen_ai(&mut self, op: Option<&'static str>, provider: Option<Provider>, g: &GenAi) {
        if let Some(op) = op {
            self.str("gen_ai.operation.name", op);
        }
        if let Some(p) = provider {
            self.str("gen_ai.provider.name", provider_name(p));
        }
        if let Some(m) = &g.request_model {
            self.str("gen_ai.request.model", m.clone());
        }
        if let Some(m) = &g.response_model {
            self.str("gen_ai.response.model", m.clone());
        }
        if let Some(n) = g.input_tokens {
            self.int("gen_ai.usage.input_tokens", n.min(i64::MAX as u64) as i64);
        }
        if let Some(n) = g.output_tokens {
            self.int("gen_ai.usage.output_tokens", n.min(i64::MAX as u64) as i64);
        }
    }

    /// The OTLP span.
    pub fn into_proto(self) -> Span {
        // Bits 8 and 9: whether the parent is known to be remote, and whether it is.
        let remote = match (self.parent, self.parent_is_remote) {
            (Some(_), true) => 0x300,
            _ => 0x100,
        };
        Span {
            trace_id: self.context.trace_id.to_vec(),
            span_id: self.context.span_id.to_vec(),
            parent_span_id: self.parent.map_or_else(Vec::new, |p| p.to_vec()),
            flags: u32::from(self.context.flags) | remote,
            name: self.name.into_owned(),
            kind: match self.kind {
                Kind::Server => SpanKind::Server,
                Kind::Client => SpanKind::Client,
            } as i32,
            start_time_unix_nano: self.start_unix_nano,
            end_time_unix_nano: self.end_unix_nano.max(self.start_unix_nano),
            attributes: self
                .attributes
                .into_iter()
                .map(|(k, v)| key_value(k, v))
                .collect(),
            status: self.error.then(|| Status {
                message: String::new(),
                code: StatusCode::Error as i32,
            }),
            ..Span::default()
        }
    }
}

pub(crate) fn key_value(key: &str, v: Value) -> KeyValue {
    let value = match v {
        Value::Str(s) => any_value::Value::StringValue(s.into_owned()),
        Value::Int(i) => any_value::Value::IntValue(i),
    };
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

/// `gen_ai.provider.name`: the semantic conventions' well-known value where there is one,
/// keyway's provider slug otherwise.
pub fn provider_name(p: Provider) -> &'static str {
    match p {
        Provider::OpenAi => "openai",
        Provider::Anthropic => "anthropic",
        Provider::AzureOpenAi => "azure.ai.openai",
        Provider::AzureAi => "azure.ai.inference",
        Provider::Google => "gcp.gemini",
        Provider::Bedrock => "aws.bedrock",
        Provider::Cohere => "cohere",
        Provider::Mistral => "mistral_ai",
        Provider::Groq => "groq",
        Provider::Perplexity => "perplexity",
        Provider::DeepSeek => "deepseek",
        other => other.as_str(),
    }
}

/// `gen_ai.operation.name` from the request path's last segments; `None` for paths that are not
/// a model call keyway knows.
pub fn operation(path: &str) -> Option<&'static str> {
    let path = path.trim_end_matches('/');
    let chat = ["/chat/completions", "/messages", "/responses"];
    if chat.iter().any(|s| path.ends_with(s)) {
        Some("chat")
    } else if path.ends_with("/completions") {
        Some("text_completion")
    } else if path.ends_with("/embeddings") {
        Some("embeddings")
    } else {
        None
    }
}

/// Reads the request body's top-level `model` (JSON); `None` when there is none.
pub fn request_model(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Body {
        model: Option<String>,
    }
    serde_json::from_slice::<Body>(body)
        .ok()?
        .model
        .filter(|m| !m.is_empty() && m.len() <= 256)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> SpanRecord {
        SpanRecord {
            context: SpanContext {
                trace_id: [1; 16],
                span_id: [2; 8],
                flags: 1,
            },
            parent: Some([3; 8]),
            parent_is_remote: true,
            name: "POST".into(),
            kind: Kind::Server,
            start_unix_nano: 10,
            end_unix_nano: 20,
            attributes: Vec::new(),
            error: false,
        }
    }

    fn attr<'a>(s: &'a Span, key: &str) -> Option<&'a any_value::Value> {
        s.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    }

    #[test]
    fn gen_ai_attributes_carry_the_semantic_convention_names() {
        let mut r = record();
        let g = GenAi {
            request_model: Some("gpt-4o".into()),
            response_model: Some("gpt-4o-2024-08-06".into()),
            input_tokens: Some(12),
            output_tokens: Some(34),
        };
        r.gen_ai(Some("chat"), Some(Provider::AzureOpenAi), &g);
        let s = r.into_proto();
        let string = |v: &str| Some(any_value::Value::StringValue(v.into()));
        assert_eq!(attr(&s, "gen_ai.operation.name").cloned(), string("chat"));
        assert_eq!(
            attr(&s, "gen_ai.provider.name").cloned(),
            string("azure.ai.openai")
        );
        assert_eq!(attr(&s, "gen_ai.request.model").cloned(), string("gpt-4o"));
        assert_eq!(
            attr(&s, "gen_ai.response.model").cloned(),
            string("gpt-4o-2024-08-06")
        );
        assert_eq!(
            attr(&s, "gen_ai.usage.input_tokens"),
            Some(&any_value::Value::IntValue(12))
        );
        assert_eq!(
            attr(&s, "gen_ai.usage.output_tokens"),
            Some(&any_value::Value::IntValue(34))
        );
        assert_eq!(s.kind, SpanKind::Server as i32);
        assert_eq!(s.parent_span_id, vec![3; 8]);
        assert_eq!(s.flags, 0x301);
        assert_eq!(s.status, None);
    }

    #[test]
    fn absent_gen_ai_fields_are_left_out() {
        let mut r = record();
        r.gen_ai(None, None, &GenAi::default());
        assert!(r.into_proto().attributes.is_empty());
    }

    #[test]
    fn operations_come_from_the_path() {
        assert_eq!(operation("/v1/chat/completions"), Some("chat"));
        assert_eq!(operation("/v1/completions"), Some("text_completion"));
        assert_eq!(operation("/v1/embeddings"), Some("embeddings"));
        assert_eq!(operation("/v1/messages"), Some("chat"));
        assert_eq!(operation("/v1/models"), None);
    }

    #[test]
    fn the_request_model_is_read_from_json_only() {
        assert_eq!(
            request_model(br#"{"messages":[],"model":"gpt-4o"}"#).as_deref(),
            Some("gpt-4o")
        );
        assert_eq!(request_model(b"not json"), None);
        assert_eq!(request_model(br#"{"model":""}"#), None);
    }
}
