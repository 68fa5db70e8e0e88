use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

const DEADLINE: Duration = Duration::from_millis(50);

fn pair() -> (Guarded, DuplexStream, IntCounter) {
    let (ours, theirs) = tokio::io::duplex(1024);
    let expired = IntCounter::new("t", "t").unwrap();
    (
        Guarded::new(Box::new(ours), DEADLINE, expired.clone()),
        theirs,
        expired,
    )
}

/// Reads what is there, or the error; at most 10 s.
async fn read(g: &mut Guarded) -> io::Result<Vec<u8>> {
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), g.read(&mut buf))
        .await
        .expect("neither bytes nor an error within 10 s")?;
    Ok(buf[..n].to_vec())
}

#[tokio::test]
async fn the_clock_starts_at_the_first_byte_and_cuts_an_unfinished_header() {
    let (mut g, mut client, expired) = pair();
    // Idle before the first byte: no clock.
    tokio::time::sleep(DEADLINE * 3).await;
    client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    assert_eq!(read(&mut g).await.unwrap(), b"GET / HTTP/1.1\r\n");
    let e = read(&mut g).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    assert_eq!(expired.get(), 1);
}

#[tokio::test]
async fn a_parsed_header_stops_the_clock_and_the_next_request_restarts_it() {
    let (mut g, mut client, expired) = pair();
    client.write_all(b"POST / HTTP/1.1\r\n\r\n").await.unwrap();
    read(&mut g).await.unwrap();
    g.header_read();
    // The body phase: silence past the header deadline is not cut.
    tokio::time::sleep(DEADLINE * 3).await;
    client.write_all(b"body").await.unwrap();
    assert_eq!(read(&mut g).await.unwrap(), b"body");
    g.request_done();
    // The next request: its first byte (stashed while waiting) starts a new clock.
    client.write_all(b"G").await.unwrap();
    assert!(g.next_request(Duration::from_secs(10), None).await);
    assert_eq!(read(&mut g).await.unwrap(), b"G");
    let e = read(&mut g).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    assert_eq!(expired.get(), 1);
}

#[tokio::test]
async fn the_wait_reads_the_request_once_and_hands_it_over_in_the_readers_pieces() {
    let (mut g, mut client, expired) = pair();
    let request = b"POST /v1/chat/completions HTTP/1.1\r\nhost: a\r\ncontent-length: 2\r\n\r\n{}";
    client.write_all(request).await.unwrap();
    assert!(g.next_request(Duration::from_secs(10), None).await);
    // Everything that had come was read by the wait: the socket has nothing left.
    assert_eq!(g.stash, request);
    // A reader with a small buffer gets the stash in order, then waits on the socket.
    let mut got = Vec::new();
    while got.len() < request.len() {
        let mut piece = [0u8; 10];
        let n = g.read(&mut piece).await.unwrap();
        assert!(n > 0 && n <= 10);
        got.extend_from_slice(&piece[..n]);
    }
    assert_eq!(got, request);
    assert!(
        g.stash.is_empty() && g.stash.capacity() == 0,
        "the stash is freed"
    );
    client.write_all(b"next").await.unwrap();
    assert_eq!(read(&mut g).await.unwrap(), b"next");
    assert_eq!(expired.get(), 0);
}

#[tokio::test]
async fn the_keepalive_wait_ends_when_idle_too_long() {
    let (mut g, _client, expired) = pair();
    let started = std::time::Instant::now();
    assert!(!g.next_request(DEADLINE, None).await);
    assert!(started.elapsed() >= DEADLINE);
    // Not a header deadline: nothing of a request came.
    assert_eq!(expired.get(), 0);
}

#[tokio::test]
async fn waiting_for_a_request_ends_on_close_and_on_shutdown() {
    let (mut g, client, _) = pair();
    let (tx, rx) = tokio::sync::watch::channel(false);
    tx.send(true).unwrap();
    assert!(!g.next_request(Duration::from_secs(10), Some(rx)).await);
    drop(client);
    assert!(!g.next_request(Duration::from_secs(10), None).await);
}

#[tokio::test]
async fn http2_is_left_alone() {
    let (mut g, mut client, expired) = pair();
    client.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    read(&mut g).await.unwrap();
    let mut buf = [0u8; 8];
    let silent = tokio::time::timeout(DEADLINE * 3, g.read(&mut buf)).await;
    assert!(silent.is_err(), "an h2 connection got a header deadline");
    assert!(g.is_h2());
    assert_eq!(expired.get(), 0);
}
