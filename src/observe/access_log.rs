//! The access log: one JSON line per request, written by a thread of its own. The request path
//! formats its line and hands it over a bounded queue without waiting: when the queue is full
//! the line is dropped and counted (`keyway_access_log_dropped_total`). The writer wakes every
//! [`TICK`], takes every line waiting, writes them in one go and flushes. It is never woken
//! per line: a wake-up per request (a futex call and a thread switch on the request's core)
//! cost more than the line itself (README, Performance).
//!
//! A file target is reopened on request ([`AccessLog::reopen`], on `SIGHUP`) for logrotate:
//! the writer opens the path anew at its next tick; lines queued meanwhile go to the new file,
//! none is lost.
//!
//! A line never carries a credential, a token, a key hash, a query string or a body: the path
//! is logged without its query, and the only values taken from the traffic are the request id
//! (checked sane), the method, the path and the answer's model name.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use pingora_prometheus::prometheus::IntCounter;
use serde::Serialize;

use crate::config::observe::{AccessLogSettings, LogTarget};

/// Longest path logged (in bytes, cut at a character boundary).
const MAX_PATH: usize = 1024;
/// How often the writer takes the lines waiting (and looks whether to reopen its file). At
/// most this late a line is written; `buffer_lines` must hold a tick's lines (8192 by default:
/// 160 000 requests per second).
pub const TICK: Duration = Duration::from_millis(50);
/// The writer's buffer (flushed whenever the queue is empty).
const BUFFER: usize = 64 * 1024;

/// One request's line. `None` fields print as `null`.
#[derive(Debug, Serialize)]
pub struct Record<'a> {
    /// When the request ended, RFC 3339, UTC, milliseconds.
    pub time: &'a str,
    pub request_id: &'a str,
    pub method: &'a str,
    /// Without the query string.
    pub path: &'a str,
    /// Status sent to the client; 0: none was.
    pub status: u16,
    pub duration_ms: f64,
    /// Request start to the upstream answer's header.
    pub ttfb_ms: Option<f64>,
    /// First upstream attempt to the end of the upstream answer.
    pub upstream_ms: Option<f64>,
    /// Streamed answers: request start to the first event carrying content.
    pub ttft_ms: Option<f64>,
    pub provider: Option<&'a str>,
    pub route: Option<&'a str>,
    /// The strategy's target that answered (leaf index in the config), for requests with one.
    pub target: Option<u32>,
    /// Upstream attempts made.
    pub attempts: u32,
    pub workspace: Option<&'a str>,
    pub virtual_key: Option<&'a str>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub stream: bool,
    pub model: Option<&'a str>,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub total_tokens: Option<u64>,
}

impl Record<'_> {
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).unwrap_or_default();
        line.push('\n');
        line
    }
}

/// `path` cut to [`MAX_PATH`] bytes.
pub fn bounded_path(path: &str) -> &str {
    if path.len() <= MAX_PATH {
        return path;
    }
    let mut end = MAX_PATH;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    &path[..end]
}

/// Milliseconds with microsecond precision.
pub fn ms(d: std::time::Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

/// The current time as the log writes it: RFC 3339, UTC, always three decimals.
pub fn now() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// The handle the request path holds.
#[derive(Debug)]
pub struct AccessLog {
    tx: SyncSender<String>,
    /// `sample` of `u32::MAX + 1`: a request is logged when a random `u32` is below it.
    threshold: u64,
    dropped: IntCounter,
    /// Set to have the writer reopen its file.
    reopen: Arc<AtomicBool>,
}

impl AccessLog {
    /// Opens the target and starts the writer thread.
    pub fn start(s: &AccessLogSettings, dropped: IntCounter) -> io::Result<AccessLog> {
        let (out, path): (Box<dyn Write + Send>, _) = match &s.target {
            LogTarget::Stdout => (Box::new(io::stdout()), None),
            LogTarget::File(p) => (Box::new(open(p)?), Some(p.clone())),
        };
        let (tx, rx) = mpsc::sync_channel(s.buffer_lines);
        let reopen = Arc::new(AtomicBool::new(false));
        let writer = Writer {
            out: BufWriter::with_capacity(BUFFER, out),
            path,
            reopen: reopen.clone(),
        };
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(rx, writer))?;
        Ok(AccessLog {
            tx,
            threshold: (s.sample * (u64::from(u32::MAX) + 1) as f64) as u64,
            dropped,
            reopen,
        })
    }

    /// Has the writer reopen its file (logrotate renamed it); never waits. Nothing for stdout.
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Release);
    }

    /// Whether this request is logged (`sample` 1.0: all, 0.0: none).
    pub fn sampled(&self) -> bool {
        match self.threshold {
            0 => false,
            t if t > u64::from(u32::MAX) => true,
            t => u64::from(rand::random::<u32>()) < t,
        }
    }

    /// Queues a line; never waits.
    pub fn send(&self, line: String) {
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => self.dropped.inc(),
        }
    }
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

struct Writer {
    out: BufWriter<Box<dyn Write + Send>>,
    /// The file's path; `None` for stdout.
    path: Option<PathBuf>,
    reopen: Arc<AtomicBool>,
}

impl Writer {
    /// Reopens the file when asked to; on failure writing goes on to the open one.
    fn reopen_if_asked(&mut self) {
        if !self.reopen.swap(false, Ordering::AcqRel) {
            return;
        }
        let Some(path) = &self.path else { return };
        let _ = self.out.flush();
        match open(path) {
            Ok(f) => {
                self.out = BufWriter::with_capacity(BUFFER, Box::new(f));
                log::info!("access log: reopened {}", path.display());
            }
            Err(e) => log::warn!(
                "access log: cannot reopen {} ({e}); writing on to the file already open",
                path.display()
            ),
        }
    }
}

