//! Zero-downtime upgrades and graceful shutdown through real keyway processes: the listeners
//! (clear and TLS) handed over to a new process (`--upgrade`, then SIGQUIT to the old one) under
//! a request loop with no failure; SIGTERM draining hundreds of in-flight requests and two SSE
//! streams (HTTP/1.1, and HTTP/2 over TLS) to their last byte; and SIGTERM with nothing in
//! flight ending the process long before the grace period.

mod common;
mod ingress;

use std::time::{Duration, Instant};

use common::{log_dir, FakeUpstream, Recorded, Reply, CHAT_RESPONSE};
use futures_util::StreamExt;
use ingress::{chat_request, tls_chat, Pki, Ports, Proc, CHAT_BODY};

/// The grace period of these tests: far longer than any of them may take.
const GRACE_SECONDS: u64 = 120;

fn config(up: &FakeUpstream, socket: &str) -> String {
    format!(
        "grace_period_seconds = {GRACE_SECONDS}\n[store]\nenabled = false\n[listener]\nupgrade_socket = \"{socket}\"\n[providers.openai]\nbase_url = \"{}/v1\"\napi_key = \"k\"\n",
        up.base()
    )
}

/// `config` plus a TLS listener on `ports.tls` serving a certificate `pki` issued (serial 1001).
fn config_with_tls(up: &FakeUpstream, ports: Ports, pki: &Pki) -> String {
    let (crt, key) = pki.issue("server", "localhost", "1001", false);
    format!(
        "{}[tls]\nlisten = \"127.0.0.1:{}\"\ncert_file = {crt:?}\nkey_file = {key:?}\n",
        config(up, &socket_path(ports)),
        ports.tls
    )
}

fn socket_path(ports: Ports) -> String {
    log_dir()
        .join(format!("upgrade-{}.sock", ports.clear))
        .display()
        .to_string()
}

