//! `[limits]` (issue 14, item 6), through a real keyway, as an attacker would try it: a header
//! sent a byte at a time is cut at its deadline (also on a kept-alive connection), a stalled
//! body gets 408 while a slow one that keeps coming passes, oversized headers get 431 and long
//! targets 414 (with the default limits), connections over the cap are closed at accept, and
//! idle keep-alive connections stay cheap. Every refusal is counted by limit, and a normal
//! request made while the attack connections are held succeeds.

mod common;

use std::time::{Duration, Instant};

use common::{FakeUpstream, Keyway};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A chat request keyway sends to the fake (`[providers.openai]`).
const BODY: &str = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;

fn config(up: &FakeUpstream, limits: &str) -> String {
    format!(
        "trusted_custom_hosts = [\"127.0.0.1\"]\n[providers.openai]\nbase_url = \"{}/v1\"\n\
         api_key = \"sk-limits-test\"\n[limits]\n{limits}\n",
        up.base()
    )
}

/// A chat request's header with `extra` header lines (each ending in CRLF).
fn head(target: &str, extra: &str, length: usize, close: bool) -> String {
    let connection = if close { "connection: close\r\n" } else { "" };
    format!(
        "POST {target} HTTP/1.1\r\nhost: 127.0.0.1\r\nx-portkey-provider: openai\r\n\
         content-type: application/json\r\ncontent-length: {length}\r\n{connection}{extra}\r\n"
    )
}

struct Answer {
    status: u16,
    json: Value,
    /// The answer's `x-request-id` (lowercased with the rest of the head).
    request_id: Option<String>,
}

/// Reads one answer (Content-Length framed) from `s`, within 20 s.
async fn read_answer(s: &mut TcpStream) -> Answer {
    let mut data = Vec::new();
    let mut buf = [0u8; 16384];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if data.len() >= end + 4 + length {
                let status = head[9..12].parse().unwrap();
                let body = &data[end + 4..end + 4 + length];
                let json = serde_json::from_slice(body).unwrap_or(Value::Null);
                let request_id = head
                    .lines()
                    .find_map(|l| l.strip_prefix("x-request-id:"))
                    .map(|v| v.trim().to_owned());
                return Answer {
                    status,
                    json,
                    request_id,
                };
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, s.read(&mut buf))
            .await
            .expect("no answer within 20 s")
            .expect("read failed");
        assert!(n > 0, "closed before a whole answer: {data:?}");
        data.extend_from_slice(&buf[..n]);
    }
}

/// Sends `bytes` on a new connection and reads the answer.
async fn exchange(kw: &Keyway, bytes: &[u8]) -> Answer {
    let mut s = TcpStream::connect(("127.0.0.1", kw.port)).await.unwrap();
    s.write_all(bytes).await.unwrap();
    read_answer(&mut s).await
}

/// A normal chat request on a connection of its own (closed after it).
async fn normal(kw: &Keyway) -> Answer {
    let req = head("/v1/chat/completions", "", BODY.len(), true) + BODY;
    exchange(kw, req.as_bytes()).await
}

/// Waits (at most 20 s) until keyway closes `s` without answering; the time it took.
async fn closed_without_answer(s: &mut TcpStream) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf))
        .await
        .expect("still open after 20 s");
    match read {
        Ok(n) => assert_eq!(n, 0, "answered: {:?}", &buf[..n]),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    started.elapsed()
}

/// A slowloris: a request line, then one byte of a header field every 200 ms until keyway
/// closes the connection (at most 20 s). Returns the time from the first byte to the close.
async fn slowloris(mut s: TcpStream, prefix: &[u8]) -> Duration {
    let started = Instant::now();
    s.write_all(prefix).await.unwrap();
    s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    for i in 0..100 {
        let byte = [b"x-slow: abc\r\n"[i % 13]];
        if s.write_all(&byte).await.is_err() {
            return started.elapsed();
        }
        match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
            Err(_) => continue,
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(n)) => panic!("answered: {:?}", String::from_utf8_lossy(&buf[..n])),
        }
    }
    panic!("a header sent for 20 s was never cut");
}

async fn rejections(kw: &Keyway, limit: &str) -> f64 {
    kw.metric(&format!(
        "keyway_limit_rejections_total{{limit=\"{limit}\"}}"
    ))
    .await
}

