//! Token usage read from an answer as it passes, chunk by chunk, without holding it back and
//! without keeping it whole.
//!
//! - A stream (`text/event-stream`) is split into lines; only a line split across chunks is
//!   carried over, up to [`MAX_LINE`] bytes (a longer line is skipped to its end: it is content,
//!   not usage). Of a `data:` line holding a `"usage"` object (OpenAI's last chunk with
//!   `stream_options.include_usage`, Anthropic's `message_start` and `message_delta`, the
//!   Responses API's `response.completed`) only that object is parsed, and the event's first
//!   `"model"` read. Later counts replace earlier ones (Anthropic's are running totals).
//! - A JSON answer keeps its first [`HEAD`] bytes (for `model`) and its last [`TAIL`] to
//!   `2 * TAIL` bytes (for `usage`, which OpenAI and Anthropic put at the end); an answer whose
//!   `usage` object is not within the tail counts no tokens rather than costing memory.
//!
//! Anthropic's prompt count is `input_tokens` plus its cache reads and writes, as OpenAI's
//! `prompt_tokens` includes cached tokens.

use std::sync::LazyLock;

use memchr::memmem::Finder;
use serde::Deserialize;

/// Longest stream line carried over from one chunk to the next.
pub const MAX_LINE: usize = 16 * 1024;
/// Bytes kept from the start of a JSON answer.
pub const HEAD: usize = 1024;
/// Bytes kept at least from the end of a JSON answer (at most twice as many).
pub const TAIL: usize = 8 * 1024;
/// Longest model name taken from an answer.
const MAX_MODEL: usize = 128;

static USAGE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"usage\""));
static MODEL: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"model\""));
static CONTENT: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"content\""));
/// The markers of content in a stream event other than OpenAI's `"content"` (built once: a
/// searcher per call cost more than the search, README, Performance).
static CONTENT_MARKS: LazyLock<[Finder<'static>; 3]> = LazyLock::new(|| {
    [
        Finder::new(b"content_block_delta"),
        Finder::new(b"output_text.delta"),
        Finder::new(b"\"tool_calls\""),
    ]
});

/// What the answer's body is, from its response header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Sse,
    Json,
    /// Anything else: not read.
    Other,
}

impl Shape {
    /// From the answer's `content-type` (its `content-encoding` is `decode::Encoding`'s).
    pub fn of(content_type: Option<&[u8]>) -> Shape {
        let ct = content_type.unwrap_or_default();
        let starts = |p: &[u8]| ct.len() >= p.len() && ct[..p.len()].eq_ignore_ascii_case(p);
        match () {
            _ if starts(b"text/event-stream") => Shape::Sse,
            _ if starts(b"application/json") => Shape::Json,
            _ => Shape::Other,
        }
    }
}

/// Token counts; `None` when the answer did not say.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tokens {
    pub prompt: Option<u64>,
    pub completion: Option<u64>,
    pub total: Option<u64>,
}

impl Tokens {
    pub fn known(&self) -> bool {
        self.prompt.is_some() || self.completion.is_some() || self.total.is_some()
    }

    /// The total: as given, else prompt plus completion.
    pub fn total(&self) -> Option<u64> {
        match (self.total, self.prompt, self.completion) {
            (Some(t), _, _) => Some(t),
            (None, None, None) => None,
            (None, p, c) => Some(p.unwrap_or(0) + c.unwrap_or(0)),
        }
    }
}

/// The reader of one answer.
#[derive(Debug)]
pub struct Scanner {
    shape: Shape,
    /// Stream: the start of a line split across chunks. JSON: the first `HEAD` bytes.
    carry: Vec<u8>,
    /// Stream: the current line outgrew `MAX_LINE` and is skipped to its end.
    skipping: bool,
    /// JSON: the last bytes seen (at most `2 * TAIL`, compacted to `TAIL`).
    tail: Vec<u8>,
    content_seen: bool,
    pub tokens: Tokens,
    pub model: Option<String>,
}

#[derive(Deserialize)]
struct Raw {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    total_tokens: Option<u64>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
}

impl Scanner {
    pub fn new(shape: Shape) -> Scanner {
        Scanner {
            shape,
            carry: Vec::new(),
            skipping: false,
            tail: Vec::new(),
            content_seen: false,
            tokens: Tokens::default(),
            model: None,
        }
    }

    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// Reads one chunk. `true` when it holds the stream's first event carrying content (the
    /// moment of the time to first token).
    pub fn feed(&mut self, chunk: &[u8]) -> bool {
        match self.shape {
            Shape::Sse => self.feed_sse(chunk),
            Shape::Json => {
                self.feed_json(chunk);
                false
            }
            Shape::Other => false,
        }
    }

    /// Reads the answer's last chunk, as [`feed`](Self::feed) does. A JSON answer that comes
    /// whole in this chunk (the usual small answer) is read where it is, without keeping a
    /// copy of its head and tail: the same bytes are read as `feed` then `finish` would.
    pub fn feed_last(&mut self, chunk: &[u8]) -> bool {
        if self.shape == Shape::Json && self.carry.is_empty() && self.tail.is_empty() {
            let head = &chunk[..chunk.len().min(HEAD)];
            let tail = &chunk[chunk.len().saturating_sub(TAIL)..];
            self.read_json(head, tail);
            return false;
        }
        self.feed(chunk)
    }

    /// The answer ended: a JSON answer is read now, a stream's last line if it had no `\n`.
    pub fn finish(&mut self) {
        if self.shape == Shape::Sse && !self.carry.is_empty() && !self.skipping {
            let line = std::mem::take(&mut self.carry);
            self.line(&line);
        }
        if self.shape == Shape::Json {
            let (head, tail) = (
                std::mem::take(&mut self.carry),
                std::mem::take(&mut self.tail),
            );
            self.read_json(&head, &tail);
        }
    }

