//! The TLS listener end to end, with certificates made by the openssl CLI at test time: HTTP/2
//! and HTTP/1.1 by ALPN beside h2c on the clear listener (curl reports the version it spoke), a
//! certificate rotated in place during a request loop (every request answered; the new serial
//! served afterwards), SIGHUP reloads that refuse a bad pair and keep the old one, and client
//! certificates (mTLS) required against a CA file.

mod common;
mod ingress;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{FakeUpstream, CHAT_RESPONSE};
use ingress::{curl_chat, metric, tls_chat, Pki, Ports, Proc, TlsConn};

fn config(up: &FakeUpstream, ports: Ports, crt: &Path, key: &Path, more: &str) -> String {
    format!(
        "[store]\nenabled = false\n[providers.openai]\nbase_url = \"{}/v1\"\napi_key = \"k\"\n[tls]\nlisten = \"127.0.0.1:{}\"\ncert_file = {crt:?}\nkey_file = {key:?}\n{more}",
        up.base(),
        ports.tls
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_and_http1_over_tls_and_h2c_on_the_clear_listener() {
    let up = FakeUpstream::start().await;
    let pki = Pki::new("versions-ca");
    let (crt, key) = pki.issue("server", "localhost", "1001", false);
    let ports = Ports::new();
    let cfg = config(&up, ports, &crt, &key, "[listener]\nh2c = true\n");
    let ca = pki.ca();
    let seen = tokio::task::spawn_blocking(move || {
        let _kw = Proc::start("versions", ports, &cfg, &[], true);
        let ca = ca.to_str().unwrap().to_owned();
        let tls = format!("https://localhost:{}/v1/chat/completions", ports.tls);
        let clear = format!("http://127.0.0.1:{}/v1/chat/completions", ports.clear);
        let resolve = format!("localhost:{}:127.0.0.1", ports.tls);
        [
            curl_chat(&tls, &["--http2", "--cacert", &ca, "--resolve", &resolve]),
            curl_chat(&tls, &["--http1.1", "--cacert", &ca, "--resolve", &resolve]),
            curl_chat(&clear, &["--http2-prior-knowledge"]),
            curl_chat(&clear, &["--http1.1"]),
        ]
    })
    .await
    .unwrap();
    let versions: Vec<_> = seen
        .iter()
        .map(|s| (s.exit, s.version.as_str(), s.status.as_str()))
        .collect();
    assert_eq!(
        versions,
        [
            (0, "2", "200"),
            (0, "1.1", "200"),
            (0, "2", "200"),
            (0, "1.1", "200")
        ]
    );
    for s in &seen {
        assert_eq!(s.body, CHAT_RESPONSE);
    }
    let paths: Vec<_> = up.requests().iter().map(|r| r.uri.clone()).collect();
    assert_eq!(paths, ["/v1/chat/completions"; 4]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_rotated_in_place_serves_next_without_a_failed_request() {
    let up = FakeUpstream::start().await;
    let pki = Pki::new("rotation-ca");
    let (crt, key) = pki.issue("tls", "old.test", "1001", false);
    let (next_crt, next_key) = pki.issue("next", "new.test", "2002", false);
    let ports = Ports::new();
    let cfg = config(&up, ports, &crt, &key, "");
    let ca = pki.ca();
    let new_expiry = Pki::not_after(&next_crt) as f64;
    let (serials, failures, kw) = tokio::task::spawn_blocking(move || {
        let kw = Proc::start("rotation", ports, &cfg, &[], true);
        let (mut serials, mut failures) = (Vec::new(), Vec::new());
        let mut rotated_at = None;
        // Bounded: 40 requests before the rotation, then until the new serial has answered
        // 20 times (at most 400 requests in all).
        for i in 0..400 {
            if i == 40 {
                // In place, the way cert-manager rewrites a mounted pair: certificate, then key.
                std::fs::write(&crt, std::fs::read(&next_crt).unwrap()).unwrap();
                std::fs::write(&key, std::fs::read(&next_key).unwrap()).unwrap();
                rotated_at = Some(i);
            }
            match tls_chat(ports.tls, &ca) {
                Ok(s) if s.status == 200 && s.body == CHAT_RESPONSE => serials.push(s.serial),
                other => failures.push(format!("{other:?}")),
            }
            if serials.iter().filter(|s| *s == "2002").count() == 20 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(rotated_at, Some(40));
        (serials, failures, kw)
    })
    .await
    .unwrap();
    assert_eq!(failures, Vec::<String>::new());
    // Old serial until the reload, the new one from then on, never back.
    let switch = serials
        .iter()
        .position(|s| s == "2002")
        .expect("new serial never served");
    assert!(switch >= 40, "new serial before the rotation: {serials:?}");
    assert!(serials[..switch].iter().all(|s| s == "1001"), "{serials:?}");
    assert!(serials[switch..].iter().all(|s| s == "2002"), "{serials:?}");
    assert_eq!(serials.len(), switch + 20);
    assert_eq!(up.requests().len(), serials.len());
    let expiry = metric(ports.metrics, "keyway_tls_cert_expiry_timestamp_seconds");
    assert_eq!(expiry, Some(new_expiry));
    let ok = metric(ports.metrics, "keyway_tls_reloads_total{outcome=\"ok\"}").unwrap();
    assert!(ok >= 1.0, "{}", kw.log_text());
    assert!(kw
        .log_text()
        .contains("TLS certificate reloaded (file changed): subject CN=new.test, serial 2002"));
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_and_a_bad_pair_keeps_the_old_certificate_serving() {
    let up = FakeUpstream::start().await;
    let pki = Pki::new("sighup-ca");
    let (crt, key) = pki.issue("tls", "old.test", "1001", false);
    let (next_crt, next_key) = pki.issue("next", "new.test", "2002", false);
    let ports = Ports::new();
    let cfg = config(&up, ports, &crt, &key, "watch = false\n");
    let ca = pki.ca();
    let next_key_pem = std::fs::read_to_string(&next_key).unwrap();
    let series = |o: &str| format!("keyway_tls_reloads_total{{outcome=\"{o}\"}}");
    let counts =
        move || ["ok", "invalid", "unchanged"].map(|o| metric(ports.metrics, &series(o)).unwrap());
    tokio::task::spawn_blocking(move || {
        let kw = Proc::start("sighup", ports, &cfg, &[], true);
        // The new certificate with the old key: refused; the old pair serves on.
        std::fs::write(&crt, std::fs::read(&next_crt).unwrap()).unwrap();
        kw.signal("HUP");
        wait_for(|| counts() == [0.0, 1.0, 0.0], "the bad pair to be refused");
        assert_eq!(tls_chat(ports.tls, &ca).unwrap().serial, "1001");
        // A key that is not PEM at all: refused too, and never logged.
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        kw.signal("HUP");
        wait_for(
            || counts() == [0.0, 2.0, 0.0],
            "the unreadable key to be refused",
        );
        assert_eq!(tls_chat(ports.tls, &ca).unwrap().serial, "1001");
        // The matching key: the new pair serves new connections; a connection opened before
        // the reload stays open and keeps working.
        let mut before = TlsConn::open(ports.tls, &ca);
        assert_eq!(before.chat(), (200, CHAT_RESPONSE.to_owned()));
        std::fs::write(&key, &next_key_pem).unwrap();
        kw.signal("HUP");
        wait_for(|| counts() == [1.0, 2.0, 0.0], "the good pair to load");
        let seen = tls_chat(ports.tls, &ca).unwrap();
        assert_eq!((seen.serial.as_str(), seen.status), ("2002", 200));
        assert_eq!(before.chat(), (200, CHAT_RESPONSE.to_owned()));
        assert_eq!(before.serial, "1001");
        kw.signal("HUP");
        wait_for(|| counts() == [1.0, 2.0, 1.0], "an unchanged reload");
        let log = kw.log_text();
        assert!(
            log.contains("does not belong to the first certificate"),
            "{log}"
        );
        assert!(
            log.contains("tls.key is not a readable PEM private key"),
            "{log}"
        );
        assert!(!log.contains("bm90IGEga2V5"), "key material in the log");
        for line in next_key_pem.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!log.contains(line), "key material in the log");
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn client_certificates_are_required_when_a_client_ca_is_set() {
    let up = FakeUpstream::start().await;
    let pki = Pki::new("mtls-ca");
    let (crt, key) = pki.issue("server", "localhost", "1001", false);
    let (client_crt, client_key) = pki.issue("client", "caller", "3003", true);
    let stranger = Pki::new("stranger-ca");
    let (other_crt, other_key) = stranger.issue("client", "stranger", "4004", true);
    let ports = Ports::new();
    let more = format!("client_ca_file = {:?}\n", pki.ca());
    let cfg = config(&up, ports, &crt, &key, &more);
    let ca = pki.ca();
    let seen = tokio::task::spawn_blocking(move || {
        let _kw = Proc::start("mtls", ports, &cfg, &[], true);
        let url = format!("https://localhost:{}/v1/chat/completions", ports.tls);
        let resolve = format!("localhost:{}:127.0.0.1", ports.tls);
        let s = |p: &Path| p.to_str().unwrap().to_owned();
        let base = [
            "--cacert".to_owned(),
            s(&ca),
            "--resolve".to_owned(),
            resolve,
        ];
        let with = |extra: &[String]| {
            let args: Vec<&str> = base.iter().chain(extra).map(String::as_str).collect();
            curl_chat(&url, &args)
        };
        let cert = |c: &Path, k: &Path| ["--cert".to_owned(), s(c), "--key".to_owned(), s(k)];
        let mut http1 = cert(&client_crt, &client_key).to_vec();
        http1.push("--http1.1".to_owned());
        let clear = format!("http://127.0.0.1:{}/v1/chat/completions", ports.clear);
        [
            with(&[]),
            with(&cert(&other_crt, &other_key)),
            with(&http1),
            with(
                &[
                    cert(&client_crt, &client_key).as_slice(),
                    &["--http2".to_owned()],
                ]
                .concat(),
            ),
            // h2c is off here: prior-knowledge HTTP/2 on the clear listener is not understood.
            curl_chat(&clear, &["--http2-prior-knowledge"]),
        ]
    })
    .await
    .unwrap();
    // No certificate and a certificate from another CA: the handshake fails, no HTTP status.
    for refused in &seen[..2] {
        assert_ne!(refused.exit, 0, "{refused:?}");
        assert_eq!(refused.status, "000", "{refused:?}");
    }
    let served: Vec<_> = seen[2..4]
        .iter()
        .map(|s| {
            (
                s.exit,
                s.version.as_str(),
                s.status.as_str(),
                s.body.as_str(),
            )
        })
        .collect();
    assert_eq!(
        served,
        [
            (0, "1.1", "200", CHAT_RESPONSE),
            (0, "2", "200", CHAT_RESPONSE)
        ]
    );
    assert_ne!(seen[4].status, "200", "{:?}", seen[4]);
    assert_eq!(up.requests().len(), 2);
}

/// Polls `done` every 20 ms for at most 10 s.
fn wait_for(done: impl Fn() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_volume_swap_of_the_data_symlink_serves_the_new_certificate() {
    use std::os::unix::fs::symlink;
    let up = FakeUpstream::start().await;
    let pki = Pki::new("volume-ca");
    let (old_crt, old_key) = pki.issue("old", "old.test", "1001", false);
    let (new_crt, new_key) = pki.issue("new", "new.test", "2002", false);
    // The kubelet's layout: tls.crt -> ..data/tls.crt, ..data -> ..<timestamp>/.
    let vol = pki.dir.join("volume");
    let root = vol.clone();
    let version = move |name: &str, crt: &Path, key: &Path| {
        let d = root.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(crt, d.join("tls.crt")).unwrap();
        std::fs::copy(key, d.join("tls.key")).unwrap();
    };
    version("..2026_11_30_one", &old_crt, &old_key);
    symlink("..2026_11_30_one", vol.join("..data")).unwrap();
    symlink("..data/tls.crt", vol.join("tls.crt")).unwrap();
    symlink("..data/tls.key", vol.join("tls.key")).unwrap();
    let ports = Ports::new();
    let cfg = config(&up, ports, &vol.join("tls.crt"), &vol.join("tls.key"), "");
    let ca = pki.ca();
    tokio::task::spawn_blocking(move || {
        let kw = Proc::start("volume", ports, &cfg, &[], true);
        assert_eq!(tls_chat(ports.tls, &ca).unwrap().serial, "1001");
        // The swap: a new version directory, a new symlink renamed over ..data.
        version("..2026_11_30_two", &new_crt, &new_key);
        symlink("..2026_11_30_two", vol.join("..data_tmp")).unwrap();
        std::fs::rename(vol.join("..data_tmp"), vol.join("..data")).unwrap();
        std::fs::remove_dir_all(vol.join("..2026_11_30_one")).unwrap();
        let series = "keyway_tls_reloads_total{outcome=\"ok\"}";
        wait_for(
            || metric(ports.metrics, series) == Some(1.0),
            "the swap to reload",
        );
        let seen = tls_chat(ports.tls, &ca).unwrap();
        assert_eq!((seen.serial.as_str(), seen.status), ("2002", 200));
        assert_eq!(seen.body, CHAT_RESPONSE);
        let invalid = "keyway_tls_reloads_total{outcome=\"invalid\"}";
        assert_eq!(
            metric(ports.metrics, invalid),
            Some(0.0),
            "{}",
            kw.log_text()
        );
    })
    .await
    .unwrap();
}
