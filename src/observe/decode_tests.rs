use super::*;
use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
use flate2::Compression;

const JSON: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18}}"#;

const SSE: &str = "data: {\"id\":\"c\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}],\"usage\":null}\n\n\
data: {\"id\":\"c\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"delta\":{\"content\":\"Hel\"}}],\"usage\":null}\n\n\
data: {\"id\":\"c\",\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":13,\"completion_tokens\":2,\"total_tokens\":15}}\n\n\
data: [DONE]\n\n";

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn zlib(b: &[u8]) -> Vec<u8> {
    let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn raw_deflate(b: &[u8]) -> Vec<u8> {
    let mut e = DeflateEncoder::new(Vec::new(), Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn brotli(b: &[u8]) -> Vec<u8> {
    brotli_window(b, 22)
}

fn brotli_window(b: &[u8], lgwin: u32) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut e = brotli::CompressorWriter::new(&mut out, 4096, 5, lgwin);
        e.write_all(b).unwrap();
    }
    out
}

/// Feeds `body` in chunks of `size`; the tokens, model and the chunk that held the first content.
fn read(
    shape: Shape,
    enc: Encoding,
    body: &[u8],
    size: usize,
) -> (Tokens, Option<String>, Option<usize>) {
    let mut r = Reader::new(shape, enc).expect("read");
    let mut first = None;
    for (i, c) in body.chunks(size).enumerate() {
        if r.feed(c) && first.replace(i).is_some() {
            panic!("first content reported twice");
        }
    }
    r.finish();
    r.finish();
    let (t, m) = r.result();
    (t, m.map(str::to_owned), first)
}

fn tokens(p: u64, c: u64, t: u64) -> Tokens {
    Tokens {
        prompt: Some(p),
        completion: Some(c),
        total: Some(t),
    }
}

#[test]
fn encodings_come_from_the_header() {
    assert_eq!(Encoding::of(None), Encoding::Identity);
    assert_eq!(Encoding::of(Some(b"")), Encoding::Identity);
    assert_eq!(Encoding::of(Some(b"Identity")), Encoding::Identity);
    assert_eq!(Encoding::of(Some(b"gzip")), Encoding::Gzip);
    assert_eq!(Encoding::of(Some(b" GZIP ")), Encoding::Gzip);
    assert_eq!(Encoding::of(Some(b"x-gzip")), Encoding::Gzip);
    assert_eq!(Encoding::of(Some(b"deflate")), Encoding::Deflate);
    assert_eq!(Encoding::of(Some(b"br")), Encoding::Brotli);
    assert_eq!(Encoding::of(Some(b"zstd")), Encoding::Unknown);
    assert_eq!(Encoding::of(Some(b"gzip, br")), Encoding::Unknown);
    assert!(Reader::new(Shape::Json, Encoding::Unknown).is_none());
    assert!(Reader::new(Shape::Other, Encoding::Gzip).is_none());
}

#[test]
fn every_encoding_of_a_json_answer_counts_in_every_chunking() {
    let bodies = [
        ("identity", Encoding::Identity, JSON.as_bytes().to_vec()),
        ("gzip", Encoding::Gzip, gzip(JSON.as_bytes())),
        ("deflate (zlib)", Encoding::Deflate, zlib(JSON.as_bytes())),
        (
            "deflate (raw)",
            Encoding::Deflate,
            raw_deflate(JSON.as_bytes()),
        ),
        ("br", Encoding::Brotli, brotli(JSON.as_bytes())),
    ];
    for (name, enc, body) in &bodies {
        for size in [1, 2, 3, 7, 64, body.len()] {
            let (t, model, first) = read(Shape::Json, *enc, body, size);
            assert_eq!(t, tokens(11, 7, 18), "{name} in chunks of {size}");
            assert_eq!(model.as_deref(), Some("gpt-4o-2024-08-06"), "{name}");
            assert_eq!(first, None);
        }
    }
}

#[test]
fn a_compressed_stream_counts_and_reports_its_first_content() {
    // Compressed as a server does it: each event flushed on its own.
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    let mut events = Vec::new();
    for ev in SSE.split_inclusive("\n\n") {
        e.write_all(ev.as_bytes()).unwrap();
        e.flush().unwrap();
        events.push(e.get_ref().len());
    }
    let body = e.finish().unwrap();
    for size in [1, 5, 100, body.len()] {
        let (t, model, first) = read(Shape::Sse, Encoding::Gzip, &body, size);
        assert_eq!(t, tokens(13, 2, 15), "chunks of {size}");
        assert_eq!(model.as_deref(), Some("gpt-4o-mini"));
        // The second event carries the first content: it is reported by a chunk holding part
        // of that event's compressed bytes (not at the end of the answer).
        let i = first.expect("first content");
        assert!(
            (i + 1) * size > events[0] && i * size < events[1],
            "chunks of {size}: {i}"
        );
    }
}

#[test]
fn a_decompression_bomb_stops_at_the_limit_and_counts_nothing() {
    // 17 MiB of zeros and then a usage object: more than MAX_DECODED once inflated.
    let mut e = GzEncoder::new(Vec::new(), Compression::best());
    e.write_all(b"{\"model\":\"gpt-4o\",\"pad\":\"").unwrap();
    let zeros = vec![b'0'; 1 << 20];
    for _ in 0..17 {
        e.write_all(&zeros).unwrap();
    }
    e.write_all(b"\",\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}")
        .unwrap();
    let body = e.finish().unwrap();
    assert!(body.len() < 64 * 1024, "a small body: {}", body.len());

    let mut r = Reader::new(Shape::Json, Encoding::Gzip).unwrap();
    let mut fed = 0;
    for c in body.chunks(1024) {
        r.feed(c);
        fed += 1;
        if let State::Gzip(d) = &r.state {
            assert!(d.get_ref().decoded <= MAX_DECODED + 32 * 1024);
        }
    }
    assert!(matches!(r.state, State::Dropped), "stopped");
    r.finish();
    assert_eq!(r.result(), (Tokens::default(), None));
    assert!(fed > 1);

    // Just under the limit the same answer counts.
    let mut e = GzEncoder::new(Vec::new(), Compression::best());
    e.write_all(b"{\"model\":\"gpt-4o\",\"pad\":\"").unwrap();
    for _ in 0..15 {
        e.write_all(&zeros).unwrap();
    }
    e.write_all(b"\",\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}")
        .unwrap();
    let (t, model, _) = read(Shape::Json, Encoding::Gzip, &e.finish().unwrap(), 1000);
    assert_eq!((t.prompt, t.completion), (Some(1), Some(2)));
    assert_eq!(model.as_deref(), Some("gpt-4o"));
}

#[test]
fn a_brotli_bomb_is_bounded_too() {
    let mut big = b"{\"pad\":\"".to_vec();
    big.resize(17 << 20, b'a');
    big.extend_from_slice(b"\",\"usage\":{\"prompt_tokens\":1}}");
    let body = brotli(&big);
    let (t, model, _) = read(Shape::Json, Encoding::Brotli, &body, 4096);
    assert_eq!((t, model), (Tokens::default(), None));
}

#[test]
fn a_compressed_stream_cut_before_its_trailer_counts_the_events_it_read() {
    // The client left after `data: [DONE]`: the gzip trailer, the zlib checksum or brotli's
    // last block never came. Every event was decoded whole and counts.
    let cut = |body: Vec<u8>, n: usize| body[..body.len() - n].to_vec();
    for (enc, body) in [
        (Encoding::Gzip, cut(gzip(SSE.as_bytes()), 8)),
        (Encoding::Deflate, cut(zlib(SSE.as_bytes()), 4)),
    ] {
        let (t, model, _) = read(Shape::Sse, enc, &body, 64);
        assert_eq!(t, tokens(13, 2, 15), "{enc:?}");
        assert_eq!(model.as_deref(), Some("gpt-4o-mini"));
    }
}

#[test]
fn corrupt_or_truncated_bodies_count_nothing() {
    let mut body = gzip(JSON.as_bytes());
    body[12] ^= 0xff;
    let (t, _, _) = read(Shape::Json, Encoding::Gzip, &body, 16);
    assert!(!t.known());

    let body = gzip(JSON.as_bytes());
    // The trailer (CRC and length) missing: the JSON decodes whole, the body is still cut.
    let (t, _, _) = read(Shape::Json, Encoding::Gzip, &body[..body.len() - 8], 16);
    assert!(!t.known());

    // Not compressed at all although the header says so.
    let (t, _, _) = read(Shape::Json, Encoding::Gzip, JSON.as_bytes(), 16);
    assert!(!t.known());
    let (t, _, _) = read(Shape::Json, Encoding::Deflate, b"{", 1);
    assert!(!t.known());
}

#[test]
fn brotli_windows_are_read_from_the_first_byte_and_large_ones_refused() {
    for lgwin in 10..=24 {
        let body = brotli_window(JSON.as_bytes(), lgwin);
        assert_eq!(
            brotli_window_bits(body[0]),
            Some(lgwin as u8),
            "lgwin {lgwin}"
        );
        let (t, _, _) = read(Shape::Json, Encoding::Brotli, &body, 1);
        let want = lgwin <= u32::from(MAX_BROTLI_WINDOW_BITS);
        assert_eq!(t.known(), want, "lgwin {lgwin}");
        if want {
            assert_eq!(t, tokens(11, 7, 18));
        }
    }
}
