//! Issue 14, items 3 and 4, end to end: the access log (`access_log.rs`: every field of a line
//! checked, no secret of the run in it, request ids, sampling and off) and the token metrics
//! read from plain and streamed answers of the OpenAI and Anthropic shapes, with the stream
//! still passing chunk by chunk (`usage.rs`), and from compressed answers passed on unchanged
//! (`compressed.rs`); the log file reopened on `SIGHUP` after logrotate renamed it
//! (`rotate.rs`).

#[path = "../common/mod.rs"]
mod common;

mod access_log;
mod compressed;
mod rotate;
mod usage;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BODY: &str =
    r#"{"model":"gpt-4o","messages":[{"role":"user","content":"request-body-marker"}]}"#;

pub const OPENAI_JSON: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"answer-body-marker"},"finish_reason":"stop"}],"usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18}}"#;

pub const ANTHROPIC_JSON: &str = r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","usage":{"input_tokens":20,"cache_read_input_tokens":5,"output_tokens":9}}"#;

/// OpenAI's stream with `include_usage`: content first, usage on the last chunk.
pub const OPENAI_FIRST: &str = "data: {\"id\":\"c\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"}}],\"usage\":null}\n\n";
pub const OPENAI_REST: [&str; 3] = [
    "data: {\"id\":\"c\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"delta\":{\"content\":\"lo\"}}],\"usage\":null}\n\n",
    "data: {\"id\":\"c\",\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":13,\"completion_tokens\":2,\"total_tokens\":15}}\n\n",
    "data: [DONE]\n\n",
];

/// Anthropic's stream: input tokens in `message_start`, output in `message_delta`.
pub const ANTHROPIC_FIRST: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"claude-x\",\"content\":[],\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n";
pub const ANTHROPIC_REST: [&str; 2] = [
    "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":15}}\n\n",
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
];

pub fn log_path(name: &str) -> PathBuf {
    let p = common::log_dir().join(format!("access-{name}-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

/// Waits (bounded) until the log at `path` has `n` lines, and returns them parsed.
pub async fn lines(path: &Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let got: Vec<&str> = text.lines().collect();
        if got.len() >= n || Instant::now() > deadline {
            assert_eq!(got.len(), n, "access log lines: {text}");
            return got
                .iter()
                .map(|l| serde_json::from_str(l).expect("a line is JSON"))
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn field_names(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

pub fn is_ms(v: &Value) -> bool {
    v.as_f64().is_some_and(|f| f >= 0.0)
}
