use super::*;

fn tokens(p: u64, c: u64, t: Option<u64>) -> Tokens {
    Tokens {
        prompt: Some(p),
        completion: Some(c),
        total: t,
    }
}

/// Feeds `body` in chunks of `size` bytes, the last as the answer's last (as the proxy does);
/// the index of the chunk that held the first content.
fn feed_in(s: &mut Scanner, body: &[u8], size: usize) -> Option<usize> {
    let mut first = None;
    let n = body.chunks(size).count();
    for (i, c) in body.chunks(size).enumerate() {
        let got = match i + 1 == n {
            true => s.feed_last(c),
            false => s.feed(c),
        };
        if got && first.replace(i).is_some() {
            panic!("first content reported twice");
        }
    }
    s.finish();
    first
}

const OPENAI_JSON: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"the \"usage\": {\"prompt_tokens\": 999} is text"},"finish_reason":"stop"}],"usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18,"prompt_tokens_details":{"cached_tokens":0}},"system_fingerprint":"fp"}"#;

const ANTHROPIC_JSON: &str = r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","usage":{"input_tokens":20,"cache_read_input_tokens":5,"output_tokens":9}}"#;

const OPENAI_SSE: &str = "data: {\"id\":\"c\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}],\"usage\":null}\n\n\
data: {\"id\":\"c\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"delta\":{\"content\":\"Hel\"}}],\"usage\":null}\n\n\
data: {\"id\":\"c\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"delta\":{\"content\":\"lo\"}}],\"usage\":null}\n\n\
data: {\"id\":\"c\",\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":13,\"completion_tokens\":2,\"total_tokens\":15}}\n\n\
data: [DONE]\n\n";

const ANTHROPIC_SSE: &str = "event: message_start\r\n\
data: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"claude-haiku\",\"content\":[],\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\r\n\r\n\
event: content_block_start\r\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\r\n\r\n\
event: content_block_delta\r\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\r\n\r\n\
event: message_delta\r\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":15}}\r\n\r\n\
event: message_stop\r\ndata: {\"type\":\"message_stop\"}\r\n\r\n";

#[test]
fn json_answers_give_usage_and_model_from_their_ends() {
    for size in [1, 7, 64, 4096] {
        let mut s = Scanner::new(Shape::Json);
        assert_eq!(feed_in(&mut s, OPENAI_JSON.as_bytes(), size), None);
        assert_eq!(s.tokens, tokens(11, 7, Some(18)), "chunks of {size}");
        assert_eq!(s.model.as_deref(), Some("gpt-4o-2024-08-06"));

        let mut s = Scanner::new(Shape::Json);
        feed_in(&mut s, ANTHROPIC_JSON.as_bytes(), size);
        assert_eq!(s.tokens, tokens(25, 9, None));
        assert_eq!(s.tokens.total(), Some(34));
        assert_eq!(s.model.as_deref(), Some("claude-sonnet-4-5"));
    }
}

#[test]
fn a_json_answer_whose_usage_is_beyond_the_tail_counts_nothing() {
    // The tail holds the last TAIL to 2 * TAIL bytes: a usage object before those is lost.
    let pad = "x".repeat(TAIL);
    let body = format!(
        r#"{{"model":"m","usage":{{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}},"pad":"{pad}{pad}"}}"#
    );
    // In pieces, or whole in one last chunk (read where it is): the same bytes are read.
    for size in [1000, 100_000] {
        let mut s = Scanner::new(Shape::Json);
        feed_in(&mut s, body.as_bytes(), size);
        assert!(!s.tokens.known(), "chunks of {size}");
        assert_eq!(s.model.as_deref(), Some("m"));
    }
    // Near the end of a long answer it is found, whatever the chunking.
    let body = format!(
        r#"{{"model":"m","pad":"{pad}{pad}","usage":{{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}}}"#
    );
    for size in [100, 3000, 20_000] {
        let mut s = Scanner::new(Shape::Json);
        feed_in(&mut s, body.as_bytes(), size);
        assert_eq!(s.tokens, tokens(3, 4, Some(7)), "chunks of {size}");
    }
}

#[test]
fn openai_streams_count_the_last_chunk_and_time_the_first_content() {
    for size in [1, 5, 50, 100_000] {
        let mut s = Scanner::new(Shape::Sse);
        let first = feed_in(&mut s, OPENAI_SSE.as_bytes(), size);
        assert_eq!(s.tokens, tokens(13, 2, Some(15)), "chunks of {size}");
        assert_eq!(s.model.as_deref(), Some("gpt-4o-mini"));
        // The role chunk (empty content) is not content; "Hel" is.
        let hel = OPENAI_SSE.find("Hel").unwrap();
        let at = hel + OPENAI_SSE[hel..].find('\n').unwrap();
        assert_eq!(first, Some(at / size), "chunks of {size}");
    }
}

#[test]
fn anthropic_streams_take_input_from_start_and_output_from_delta() {
    for size in [1, 3, 80, 100_000] {
        let mut s = Scanner::new(Shape::Sse);
        let first = feed_in(&mut s, ANTHROPIC_SSE.as_bytes(), size);
        assert_eq!(s.tokens, tokens(25, 15, None), "chunks of {size}");
        assert_eq!(s.tokens.total(), Some(40));
        assert_eq!(s.model.as_deref(), Some("claude-haiku"));
        assert!(first.is_some());
    }
}

#[test]
fn an_overlong_line_is_skipped_and_the_next_still_read() {
    let long = format!(
        "data: {{\"content\":\"\",\"x\":\"{}\"}}\n",
        "y".repeat(MAX_LINE)
    );
    let body =
        format!("{long}data: {{\"usage\":{{\"prompt_tokens\":1,\"completion_tokens\":2}}}}\n");
    for size in [10, 1000, MAX_LINE * 2] {
        let mut s = Scanner::new(Shape::Sse);
        feed_in(&mut s, body.as_bytes(), size);
        assert_eq!(s.tokens, tokens(1, 2, None), "chunks of {size}");
        assert!(s.carry.capacity() <= MAX_LINE * 2);
    }
}

#[test]
fn shapes_come_from_the_header() {
    assert_eq!(
        Shape::of(Some(b"text/event-stream; charset=utf-8")),
        Shape::Sse
    );
    assert_eq!(Shape::of(Some(b"Application/JSON")), Shape::Json);
    assert_eq!(Shape::of(Some(b"audio/mpeg")), Shape::Other);
    assert_eq!(Shape::of(None), Shape::Other);
    let mut s = Scanner::new(Shape::Other);
    feed_in(&mut s, OPENAI_JSON.as_bytes(), 10);
    assert!(!s.tokens.known());
}

#[test]
fn a_stream_whose_last_line_has_no_newline_is_still_read() {
    let body = "data: {\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":5,\"total_tokens\":9}}";
    let mut s = Scanner::new(Shape::Sse);
    feed_in(&mut s, body.as_bytes(), 7);
    assert_eq!(s.tokens, tokens(4, 5, Some(9)));
}
