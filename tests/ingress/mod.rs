//! Helpers for the TLS and shutdown tests: certificates made with the openssl CLI, a keyway
//! process on ports the test chooses (an upgrade starts a second one on the same ports), and
//! clients that report what they saw (curl for HTTP versions and mTLS, an openssl client for the
//! served certificate's serial).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};

use crate::common::{free_port, log_dir, send_signal};

pub const CHAT_BODY: &str = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test CA in its own directory, issuing P-256 certificates with the openssl CLI.
pub struct Pki {
    pub dir: PathBuf,
    name: String,
}

impl Pki {
    /// A new CA named `name` (its subject CN) under a fresh directory.
    pub fn new(name: &str) -> Pki {
        let dir = log_dir().join(format!("pki-{name}-{}", free_port()));
        std::fs::create_dir_all(&dir).unwrap();
        run(Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "2"])
            .args(["-subj", &format!("/CN={name}")])
            .arg("-keyout")
            .arg(dir.join("ca.key"))
            .arg("-out")
            .arg(dir.join("ca.crt")));
        Pki {
            dir,
            name: name.into(),
        }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// Issues `<file>.crt` and `<file>.key` for `cn` with `serial` (hex): a server certificate
    /// for 127.0.0.1 and localhost, or a client certificate.
    pub fn issue(&self, file: &str, cn: &str, serial: &str, client: bool) -> (PathBuf, PathBuf) {
        let (crt, key, csr) = (
            self.dir.join(format!("{file}.crt")),
            self.dir.join(format!("{file}.key")),
            self.dir.join(format!("{file}.csr")),
        );
        let ext = self.dir.join(format!("{file}.ext"));
        let usage = match client {
            true => "extendedKeyUsage=clientAuth\n",
            false => "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
        };
        std::fs::write(&ext, usage).unwrap();
        run(Command::new("openssl")
            .args([
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
            ])
            .args(["-subj", &format!("/CN={cn}")])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&csr));
        run(Command::new("openssl")
            .args([
                "x509",
                "-req",
                "-days",
                "2",
                "-set_serial",
                &format!("0x{serial}"),
            ])
            .arg("-in")
            .arg(&csr)
            .arg("-CA")
            .arg(self.ca())
            .arg("-CAkey")
            .arg(self.dir.join("ca.key"))
            .arg("-extfile")
            .arg(&ext)
            .arg("-out")
            .arg(&crt));
        (crt, key)
    }

    /// The notAfter of a certificate file as unix time (openssl's own reading).
    pub fn not_after(crt: &Path) -> i64 {
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-enddate", "-in"])
            .arg(crt)
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let when = text.trim().strip_prefix("notAfter=").unwrap().to_owned();
        let out = Command::new("date")
            .args(["-u", "-d", &when, "+%s"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

/// A keyway process on fixed ports, killed on drop unless it already exited.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

/// The ports one keyway (or the two processes of an upgrade) listens on.
#[derive(Clone, Copy)]
pub struct Ports {
    pub clear: u16,
    pub tls: u16,
    pub metrics: u16,
}

impl Ports {
    pub fn new() -> Ports {
        Ports {
            clear: free_port(),
            tls: free_port(),
            metrics: free_port(),
        }
    }
}

impl Proc {
    /// Starts keyway with `config` (written beside its log) and `extra` arguments; waits until
    /// `/readyz` answers 200 (bounded). With `--upgrade` the old process must be told to hand
    /// over (SIGQUIT) meanwhile, so `wait` is false for it.
    pub fn start(name: &str, ports: Ports, config: &str, extra: &[&str], wait: bool) -> Proc {
        let dir = log_dir();
        let cfg = dir.join(format!("{name}-{}.toml", ports.clear));
        std::fs::write(&cfg, config).unwrap();
        let log = dir.join(format!("{name}-{}-{}.log", ports.clear, extra.len()));
        let child = Command::new(env!("CARGO_BIN_EXE_keyway"))
            .args(["--listen", &format!("127.0.0.1:{}", ports.clear)])
            .args(["--metrics-listen", &format!("127.0.0.1:{}", ports.metrics)])
            .args(["--threads", "1", "--config"])
            .arg(&cfg)
            .args(extra)
            .env("RUST_LOG", "info")
            .env_remove("KEYWAY_STORE_KEY")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut p = Proc { child, log };
        if wait {
            p.wait_ready(ports);
        }
        p
    }

    pub fn wait_ready(&mut self, ports: Ports) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("keyway exited early ({status}): {}", self.log_text());
            }
            if http_status(ports.metrics, "/readyz") == Some(200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("keyway not ready in 20 s: {}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, signal: &str) {
        send_signal(self.child.id(), signal);
    }

    /// Waits (bounded by `within`) for the process to exit.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The status of a plain GET on 127.0.0.1 (`None` when nothing answered).
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    status_of(&out)
}

fn status_of(response: &str) -> Option<u16> {
    response.split(' ').nth(1)?.parse().ok()
}

/// A chat completion over a fresh HTTP/1.1 connection (`Connection: close`), as raw text.
pub fn chat_request() -> String {
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nx-portkey-provider: openai\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{CHAT_BODY}",
        CHAT_BODY.len()
    )
}

/// What one TLS request saw: the served leaf's serial (upper-case hex), the status and body.
#[derive(Debug)]
pub struct TlsSeen {
    pub serial: String,
    pub status: u16,
    pub body: String,
}

/// One chat completion over a new TLS connection verified against `ca`.
pub fn tls_chat(port: u16, ca: &Path) -> Result<TlsSeen, String> {
    let mut b = SslConnector::builder(SslMethod::tls()).map_err(|e| e.to_string())?;
    b.set_ca_file(ca).map_err(|e| e.to_string())?;
    b.set_verify(SslVerifyMode::PEER);
    let tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut tls = b
        .build()
        .connect("localhost", tcp)
        .map_err(|e| format!("handshake: {e}"))?;
    let serial = tls
        .ssl()
        .peer_certificate()
        .ok_or("no peer certificate")?
        .serial_number()
        .to_bn()
        .and_then(|b| b.to_hex_str().map(|s| s.to_string()))
        .map_err(|e| e.to_string())?;
    tls.write_all(chat_request().as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut out = Vec::new();
    match tls.read_to_end(&mut out) {
        Ok(_) => {}
        // A peer that closes without close_notify after a complete answer.
        Err(_) if !out.is_empty() => {}
        Err(e) => return Err(format!("read: {e}")),
    }
    let text = String::from_utf8_lossy(&out).to_string();
    let status = status_of(&text).ok_or_else(|| format!("no HTTP answer: {text:?}"))?;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    Ok(TlsSeen {
        serial,
        status,
        body,
    })
}

/// What curl saw: its exit code, the HTTP version and status it reports, and the body.
#[derive(Debug)]
pub struct CurlSeen {
    pub exit: i32,
    pub version: String,
    pub status: String,
    pub body: String,
}

/// A chat completion with curl; `args` choose the protocol, CA and client certificate.
pub fn curl_chat(url: &str, args: &[&str]) -> CurlSeen {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-w",
            "\n%{http_version} %{http_code}",
        ])
        .args([
            "-H",
            "x-portkey-provider: openai",
            "-H",
            "content-type: application/json",
        ])
        .args(["--data", CHAT_BODY])
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, tail) = text.rsplit_once('\n').unwrap_or(("", &text));
    let (version, status) = tail.split_once(' ').unwrap_or(("", ""));
    CurlSeen {
        exit: out.status.code().unwrap_or(-1),
        version: version.into(),
        status: status.into(),
        body: body.into(),
    }
}