/// One chat completion on a new connection; the status and body, or what went wrong.
fn one_request(port: u16) -> Result<(u16, String), String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    s.write_all(chat_request().as_bytes())
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    let status = out.split(' ').nth(1).and_then(|c| c.parse().ok());
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    status
        .map(|c| (c, body))
        .ok_or(format!("no answer: {out:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn listeners_hand_over_to_a_new_process_without_a_failed_request() {
    let up = FakeUpstream::start().await;
    let ports = Ports::new();
    let pki = Pki::new("handover-ca");
    let cfg = config_with_tls(&up, ports, &pki);
    let ca = pki.ca();
    let run = tokio::task::spawn_blocking(move || {
        let mut old = Proc::start("handover-old", ports, &cfg, &[], true);
        let mut new = None;
        let mut old_exit = None;
        let mut outcomes = Vec::new();
        // Every fourth round also a request on the TLS listener, handed over with the rest.
        let mut over_tls = Vec::new();
        // Bounded: 300 requests, and at least 30 more once the old process has exited (it
        // hands over, keeps accepting for Pingora's 5 s close timeout, then drains).
        let mut after_exit = 0;
        while outcomes.len() < 2000 && (outcomes.len() < 300 || after_exit < 30) {
            if outcomes.len() == 30 {
                // The upgrade procedure: start the new binary with --upgrade, then SIGQUIT the
                // old one, which sends its listening sockets over the upgrade socket.
                new = Some(Proc::start(
                    "handover-new",
                    ports,
                    &cfg,
                    &["--upgrade"],
                    false,
                ));
                std::thread::sleep(Duration::from_millis(300));
                old.signal("QUIT");
            }
            outcomes.push(one_request(ports.clear));
            if outcomes.len() % 4 == 0 {
                over_tls.push(tls_chat(ports.tls, &ca).map(|s| (s.serial, s.status, s.body)));
            }
            if old_exit.is_none() && outcomes.len() > 30 {
                old_exit = old.child.try_wait().unwrap();
            }
            if old_exit.is_some() {
                after_exit += 1;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut new = new.unwrap();
        let new_alive = new.child.try_wait().unwrap().is_none();
        (outcomes, over_tls, old_exit, new_alive, new.log_text())
    });
    let (outcomes, over_tls, old_exit, new_alive, new_log) = run.await.unwrap();
    let failures: Vec<_> = outcomes
        .iter()
        .filter(|o| !matches!(o, Ok((200, b)) if b == CHAT_RESPONSE))
        .collect();
    assert_eq!(failures, Vec::<&Result<(u16, String), String>>::new());
    assert!(outcomes.len() >= 300);
    let tls_failures: Vec<_> = over_tls
        .iter()
        .filter(|o| !matches!(o, Ok((serial, 200, b)) if serial == "1001" && b == CHAT_RESPONSE))
        .collect();
    assert_eq!(tls_failures.len(), 0, "{tls_failures:?}");
    assert_eq!(over_tls.len(), outcomes.len() / 4);
    assert!(old_exit.expect("the old process never exited").success());
    assert!(new_alive, "{new_log}");
    assert_eq!(up.requests().len(), outcomes.len() + over_tls.len());
    assert!(new_log.contains("Bootstrap done"), "{new_log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_in_flight_requests_and_a_stream_then_exits() {
    const EVENTS: usize = 20;
    let events: Vec<&'static str> = (0..EVENTS)
        .map(|i| {
            &*format!("data: {{\"choices\":[{{\"delta\":{{\"content\":\"{i}\"}}}}]}}\n\n").leak()
        })
        .chain(["data: [DONE]\n\n"])
        .collect();
    let expected_stream = events.concat();
    let sse = events.clone();
    let up = FakeUpstream::with(move |r: &Recorded| {
        if r.body.windows(13).any(|w| w == b"\"stream\":true") {
            Reply::sse(&sse, Duration::from_millis(400))
        } else {
            Reply::Delay(
                Duration::from_secs(5),
                Box::new(Reply::ok_json(CHAT_RESPONSE)),
            )
        }
    })
    .await;
    let ports = Ports::new();
    let pki = Pki::new("drain-ca");
    let cfg = config_with_tls(&up, ports, &pki);
    let kw = tokio::task::spawn_blocking(move || Proc::start("drain", ports, &cfg, &[], true))
        .await
        .unwrap();
    // A second stream over HTTP/2 and TLS (curl), so the drain covers GOAWAY on h2 too.
    let h2_stream = std::process::Command::new("curl")
        .args([
            "-sS",
            "-N",
            "--http2",
            "--max-time",
            "60",
            "-w",
            "\n%{http_version}",
        ])
        .arg("--cacert")
        .arg(pki.ca())
        .args(["--resolve", &format!("localhost:{}:127.0.0.1", ports.tls)])
        .args([
            "-H",
            "x-portkey-provider: openai",
            "-H",
            "content-type: application/json",
        ])
        .args(["--data", r#"{"model":"m","stream":true,"messages":[]}"#])
        .arg(format!(
            "https://localhost:{}/v1/chat/completions",
            ports.tls
        ))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{}/v1/chat/completions", ports.clear);
    let post = |body: &'static str| {
        client
            .post(&url)
            .header("x-portkey-provider", "openai")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let stream = post(r#"{"model":"m","stream":true,"messages":[]}"#)
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut stream = stream.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    let requests: Vec<_> = (0..300).map(|_| tokio::spawn(post(CHAT_BODY))).collect();
    // Every request has reached the upstream, which holds each for 5 s: both streams (HTTP/1.1
    // and HTTP/2 over TLS) and all 300 are in flight in keyway when SIGTERM arrives.
    let deadline = Instant::now() + Duration::from_secs(20);
    while up.requests().len() < 302 {
        assert!(
            Instant::now() < deadline,
            "only {} requests arrived",
            up.requests().len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let in_flight = ingress::metric(ports.metrics, "keyway_requests_in_flight");
    assert_eq!(in_flight, Some(302.0));
    kw.signal("TERM");
    let mut streamed = first.to_vec();
    while let Some(chunk) = stream.next().await {
        streamed.extend_from_slice(&chunk.expect("the stream broke during the drain"));
    }
    assert_eq!(String::from_utf8(streamed).unwrap(), expected_stream);
    let mut answered = 0;
    for r in requests {
        let resp = r.await.unwrap().expect("a request failed during the drain");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), CHAT_RESPONSE);
        answered += 1;
    }
    assert_eq!(answered, 300);
    let h2 = tokio::task::spawn_blocking(move || h2_stream.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(h2.status.success());
    let expected_h2 = format!("{expected_stream}\n2");
    assert_eq!(String::from_utf8(h2.stdout).unwrap(), expected_h2);
    let mut kw = kw;
    let status = tokio::task::spawn_blocking(move || {
        let s = kw.wait_exit(Duration::from_secs(30));
        (s, kw.log_text())
    })
    .await
    .unwrap();
    let (status, log) = status;
    assert!(
        status
            .expect("keyway did not exit after draining")
            .success(),
        "{log}"
    );
    assert!(
        log.contains("graceful shutdown: nothing in flight"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_with_nothing_in_flight_exits_long_before_the_grace_period() {
    let up = FakeUpstream::start().await;
    let ports = Ports::new();
    let cfg = config(&up, &socket_path(ports));
    let (status, waited, log) = tokio::task::spawn_blocking(move || {
        let mut kw = Proc::start("idle-exit", ports, &cfg, &[], true);
        // A keep-alive connection left idle must not hold the shutdown either.
        let idle = std::net::TcpStream::connect(("127.0.0.1", ports.clear)).unwrap();
        let started = Instant::now();
        kw.signal("TERM");
        // Bounded by a third of the grace period: Pingora alone would sleep all of it.
        let status = kw.wait_exit(Duration::from_secs(GRACE_SECONDS / 3));
        drop(idle);
        (status, started.elapsed(), kw.log_text())
    })
    .await
    .unwrap();
    assert!(
        status.is_some_and(|s| s.success()),
        "still running {waited:?} after SIGTERM: {log}"
    );
    assert!(waited < Duration::from_secs(GRACE_SECONDS / 3));
    assert!(
        log.contains("graceful shutdown: nothing in flight"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upgrade_whose_certificate_cannot_load_fails_before_taking_the_sockets() {
    let up = FakeUpstream::start().await;
    let ports = Ports::new();
    let pki = Pki::new("bad-upgrade-ca");
    let cfg = config_with_tls(&up, ports, &pki);
    let bad = cfg.replace("server.key", "missing.key");
    assert_ne!(bad, cfg);
    let (status, log, still) = tokio::task::spawn_blocking(move || {
        let old = Proc::start("bad-upgrade-old", ports, &cfg, &[], true);
        let mut new = Proc::start("bad-upgrade-new", ports, &bad, &["--upgrade"], false);
        let status = new.wait_exit(Duration::from_secs(20));
        let still = one_request(ports.clear);
        drop(old);
        (status, new.log_text(), still)
    })
    .await
    .unwrap();
    assert_eq!(status.and_then(|s| s.code()), Some(2), "{log}");
    assert!(log.contains("TLS listener: cannot read"), "{log}");
    assert!(!log.contains("Bootstrap starting"), "{log}");
    assert_eq!(still, Ok((200, CHAT_RESPONSE.to_owned())));
}
