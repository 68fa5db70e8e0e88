//! Shared test harness: a real keyway process on ephemeral ports, and a fake upstream on
//! 127.0.0.1 that records every request it receives so tests assert exactly what keyway sent.
#![allow(dead_code)]

pub mod admin;
pub mod identity;
pub mod jwt;
pub mod postgres;
pub mod secrets;

use std::convert::Infallible;
use std::io::Write;
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify};

/// Sends `signal` (`HUP`, `TERM`, `QUIT`, …) to process `pid` with kill(1).
pub fn send_signal(pid: u32, signal: &str) {
    let ok = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{signal} {pid} failed");
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query as received.
    pub uri: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    /// When the fake received the request head (for measuring gaps between attempts).
    pub at: Instant,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

/// What the fake answers.
pub enum Reply {
    Json {
        status: u16,
        body: String,
        headers: Vec<(&'static str, &'static str)>,
    },
    /// Sends `first`, waits until `gate` is notified, then sends `rest` and ends.
    GatedStream {
        first: Bytes,
        gate: Arc<Notify>,
        rest: Vec<Bytes>,
    },
    Delay(Duration, Box<Reply>),
    /// Answers `status` with `headers` (content-type `text/event-stream` unless given), then
    /// sends `chunks` one per `gap`. With `abort`, the connection is cut after the last chunk
    /// instead of ending the body (an upstream failing mid-stream).
    Stream {
        status: u16,
        headers: Vec<(&'static str, &'static str)>,
        chunks: Vec<Bytes>,
        gap: Duration,
        abort: bool,
    },
}

impl Reply {
    pub fn ok_json(body: &str) -> Reply {
        Reply::Json {
            status: 200,
            body: body.into(),
            headers: vec![],
        }
    }

    /// A JSON answer with `status`.
    pub fn status(status: u16, body: &str) -> Reply {
        Reply::Json {
            status,
            body: body.into(),
            headers: vec![],
        }
    }

    /// A 200 SSE stream of `chunks`, one per `gap`, ending normally.
    pub fn sse(chunks: &[&'static str], gap: Duration) -> Reply {
        Reply::Stream {
            status: 200,
            headers: vec![],
            chunks: chunks
                .iter()
                .map(|c| Bytes::from_static(c.as_bytes()))
                .collect(),
            gap,
            abort: false,
        }
    }
}

type Responder = dyn Fn(&Recorded) -> Reply + Send + Sync;

pub struct FakeUpstream {
    pub port: u16,
    recorded: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

pub const CHAT_RESPONSE: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}"#;

impl FakeUpstream {
    /// A fake that answers every request with a chat completion.
    pub async fn start() -> FakeUpstream {
        Self::with(|_| Reply::ok_json(CHAT_RESPONSE)).await
    }

    pub async fn with(
        responder: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
    ) -> FakeUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let responder: Arc<Responder> = Arc::new(responder);
        let rec = recorded.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let rec = rec.clone();
                let responder = responder.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        handle(req, rec.clone(), responder.clone())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        FakeUpstream {
            port,
            recorded,
            task,
        }
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.recorded.lock().unwrap().clone()
    }

    /// The one request received since the last call; fails if there were zero or several.
    pub fn only(&self) -> Recorded {
        let r = std::mem::take(&mut *self.recorded.lock().unwrap());
        assert_eq!(
            r.len(),
            1,
            "expected exactly one upstream request, got {r:?}"
        );
        r.into_iter().next().unwrap()
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Body errors cut the connection (`Reply::Stream` with `abort`).
type FakeBody = BoxBody<Bytes, std::io::Error>;

async fn handle(
    req: Request<Incoming>,
    rec: Arc<Mutex<Vec<Recorded>>>,
    responder: Arc<Responder>,
) -> Result<Response<FakeBody>, Infallible> {
    let at = Instant::now();
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let r = Recorded {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        headers: parts.headers,
        body,
        at,
    };
    let reply = responder(&r);
    rec.lock().unwrap().push(r);
    Ok(render(reply).await)
}

async fn render(reply: Reply) -> Response<FakeBody> {
    let mut reply = reply;
    while let Reply::Delay(d, inner) = reply {
        tokio::time::sleep(d).await;
        reply = *inner;
    }
    match reply {
        Reply::Json {
            status,
            body,
            headers,
        } => {
            let mut b = Response::builder()
                .status(status)
                .header("content-type", "application/json");
            for (k, v) in headers {
                b = b.header(k, v);
            }
            b.body(
                Full::new(Bytes::from(body))
                    .map_err(|never| match never {})
                    .boxed(),
            )
            .unwrap()
        }
        Reply::GatedStream { first, gate, rest } => {
            let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(8);
            tokio::spawn(async move {
                let _ = tx.send(Ok(Frame::data(first))).await;
                gate.notified().await;
                for chunk in rest {
                    let _ = tx.send(Ok(Frame::data(chunk))).await;
                }
            });
            let stream = tokio_stream_from(rx);
            Response::builder()
                .status(200)
                .header("content-type", "text/event-stream")
                .body(BodyExt::boxed(StreamBody::new(stream)))
                .unwrap()
        }
        Reply::Stream {
            status,
            headers,
            chunks,
            gap,
            abort,
        } => {
            let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(8);
            tokio::spawn(async move {
                for (i, chunk) in chunks.into_iter().enumerate() {
                    if i > 0 {
                        tokio::time::sleep(gap).await;
                    }
                    let _ = tx.send(Ok(Frame::data(chunk))).await;
                }
                if abort {
                    // Let the last chunk reach the wire before the connection is cut.
                    tokio::time::sleep(gap).await;
                    let _ = tx
                        .send(Err(std::io::Error::other("fake upstream: cut mid-stream")))
                        .await;
                }
            });
            let mut b = Response::builder().status(status);
            if !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            {
                b = b.header("content-type", "text/event-stream");
            }
            for (k, v) in headers {
                b = b.header(k, v);
            }
            b.body(BodyExt::boxed(StreamBody::new(tokio_stream_from(rx))))
                .unwrap()
        }
        Reply::Delay(..) => unreachable!(),
    }
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A keyway process; killed on drop. Its stderr goes to a log file under the target dir, kept
/// for the secret-leak scan.
pub struct Keyway {
    pub port: u16,
    pub metrics_port: u16,
    /// The admin API's listener.
    pub admin_port: u16,
    pub log: PathBuf,
    /// The config file keyway runs with (rewrite it to reload).
    pub config: PathBuf,
    child: Child,
}

/// What keyway is started with: config text (written to a file of its own) or a file as it is.
#[derive(Clone, Copy)]
enum Config<'a> {
    Text(&'a str),
    File(&'a Path),
}

pub fn log_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("keyway-logs");
    std::fs::create_dir_all(&d).unwrap();
    d
}

impl Keyway {
    /// Starts keyway with `config` (TOML) and waits for `/readyz`.
    pub async fn start(config: &str) -> Keyway {
        Self::start_with_env(config, &[]).await
    }

    pub async fn start_with_env(config: &str, env: &[(&str, &str)]) -> Keyway {
        Self::start_opts(config, env, "/readyz").await
    }

    /// Starts keyway and waits until `wait_path` on the metrics port answers 200 (`/healthz`
    /// for a keyway that is expected never to become ready).
    pub async fn start_opts(config: &str, env: &[(&str, &str)], wait_path: &str) -> Keyway {
        Self::start_from(Config::Text(config), env, wait_path).await
    }

    /// Starts keyway with the config file at `path` as it is (a test that lays the file out
    /// itself, e.g. as a Kubernetes ConfigMap volume) and waits for `/readyz`.
    pub async fn start_file(path: &Path) -> Keyway {
        Self::start_from(Config::File(path), &[], "/readyz").await
    }

    async fn start_from(config: Config<'_>, env: &[(&str, &str)], wait_path: &str) -> Keyway {
        for _attempt in 0..3 {
            if let Some(k) = Self::try_start(config, env, wait_path).await {
                return k;
            }
        }
        panic!("keyway did not answer {wait_path} in three attempts");
    }

    async fn try_start(
        config: Config<'_>,
        env: &[(&str, &str)],
        wait_path: &str,
    ) -> Option<Keyway> {
        let (port, metrics_port, admin_port) = (free_port(), free_port(), free_port());
        let dir = log_dir();
        // Each instance its own store unless the test shares one (KEYWAY_DATA_DIR in `env`).
        let data = dir.join(format!("data-{port}"));
        let cfg_path = match config {
            Config::File(path) => path.to_path_buf(),
            Config::Text(text) => {
                let p = dir.join(format!("cfg-{port}.toml"));
                std::fs::File::create(&p)
                    .unwrap()
                    .write_all(text.as_bytes())
                    .unwrap();
                p
            }
        };
        let log = dir.join(format!("keyway-{port}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_keyway"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
            .args(["--threads", "1", "--config"])
            .arg(&cfg_path)
            .env("RUST_LOG", "debug")
            .env("KEYWAY_DATA_DIR", &data)
            .env_remove("KEYWAY_STORE_KEY")
            .env_remove("TRUSTED_CUSTOM_HOSTS")
            .env_remove("AZURE_AUTHORITY_HOST")
            .env_remove("IDENTITY_ENDPOINT")
            .env_remove("IDENTITY_HEADER")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut k = Keyway {
            port,
            metrics_port,
            admin_port,
            log,
            config: cfg_path,
            child,
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = k.child.try_wait() {
                eprintln!("keyway exited early ({status}): {}", k.log_text());
                return None;
            }
            let url = format!("http://127.0.0.1:{metrics_port}{wait_path}");
            if let Ok(r) = client.get(url).send().await {
                if r.status() == 200 {
                    return Some(k);
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// A URL on the admin API's listener.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.admin_port, path)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://127.0.0.1:{}/metrics", self.metrics_port))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Replaces the config file the way editors and Kubernetes do: a new file renamed over it.
    pub fn write_config(&self, text: &str) {
        let tmp = self.config.with_extension("toml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.config).unwrap();
    }

    /// Sends `signal` (`HUP`, `TERM`, …) to the process.
    pub fn signal(&self, signal: &str) {
        send_signal(self.child.id(), signal);
    }

    /// The value of one series (`name{labels}` exactly as Prometheus prints it; 0 if absent).
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0.0)
    }

    /// Waits (bounded) until `series` reaches at least `value`.
    pub async fn wait_metric(&self, series: &str, value: f64, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let v = self.metric(series).await;
            if v >= value {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{series} stayed at {v} (wanted {value}) for {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The process id (for reading its `/proc` entries).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Keyway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Records a secret a test handed to keyway, for the suite-wide log scan (tests/run.sh), and
/// returns it.
pub fn secret(value: &str) -> String {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_dir().join("secrets.txt"))
        .unwrap();
    writeln!(f, "{value}").unwrap();
    value.to_owned()
}

/// Asserts a keyway error response: status and `{"status":"failure","message":…}` containing `needle`.
pub async fn assert_failure(resp: reqwest::Response, status: u16, needle: &str) {
    assert_eq!(resp.status().as_u16(), status);
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        "application/json"
    );
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["status"], "failure", "{v}");
    let msg = v["message"].as_str().unwrap();
    assert!(msg.contains(needle), "message {msg:?} lacks {needle:?}");
}

/// Headers that must never reach an upstream.
pub fn assert_no_client_credentials(r: &Recorded, allowed_auth: &str) {
    for (name, value) in &r.headers {
        assert!(
            !name.as_str().starts_with("x-portkey-"),
            "{name} leaked upstream"
        );
        let v = value.to_str().unwrap_or("");
        assert!(!v.contains("client-secret"), "{name}: {v} leaked upstream");
        if matches!(name.as_str(), "authorization" | "api-key" | "x-api-key") {
            assert_eq!(v, allowed_auth, "{name} carried an unexpected credential");
        }
    }
}