/// The value of one metric series (`name{labels}` as printed; `None` if absent).
pub fn metric(metrics_port: u16, series: &str) -> Option<f64> {
    let mut s = TcpStream::connect(("127.0.0.1", metrics_port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// A kept-alive TLS connection (verified against the CA) carrying one request after another.
pub struct TlsConn {
    stream: openssl::ssl::SslStream<TcpStream>,
    pub serial: String,
}

impl TlsConn {
    pub fn open(port: u16, ca: &Path) -> TlsConn {
        let mut b = SslConnector::builder(SslMethod::tls()).unwrap();
        b.set_ca_file(ca).unwrap();
        let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let stream = b.build().connect("localhost", tcp).unwrap();
        let cert = stream.ssl().peer_certificate().unwrap();
        let serial = cert.serial_number().to_bn().unwrap().to_hex_str().unwrap();
        TlsConn {
            serial: serial.to_string(),
            stream,
        }
    }

    /// Sends a keep-alive chat completion; the status and body of its answer.
    pub fn chat(&mut self) -> (u16, String) {
        let req = chat_request().replace("connection: close\r\n", "");
        self.stream.write_all(req.as_bytes()).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            self.stream.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .expect("an answer with content-length");
        let mut body = vec![0u8; length];
        self.stream.read_exact(&mut body).unwrap();
        (status_of(&head).unwrap(), String::from_utf8(body).unwrap())
    }
}
