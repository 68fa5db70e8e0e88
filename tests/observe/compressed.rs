//! Compressed answers: the client asked for them (`accept-encoding`), the fake upstream sends
//! gzip, deflate or br bytes in several chunks; the client receives exactly those bytes and the
//! tokens are counted; an encoding keyway does not decode (`zstd`) counts none. The model
//! label also takes dated snapshots (`gpt-4o-2024-08-06` counts as `gpt-4o`).

use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use flate2::write::{GzEncoder, ZlibEncoder};
use flate2::Compression;

use super::common::{FakeUpstream, Keyway, Reply};
use super::{lines, log_path, BODY};

const JSON_DATED: &str = r#"{"id":"chatcmpl-2","object":"chat.completion","model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"compressed-answer"},"finish_reason":"stop"}],"usage":{"prompt_tokens":100,"completion_tokens":20,"total_tokens":120}}"#;
const JSON_ZLIB: &str = r#"{"id":"chatcmpl-3","model":"gpt-4o","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#;
const JSON_ZSTD: &str = r#"{"id":"chatcmpl-4","model":"gpt-4o","choices":[],"usage":{"prompt_tokens":1000,"completion_tokens":1000,"total_tokens":2000}}"#;
const ANTHROPIC_BR: &str = r#"{"id":"msg_2","type":"message","model":"claude-3-5-sonnet-20241022","content":[{"type":"text","text":"hi"}],"usage":{"input_tokens":40,"output_tokens":6}}"#;
const SSE: [&str; 4] = [
    "data: {\"id\":\"c\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"delta\":{\"content\":\"Hel\"}}],\"usage\":null}\n\n",
    "data: {\"id\":\"c\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"delta\":{\"content\":\"lo\"}}],\"usage\":null}\n\n",
    "data: {\"id\":\"c\",\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":8,\"completion_tokens\":2,\"total_tokens\":10}}\n\n",
    "data: [DONE]\n\n",
];

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

/// A gzip stream flushed after each event, as a server compressing a stream does.
fn gzip_events(events: &[&str]) -> Vec<Bytes> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    let mut chunks = Vec::new();
    for ev in events {
        e.write_all(ev.as_bytes()).unwrap();
        e.flush().unwrap();
        chunks.push(Bytes::from(std::mem::take(e.get_mut())));
    }
    chunks.push(Bytes::from(e.finish().unwrap()));
    chunks
}

fn zlib(b: &[u8]) -> Vec<u8> {
    let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn brotli(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut e = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
        e.write_all(b).unwrap();
    }
    out
}

/// Provider, path, `accept-encoding` sent, `x-test-answer`, `content-encoding` expected back,
/// and the bytes the fake sends.
type Case = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static str,
    Vec<u8>,
);

/// `body` in pieces of `size` bytes.
fn pieces(body: &[u8], size: usize) -> Vec<Bytes> {
    body.chunks(size).map(Bytes::copy_from_slice).collect()
}

