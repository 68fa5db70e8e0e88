//! keyway never panics on input: malformed request lines and headers, huge headers, invalid
//! UTF-8 in Portkey headers and bodies cut short each get an answer or a closed connection, and
//! the process keeps serving afterwards.

mod common;

use std::time::Duration;

use common::{FakeUpstream, Keyway};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends raw bytes, returns whatever comes back before the server closes or 3 s pass.
async fn raw(port: u16, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let _ = s.write_all(bytes).await;
    let _ = s.shutdown().await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn status_of(resp: &str) -> Option<u16> {
    resp.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_input_never_takes_keyway_down() {
    let up = FakeUpstream::start().await;
    let mut kw = Keyway::start(&format!(
        "[providers.openai]\nbase_url = \"{}/v1\"\napi_key = \"k\"\n",
        up.base()
    ))
    .await;
    let port = kw.port;
    let huge = "a".repeat(200 * 1024);
    let many: String = (0..2000).map(|i| format!("x-h{i}: v\r\n")).collect();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage request line", b"\x00\x01\x02 nonsense\r\n\r\n".to_vec()),
        ("bad header line", b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n".to_vec()),
        ("header name with space", b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nbad name: v\r\n\r\n".to_vec()),
        ("huge header", format!("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nx-portkey-config: {huge}\r\n\r\n").into_bytes()),
        ("many headers", format!("GET /v1/models HTTP/1.1\r\nHost: x\r\n{many}\r\n").into_bytes()),
        ("invalid utf-8 provider", b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nx-portkey-provider: \xff\xfe\r\nContent-Length: 2\r\n\r\n{}".to_vec()),
        ("invalid utf-8 config", b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nx-portkey-config: {\"provider\":\"\xc3\x28\"}\r\nContent-Length: 2\r\n\r\n{}".to_vec()),
        ("invalid utf-8 path", b"POST /v1/\xff\xfe HTTP/1.1\r\nHost: x\r\nx-portkey-provider: openai\r\nContent-Length: 2\r\n\r\n{}".to_vec()),
        ("body cut short", b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nx-portkey-provider: openai\r\nContent-Length: 1000\r\n\r\n{\"model\":".to_vec()),
        ("chunked body cut short", b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nx-portkey-provider: openai\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc".to_vec()),
        ("bad chunk size", b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nx-portkey-provider: openai\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n".to_vec()),
        ("conflicting lengths", b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nx-portkey-provider: openai\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}".to_vec()),
        ("absolute-form to metadata", b"GET http://169.254.169.254/latest/meta-data HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n".to_vec()),
    ];
    for (name, bytes) in cases {
        let resp = raw(port, &bytes).await;
        if let Some(status) = status_of(&resp) {
            assert!(
                (400..600).contains(&status) || name.contains("cut short"),
                "{name}: unexpected status {status}: {resp}"
            );
            assert_ne!(status, 500, "{name}: internal error: {resp}");
        }
        assert!(kw.is_running(), "keyway died on: {name}");
        assert_eq!(
            reqwest::get(kw.url("/v1/models")).await.unwrap().status(),
            400,
            "keyway stopped answering after: {name}"
        );
    }
    // Nothing malformed, truncated or metadata-bound was forwarded as a complete request.
    for r in up.requests() {
        assert!(!r.uri.contains("meta-data"), "{r:?}");
        assert!(r.body.len() < 1000, "a truncated body was completed: {r:?}");
    }
    let log = kw.log_text();
    assert!(!log.contains("panicked"), "{log}");
}