/// Waits (at most 10 s) until `keyway_client_connections` is `want`.
async fn connections_become(kw: &Keyway, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = kw.metric("keyway_client_connections").await;
        if v == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "client connections {v}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_header_sent_byte_by_byte_is_cut_at_its_deadline() {
    let up = FakeUpstream::start().await;
    let kw = Keyway::start(&config(&up, "header_timeout_ms = 2000")).await;
    let mut attacks = Vec::new();
    for _ in 0..5 {
        let s = TcpStream::connect(("127.0.0.1", kw.port)).await.unwrap();
        attacks.push(tokio::spawn(slowloris(s, b"")));
    }
    // Made while the attack connections are held.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ok = normal(&kw).await;
    assert_eq!(ok.status, 200, "{}", ok.json);
    for a in attacks {
        let took = a.await.unwrap();
        // keyway's clock starts at its first read, after this side's first write.
        assert!(took >= Duration::from_secs(2), "cut after {took:?}");
    }
    assert_eq!(rejections(&kw, "header_deadline").await, 5.0);
    assert_eq!(
        up.requests().len(),
        1,
        "only the normal request went upstream"
    );

    // A kept-alive connection: idle longer than the deadline between requests (idle time is
    // the keep-alive timeout's), and its second request's slow header is cut all the same.
    let mut s = TcpStream::connect(("127.0.0.1", kw.port)).await.unwrap();
    let req = head("/v1/chat/completions", "", BODY.len(), false) + BODY;
    s.write_all(req.as_bytes()).await.unwrap();
    assert_eq!(read_answer(&mut s).await.status, 200);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    s.write_all(req.as_bytes()).await.unwrap();
    assert_eq!(read_answer(&mut s).await.status, 200);
    let took = slowloris(s, b"").await;
    assert!(took >= Duration::from_secs(2), "cut after {took:?}");
    assert_eq!(rejections(&kw, "header_deadline").await, 6.0);
    assert_eq!(up.requests().len(), 3);
    assert_eq!(normal(&kw).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_body_gets_408_and_a_slow_one_that_keeps_coming_passes() {
    let up = FakeUpstream::start().await;
    let kw = Keyway::start(&config(&up, "body_timeout_ms = 1500")).await;

    // Kept before routing (the target's override_params): keyway's 408, and nothing of the
    // request reached the upstream.
    let cfg = json!({"strategy": {"mode": "fallback"}, "targets": [{"provider": "openai",
        "api_key": "sk-limits-test", "custom_host": format!("{}/v1", up.base()),
        "override_params": {"max_tokens": 5}}]})
    .to_string();
    let extra = format!("x-portkey-config: {cfg}\r\n");
    let mut s = TcpStream::connect(("127.0.0.1", kw.port)).await.unwrap();
    let req = head("/v1/chat/completions", &extra, BODY.len(), false) + &BODY[..10];
    s.write_all(req.as_bytes()).await.unwrap();
    let a = read_answer(&mut s).await;
    assert_eq!(a.status, 408, "{}", a.json);
    assert_eq!(a.json["error"]["code"], "request_timeout");
    assert_eq!(rejections(&kw, "body_deadline").await, 1.0);
    assert!(
        up.requests().is_empty(),
        "the stalled body reached the upstream"
    );

    // Streamed to the upstream as it comes (the upstream holds what came): the stall ends the
    // request with 408 and the upstream connection is cut.
    let mut s = TcpStream::connect(("127.0.0.1", kw.port)).await.unwrap();
    let req = head("/v1/chat/completions", "", BODY.len(), false) + &BODY[..10];
    s.write_all(req.as_bytes()).await.unwrap();
    let a = read_answer(&mut s).await;
    assert_eq!(a.status, 408, "{}", a.json);
    assert_eq!(a.json["status"], "failure");
    assert_eq!(rejections(&kw, "body_deadline").await, 2.0);

    // A body that keeps coming, a byte every 300 ms (longer in total than the deadline).
    let mut s = TcpStream::connect(("127.0.0.1", kw.port)).await.unwrap();
    let body = r#"{"model":"gpt-4o"}"#;
    s.write_all(head("/v1/chat/completions", "", body.len(), true).as_bytes())
        .await
        .unwrap();
    for b in body.bytes() {
        tokio::time::sleep(Duration::from_millis(300)).await;
        s.write_all(&[b]).await.unwrap();
    }
    assert_eq!(read_answer(&mut s).await.status, 200);
    let whole = up
        .requests()
        .iter()
        .filter(|r| r.body == body.as_bytes())
        .count();
    assert_eq!(whole, 1, "the slow body reached the upstream whole");
    assert_eq!(rejections(&kw, "body_deadline").await, 2.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_headers_get_431_and_long_targets_414_by_default() {
    let up = FakeUpstream::start().await;
    let kw = Keyway::start(&config(&up, "")).await;
    let send = |target: String, extra: String| {
        let req = head(&target, &extra, BODY.len(), true) + BODY;
        let port = kw.port;
        async move {
            let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            s.write_all(req.as_bytes()).await.unwrap();
            read_answer(&mut s).await
        }
    };
    let chat = || "/v1/chat/completions".to_owned();

    // One 70 KB header. The refusal carries the client's request id.
    let extra = format!("x-request-id: limit-1\r\nx-big: {}\r\n", "a".repeat(70_000));
    let a = send(chat(), extra).await;
    assert_eq!(a.status, 431, "{}", a.json);
    assert_eq!(a.json["error"]["code"], "request_header_fields_too_large");
    assert_eq!(a.request_id.as_deref(), Some("limit-1"));
    // 200 headers of 1 KB.
    let many: String = (0..200)
        .map(|i| format!("x-h{i}: {}\r\n", "b".repeat(1000)))
        .collect();
    let a = send(chat(), many).await;
    assert_eq!(a.status, 431, "{}", a.json);
    // A 32 KiB request target.
    let long = format!("/v1/chat/completions?q={}", "c".repeat(32 * 1024));
    let a = send(long, String::new()).await;
    assert_eq!(a.status, 414, "{}", a.json);
    assert_eq!(a.json["error"]["code"], "uri_too_long");
    assert_eq!(a.request_id.map(|id| id.len()), Some(36), "a new id");
    // From 64 KiB on, Pingora refuses the target itself (400) before keyway sees it (the
    // `http` crate's URI length limit).
    let longer = format!("/v1/chat/completions?q={}", "c".repeat(64 * 1024));
    assert_eq!(send(longer, String::new()).await.status, 400);
    assert_eq!(rejections(&kw, "header_size").await, 2.0);
    assert_eq!(rejections(&kw, "uri_length").await, 1.0);
    assert!(up.requests().is_empty(), "nothing oversized was forwarded");

    // Just under the limits: forwarded.
    let a = send(chat(), format!("x-big: {}\r\n", "a".repeat(60_000))).await;
    assert_eq!(a.status, 200, "{}", a.json);
    let target = format!("/v1/chat/completions?q={}", "c".repeat(8000));
    assert_eq!(send(target.clone(), String::new()).await.status, 200);
    assert_eq!(up.requests().len(), 2);
    assert_eq!(up.requests()[1].uri, target);
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_over_the_cap_are_closed_at_accept_and_counted() {
    let up = FakeUpstream::start().await;
    let kw = Keyway::start(&config(&up, "max_client_connections = 3")).await;
    connections_become(&kw, 0.0).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(("127.0.0.1", kw.port)).await.unwrap());
    }
    connections_become(&kw, 3.0).await;
    for _ in 0..2 {
        let mut over = TcpStream::connect(("127.0.0.1", kw.port)).await.unwrap();
        let _ = over.write_all(b"GET /v1/models HTTP/1.1\r\n").await;
        closed_without_answer(&mut over).await;
    }
    assert_eq!(rejections(&kw, "connections").await, 2.0);
    assert_eq!(kw.metric("keyway_client_connections").await, 3.0);

    // A slot given back serves a normal request.
    drop(held.pop());
    connections_become(&kw, 2.0).await;
    let ok = normal(&kw).await;
    assert_eq!(ok.status, 200, "{}", ok.json);
    connections_become(&kw, 2.0).await;
    drop(held);
    connections_become(&kw, 0.0).await;
    assert_eq!(rejections(&kw, "connections").await, 2.0);
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .map(|v| v.trim().trim_end_matches("kB").trim().parse().unwrap())
        .unwrap()
}

/// A small version of `loadtest/idle_conns.sh` (which measures 10 000): 500 keep-alive
/// connections after one request each, held idle, then reused. Prints bytes per connection.
#[tokio::test(flavor = "multi_thread")]
async fn idle_keep_alive_connections_stay_cheap_and_reusable() {
    const N: usize = 500;
    let up = FakeUpstream::start().await;
    let kw = Keyway::start(&config(&up, "")).await;
    let req = head("/v1/chat/completions", "", BODY.len(), false) + BODY;
    // Warm: the first request's one-time allocations are not a connection's.
    assert_eq!(normal(&kw).await.status, 200);
    connections_become(&kw, 0.0).await;
    let before = rss_kib(kw.pid());
    let mut conns = Vec::new();
    for _ in 0..N {
        let mut s = TcpStream::connect(("127.0.0.1", kw.port)).await.unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        assert_eq!(read_answer(&mut s).await.status, 200);
        conns.push(s);
    }
    connections_become(&kw, N as f64).await;
    let held = rss_kib(kw.pid());
    let per = (held.saturating_sub(before) * 1024) as usize / N;
    eprintln!("{N} idle keep-alive connections: RSS {before} -> {held} KiB, {per} bytes each");
    // Pingora's default 64 KiB read buffer per connection would be over this on its own.
    assert!(per < 48 * 1024, "{per} bytes per idle connection");
    for s in conns.iter_mut().step_by(50) {
        s.write_all(req.as_bytes()).await.unwrap();
        assert_eq!(read_answer(s).await.status, 200);
    }
    assert_eq!(up.requests().len(), 1 + N + N / 50);
    drop(conns);
    connections_become(&kw, 0.0).await;
    eprintln!("after they closed: RSS {} KiB", rss_kib(kw.pid()));
}