fn answer(ct: &'static str, ce: &'static str, chunks: Vec<Bytes>) -> Reply {
    Reply::Stream {
        status: 200,
        headers: vec![("content-type", ct), ("content-encoding", ce)],
        chunks,
        gap: Duration::from_millis(2),
        abort: false,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn compressed_answers_pass_unchanged_and_their_tokens_count() {
    let gz_json = gzip(JSON_DATED.as_bytes());
    let gz_sse = gzip_events(&SSE);
    let zl_json = zlib(JSON_ZLIB.as_bytes());
    let br_json = brotli(ANTHROPIC_BR.as_bytes());
    let (gz_json2, gz_sse2, zl_json2, br_json2) = (
        gz_json.clone(),
        gz_sse.clone(),
        zl_json.clone(),
        br_json.clone(),
    );
    let oa = FakeUpstream::with(move |r| {
        let asked = r.header("accept-encoding").unwrap_or_default().to_owned();
        match (r.header("x-test-answer"), asked.as_str()) {
            (Some("sse"), "gzip, deflate") => answer("text/event-stream", "gzip", gz_sse2.clone()),
            (Some("deflate"), "gzip, deflate") => {
                answer("application/json", "deflate", pieces(&zl_json2, 5))
            }
            (Some("zstd"), "zstd") => {
                answer("application/json", "zstd", pieces(JSON_ZSTD.as_bytes(), 50))
            }
            (None, "gzip, deflate") => answer("application/json", "gzip", pieces(&gz_json2, 7)),
            _ => Reply::status(400, r#"{"error":"unexpected request"}"#),
        }
    })
    .await;
    let an = FakeUpstream::with(move |r| match r.header("accept-encoding") {
        Some("br") => answer("application/json", "br", pieces(&br_json2, 3)),
        _ => Reply::status(400, r#"{"error":"unexpected request"}"#),
    })
    .await;
    let log = log_path("compressed");
    let kw = Keyway::start(&format!(
        "[providers.openai]\nbase_url = \"{}/v1\"\napi_key = \"k\"\n\
         [providers.anthropic]\nbase_url = \"{}/v1\"\napi_key = \"k\"\n\
         [usage]\nmodels = [\"gpt-4o\", \"claude-3-5-sonnet\"]\n\
         [access_log]\nenabled = true\npath = \"{}\"\n",
        oa.base(),
        an.base(),
        log.display()
    ))
    .await;
    // reqwest here decodes nothing: the client sees the bytes as sent.
    let client = reqwest::Client::new();
    let send = |provider: &str, path: &str, accept: &str, kind: Option<&str>| {
        let mut req = client
            .post(kw.url(path))
            .header("x-portkey-provider", provider)
            .header("accept-encoding", accept)
            .body(BODY);
        if let Some(k) = kind {
            req = req.header("x-test-answer", k);
        }
        req.send()
    };
    let cases: [Case; 5] = [
        (
            "openai",
            "/v1/chat/completions",
            "gzip, deflate",
            None,
            "gzip",
            gz_json,
        ),
        (
            "openai",
            "/v1/chat/completions",
            "gzip, deflate",
            Some("sse"),
            "gzip",
            gz_sse.concat(),
        ),
        (
            "openai",
            "/v1/chat/completions",
            "gzip, deflate",
            Some("deflate"),
            "deflate",
            zl_json,
        ),
        (
            "openai",
            "/v1/chat/completions",
            "zstd",
            Some("zstd"),
            "zstd",
            JSON_ZSTD.into(),
        ),
        ("anthropic", "/v1/messages", "br", None, "br", br_json),
    ];
    for (provider, path, accept, kind, encoding, sent) in &cases {
        let r = send(provider, path, accept, *kind).await.unwrap();
        assert_eq!(r.status(), 200, "{kind:?}");
        let ce = r
            .headers()
            .get("content-encoding")
            .unwrap()
            .to_str()
            .unwrap();
        assert_eq!(ce, *encoding);
        assert_eq!(
            r.bytes().await.unwrap(),
            sent[..],
            "{kind:?}: bytes as sent"
        );
    }

    let got = lines(&log, cases.len()).await;
    let series = |provider: &str, model: &str, kind: &str| {
        format!(
            r#"keyway_llm_tokens_total{{kind="{kind}",model="{model}",provider="{provider}",route="portkey",workspace="none"}}"#
        )
    };
    // gpt-4o: the dated gzip answer (100 + 20) and the deflate one (3 + 4); the zstd one is
    // not read. gpt-4o-mini (other): the gzip stream, 8 + 2. Claude's dated snapshot: 40 + 6.
    for (provider, model, kind, n) in [
        ("openai", "gpt-4o", "prompt", 103.0),
        ("openai", "gpt-4o", "completion", 24.0),
        ("openai", "gpt-4o", "total", 127.0),
        ("openai", "other", "prompt", 8.0),
        ("openai", "other", "completion", 2.0),
        ("openai", "other", "total", 10.0),
        ("anthropic", "claude-3-5-sonnet", "prompt", 40.0),
        ("anthropic", "claude-3-5-sonnet", "completion", 6.0),
        ("anthropic", "claude-3-5-sonnet", "total", 46.0),
    ] {
        let s = series(provider, model, kind);
        assert_eq!(kw.metric(&s).await, n, "{s}");
    }
    let ttft = r#"keyway_llm_time_to_first_token_seconds_count{provider="openai"}"#;
    assert_eq!(
        kw.metric(ttft).await,
        1.0,
        "the gzip stream's first content"
    );
    let out = r#"keyway_response_body_bytes_sum{provider="openai"}"#;
    let sent: usize = cases[..4].iter().map(|c| c.5.len()).sum();
    assert_eq!(
        kw.metric(out).await,
        sent as f64,
        "compressed bytes as sent"
    );

    // The log names each answer's model (the name, not the label) and its tokens.
    let want = [
        (Some("gpt-4o-2024-08-06"), false, Some((100, 20, 120))),
        (Some("gpt-4o-mini"), true, Some((8, 2, 10))),
        (Some("gpt-4o"), false, Some((3, 4, 7))),
        (None, false, None),
        (Some("claude-3-5-sonnet-20241022"), false, Some((40, 6, 46))),
    ];
    for (l, (model, stream, tokens)) in got.iter().zip(want) {
        assert_eq!(l["model"].as_str(), model, "{l}");
        assert_eq!(l["stream"], stream, "{l}");
        let t = [
            &l["prompt_tokens"],
            &l["completion_tokens"],
            &l["total_tokens"],
        ];
        match tokens {
            Some((p, c, tt)) => assert_eq!(t, [p, c, tt], "{l}"),
            None => assert!(t.iter().all(|v| v.is_null()), "{l}"),
        }
    }
}