    /// A JSON answer's `usage` from its tail and, unless already known, `model` from its head.
    fn read_json(&mut self, head: &[u8], tail: &[u8]) {
        self.take(usage_object(tail), head);
    }

    /// Counts a `usage` object (only it is parsed: the rest of the answer or event is never
    /// deserialized) and, unless already known, takes the first `model` in `around`.
    fn take(&mut self, usage: Option<&[u8]>, around: &[u8]) {
        if let Some(u) = usage.and_then(|s| serde_json::from_slice::<Raw>(s).ok()) {
            self.merge(&u);
        }
        if self.model.is_none() {
            self.model = model_in(around).map(str::to_owned);
        }
    }

    fn feed_json(&mut self, chunk: &[u8]) {
        if self.carry.len() < HEAD {
            let n = (HEAD - self.carry.len()).min(chunk.len());
            self.carry.extend_from_slice(&chunk[..n]);
        }
        let chunk = &chunk[chunk.len().saturating_sub(TAIL)..];
        if self.tail.len() + chunk.len() > 2 * TAIL {
            let keep = TAIL.saturating_sub(chunk.len());
            self.tail
                .drain(..self.tail.len() - keep.min(self.tail.len()));
        }
        self.tail.extend_from_slice(chunk);
    }

    fn feed_sse(&mut self, mut data: &[u8]) -> bool {
        let mut first = false;
        while let Some(i) = memchr::memchr(b'\n', data) {
            let piece = &data[..i];
            data = &data[i + 1..];
            if self.skipping {
                self.skipping = false;
                continue;
            }
            if self.carry.is_empty() {
                first |= self.line(piece);
            } else if self.carry.len() + piece.len() > MAX_LINE {
                self.carry.clear();
            } else {
                let mut line = std::mem::take(&mut self.carry);
                line.extend_from_slice(piece);
                first |= self.line(&line);
                line.clear();
                self.carry = line;
            }
        }
        if !data.is_empty() && !self.skipping {
            if self.carry.len() + data.len() > MAX_LINE {
                self.carry.clear();
                self.skipping = true;
            } else {
                self.carry.extend_from_slice(data);
            }
        }
        first
    }

    /// One stream line (without its `\n`): `true` when it is the first carrying content.
    fn line(&mut self, line: &[u8]) -> bool {
        let Some(payload) = line.strip_prefix(b"data:") else {
            return false;
        };
        let payload = payload.trim_ascii();
        let first = !self.content_seen && carries_content(payload);
        self.content_seen |= first;
        if let Some(usage) = usage_object(payload) {
            self.take(Some(usage), payload);
        }
        first
    }

    fn merge(&mut self, u: &Raw) {
        let t = &mut self.tokens;
        if let Some(p) = u.prompt_tokens {
            t.prompt = Some(p);
        }
        if let Some(i) = u.input_tokens {
            let cached =
                u.cache_creation_input_tokens.unwrap_or(0) + u.cache_read_input_tokens.unwrap_or(0);
            t.prompt = Some(i + cached);
        }
        if let Some(c) = u.completion_tokens.or(u.output_tokens) {
            t.completion = Some(c);
        }
        if let Some(total) = u.total_tokens {
            t.total = Some(total);
        }
    }
}

/// Whether a stream event carries generated content: an OpenAI delta with non-empty `content`
/// or `tool_calls`, an Anthropic `content_block_delta`, a Responses API text delta.
fn carries_content(payload: &[u8]) -> bool {
    if CONTENT_MARKS.iter().any(|f| f.find(payload).is_some()) {
        return true;
    }
    CONTENT.find_iter(payload).any(|i| {
        let rest = after_colon(&payload[i + b"\"content\"".len()..]);
        rest.len() >= 2 && rest[0] == b'"' && rest[1] != b'"'
    })
}

/// What follows `: ` after a key, or an empty slice when no colon does.
fn after_colon(s: &[u8]) -> &[u8] {
    match s.trim_ascii_start().strip_prefix(b":") {
        Some(rest) => rest.trim_ascii_start(),
        None => &[],
    }
}

/// The last `"usage": {...}` object in `s` (not one inside a string), whole.
fn usage_object(s: &[u8]) -> Option<&[u8]> {
    let mut found = None;
    for i in USAGE.find_iter(s) {
        if i > 0 && s[i - 1] == b'\\' {
            continue;
        }
        let rest = after_colon(&s[i + b"\"usage\"".len()..]);
        if rest.first() == Some(&b'{') {
            found = Some(rest);
        }
    }
    let obj = found?;
    object_len(obj).map(|n| &obj[..n])
}

/// The length of the JSON object `s` starts with; `None` when it does not end within `s`.
fn object_len(s: &[u8]) -> Option<usize> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, &b) in s.iter().enumerate() {
        match (in_string, b) {
            (true, _) if escaped => escaped = false,
            (true, b'\\') => escaped = true,
            (true, b'"') => in_string = false,
            (true, _) => {}
            (false, b'"') => in_string = true,
            (false, b'{') => depth += 1,
            (false, b'}') => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// The first `"model": "..."` value in `s`, when it has no escapes and fits [`MAX_MODEL`].
fn model_in(s: &[u8]) -> Option<&str> {
    let i = MODEL.find(s)?;
    let rest = after_colon(&s[i + b"\"model\"".len()..]).strip_prefix(b"\"")?;
    let end = memchr::memchr2(b'"', b'\\', rest)?;
    if rest[end] != b'"' || end > MAX_MODEL {
        return None;
    }
    std::str::from_utf8(&rest[..end]).ok()
}

#[cfg(test)]
#[path = "usage_tests.rs"]
mod tests;