fn write_lines(rx: Receiver<String>, mut w: Writer) {
    let mut failing = false;
    loop {
        std::thread::sleep(TICK);
        w.reopen_if_asked();
        let out = &mut w.out;
        let mut result = Ok(());
        let mut wrote = false;
        let closed = loop {
            match rx.try_recv() {
                Ok(line) => {
                    result = result.and_then(|()| out.write_all(line.as_bytes()));
                    wrote = true;
                }
                Err(TryRecvError::Empty) => break false,
                Err(TryRecvError::Disconnected) => break true,
            }
        };
        if wrote {
            result = result.and_then(|()| out.flush());
        }
        match (result, failing) {
            (Err(e), false) => {
                log::warn!("access log: writing failed ({e}); lines are lost until it works again");
                failing = true;
            }
            (Ok(()), true) if wrote => {
                log::info!("access log: writing works again");
                failing = false;
            }
            _ => {}
        }
        if closed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(target: LogTarget, sample: f64, buffer_lines: usize) -> AccessLogSettings {
        AccessLogSettings {
            enabled: true,
            target,
            sample,
            buffer_lines,
        }
    }

    #[test]
    fn sampling_is_all_or_nothing_at_the_ends() {
        let none = AccessLog::start(
            &settings(LogTarget::Stdout, 0.0, 1),
            IntCounter::new("a", "a").unwrap(),
        )
        .unwrap();
        let all = AccessLog::start(
            &settings(LogTarget::Stdout, 1.0, 1),
            IntCounter::new("b", "b").unwrap(),
        )
        .unwrap();
        let half = AccessLog::start(
            &settings(LogTarget::Stdout, 0.5, 1),
            IntCounter::new("c", "c").unwrap(),
        )
        .unwrap();
        let n = 10_000;
        assert_eq!((0..n).filter(|_| none.sampled()).count(), 0);
        assert_eq!((0..n).filter(|_| all.sampled()).count(), n);
        let h = (0..n).filter(|_| half.sampled()).count();
        assert!((4000..6000).contains(&h), "{h}");
    }

    #[test]
    fn lines_reach_the_file_and_overflow_is_counted() {
        let path = std::env::temp_dir().join(format!("kw-access-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let dropped = IntCounter::new("d", "d").unwrap();
        let log = AccessLog::start(
            &settings(LogTarget::File(path.clone()), 1.0, 4),
            dropped.clone(),
        )
        .unwrap();
        for i in 0..1000 {
            log.send(format!("{{\"n\":{i}}}\n"));
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let lines = loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let n = text.lines().count() as u64;
            if n + dropped.get() == 1000 || std::time::Instant::now() > deadline {
                break text;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        let n = lines.lines().count() as u64;
        assert_eq!(n + dropped.get(), 1000, "every line written or counted");
        assert!(lines.starts_with("{\"n\":0}\n"));
        let _ = std::fs::remove_file(&path);
    }

    /// Waits (bounded) until `path` holds `n` lines; its text.
    fn wait_lines(path: &Path, n: usize) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if text.lines().count() >= n || std::time::Instant::now() > deadline {
                return text;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_renamed_file_is_reopened_on_request_and_no_line_is_lost() {
        let dir = std::env::temp_dir();
        let path = dir.join(format!("kw-rotate-{}.log", std::process::id()));
        let rotated = path.with_extension("log.1");
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(&rotated);
        let dropped = IntCounter::new("r", "r").unwrap();
        let log = AccessLog::start(
            &settings(LogTarget::File(path.clone()), 1.0, 1024),
            dropped.clone(),
        )
        .unwrap();
        for i in 0..3 {
            log.send(format!("{{\"n\":{i}}}\n"));
        }
        assert_eq!(wait_lines(&path, 3).lines().count(), 3);

        // logrotate: rename, then SIGHUP. A line sent before the reopen still goes to the
        // file the writer holds (now the rotated one).
        std::fs::rename(&path, &rotated).unwrap();
        log.send("{\"n\":3}\n".into());
        assert_eq!(wait_lines(&rotated, 4).lines().count(), 4);
        log.reopen();
        for i in 4..6 {
            log.send(format!("{{\"n\":{i}}}\n"));
        }
        let new = wait_lines(&path, 2);
        assert_eq!(new, "{\"n\":4}\n{\"n\":5}\n");
        let old = std::fs::read_to_string(&rotated).unwrap();
        assert_eq!(old, "{\"n\":0}\n{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n");
        assert_eq!(dropped.get(), 0);

        // With nothing to write, the writer reopens at its next tick: the new file appears.
        std::fs::remove_file(&path).unwrap();
        log.reopen();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !path.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(path.exists(), "reopened without a line to write");
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(&rotated);
    }

    #[test]
    fn paths_are_bounded_and_times_are_rfc3339() {
        assert_eq!(bounded_path("/v1/chat"), "/v1/chat");
        let long = format!("/{}", "é".repeat(MAX_PATH));
        assert!(bounded_path(&long).len() <= MAX_PATH);
        let t = now();
        assert_eq!(t.len(), "2026-01-01T00:00:00.000Z".len(), "{t}");
        assert!(t.ends_with('Z'));
    }
}
