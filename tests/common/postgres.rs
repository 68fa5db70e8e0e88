//! A throwaway PostgreSQL 15 server (Debian's packages, installed by tests/setup.sh) for
//! end-to-end tests: its own cluster in a temporary directory, listening on 127.0.0.1 and a
//! port chosen at run time, trust authentication for the superuser `keyway`, and a database
//! `keyway`. Tests can stop it and start it again on the same port and data directory
//! (`stop`, `restart`); dropping it stops the server and removes the directory.
//!
//! PostgreSQL refuses to run as root: as root (CI), every server-side binary runs through
//! `runuser -u postgres` and the directory belongs to `postgres`; as any other user, the
//! binaries run directly as that user.
//!
//! Standalone (it needs nothing from tests/common/mod.rs) so that a test target can include it
//! alone with `#[path = "common/postgres.rs"] mod postgres;`.
#![allow(dead_code)]

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Debian's PostgreSQL 15 binaries (package postgresql-15).
const BIN: &str = "/usr/lib/postgresql/15/bin";
/// Prefix of the temporary directories, followed by `<pid>-<n>-<nanos>`.
const PREFIX: &str = "keyway-pg-";
/// Upper bound of every wait: initdb, start, stop, readiness, one psql call.
const WAIT: Duration = Duration::from_secs(20);

pub struct Postgres {
    inner: Arc<Inner>,
}

struct Inner {
    /// The temporary directory: `data/` (the cluster), `log` (the server's log) and the Unix
    /// socket. Owned by `postgres` when running as root.
    dir: PathBuf,
    /// Chosen once the server first started; the same on every restart.
    port: AtomicU16,
    /// Server-side binaries run through `runuser -u postgres` (the test runs as root).
    as_postgres: bool,
}

impl Postgres {
    /// Initialises a cluster, starts it and creates the database `keyway`. `None` (with the
    /// reason on stderr) when PostgreSQL is not installed or cannot run as this user; a panic
    /// instead when KEYWAY_REQUIRE_INTEROP is set (tests/run.sh: there, skipping is a failure).
    pub async fn start() -> Option<Postgres> {
        tokio::task::spawn_blocking(Self::start_blocking)
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    fn start_blocking() -> Option<Postgres> {
        if !Path::new(BIN).join("initdb").is_file() {
            return skip(&format!(
                "{BIN}/initdb missing: PostgreSQL 15 is not installed (tests/setup.sh installs it)"
            ));
        }
        let as_postgres = is_root();
        let owner = if as_postgres {
            if !Path::new("/usr/sbin/runuser").exists() && !on_path("runuser") {
                return skip("running as root and runuser (util-linux) is missing");
            }
            match postgres_ids() {
                Some(ids) => Some(ids),
                None => return skip("running as root and there is no `postgres` user"),
            }
        } else {
            None
        };
        sweep_stale(as_postgres);

        let dir = unique_dir();
        std::fs::create_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        // From here on, dropping `pg` (also on a panic) stops the server and removes `dir`.
        let pg = Postgres {
            inner: Arc::new(Inner {
                dir,
                port: AtomicU16::new(0),
                as_postgres,
            }),
        };
        let me = &*pg.inner;
        // World-traversable, so `postgres` reaches it when it belongs to root's temp dir.
        std::fs::set_permissions(&me.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&me.dir, Some(uid), Some(gid))
                .unwrap_or_else(|e| panic!("cannot chown {} to postgres: {e}", me.dir.display()));
        }

        // -E UTF8 --locale=C: no dependency on the host's locales (only C exists everywhere)
        // and no warning about an unset or missing LANG. -N: no fsync, the cluster is disposable.
        let data = me.data();
        let initdb = run(
            me.server_cmd("initdb").args([
                "-D".as_ref(),
                data.as_os_str(),
                "-A".as_ref(),
                "trust".as_ref(),
                "-U".as_ref(),
                "keyway".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--locale=C".as_ref(),
                "-N".as_ref(),
            ]),
            WAIT,
        );
        if let Err(e) = initdb {
            if as_postgres {
                panic!(
                    "initdb as postgres failed (postgres must be able to traverse every parent \
                     of {}: check TMPDIR): {e}",
                    me.dir.display()
                );
            }
            // Not root: this user may simply not be able to run PostgreSQL here.
            return skip(&format!("initdb failed as this user: {e}"));
        }

        // The port was free a moment ago; another process may take it before the server binds
        // it: a few attempts, each on a new port.
        let mut last = String::new();
        for _ in 0..3 {
            me.port.store(free_port(), Ordering::Relaxed);
            match me.start_server() {
                Ok(()) => {
                    run(
                        Command::new(Path::new(BIN).join("createdb")).args([
                            "-h",
                            "127.0.0.1",
                            "-p",
                            &me.port().to_string(),
                            "-U",
                            "keyway",
                            "keyway",
                        ]),
                        WAIT,
                    )
                    .unwrap_or_else(|e| panic!("createdb keyway failed: {e}"));
                    return Some(pg);
                }
                Err(e) => {
                    last = e;
                    me.stop_blocking();
                }
            }
        }
        panic!(
            "PostgreSQL did not start: {last}\n--- server log:\n{}",
            me.log()
        );
    }

    /// `postgres://keyway@127.0.0.1:PORT/keyway`: superuser `keyway`, trust authentication.
    pub fn url(&self) -> String {
        format!("postgres://keyway@127.0.0.1:{}/keyway", self.port())
    }

    pub fn port(&self) -> u16 {
        self.inner.port()
    }

    /// The server's log (for assertion messages).
    pub fn log(&self) -> String {
        self.inner.log()
    }

    /// Fast shutdown (`pg_ctl stop -m fast`): open sessions are disconnected. Returns once the
    /// server has exited and closed its port. Idempotent.
    pub async fn stop(&self) {
        let me = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            me.stop_blocking();
            assert!(
                !me.running(),
                "PostgreSQL on port {} did not stop\n--- server log:\n{}",
                me.port(),
                me.log()
            );
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    }

    /// Starts the server again on the same port and data directory; returns once it accepts
    /// TCP connections. Panics if it does not (the port may have been taken meanwhile).
    pub async fn restart(&self) {
        let me = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            me.stop_blocking();
            if let Err(e) = me.start_server() {
                panic!(
                    "PostgreSQL did not restart on port {}: {e}\n--- server log:\n{}",
                    me.port(),
                    me.log()
                );
            }
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    }

    /// Runs `sql` with `psql -At` in the database `keyway` and returns its stdout without the
    /// final newline: one line per row, columns separated by `|`. With several statements,
    /// only the last one's rows are printed. Panics with psql's stderr when it fails. Blocking.
    pub fn psql(&self, sql: &str) -> String {
        let mut out = run(
            Command::new(Path::new(BIN).join("psql"))
                .args([
                    "-X",
                    "-At",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port().to_string(),
                    "-U",
                    "keyway",
                    "-d",
                    "keyway",
                    "-c",
                    sql,
                ])
                .env("PGOPTIONS", "-c statement_timeout=15s"),
            WAIT,
        )
        .unwrap_or_else(|e| panic!("psql {sql:?} failed: {e}"));
        if out.ends_with('\n') {
            out.pop();
        }
        out
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let me = &*self.inner;
        me.stop_blocking();
        if let Err(e) = std::fs::remove_dir_all(&me.dir) {
            eprintln!("postgres harness: cannot remove {}: {e}", me.dir.display());
        }
    }
}

impl Inner {
    fn port(&self) -> u16 {
        self.port.load(Ordering::Relaxed)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// The server writes postmaster.pid on start and removes it on a clean stop.
    fn running(&self) -> bool {
        self.data().join("postmaster.pid").exists()
    }

    /// A server-side binary of BIN, as `postgres` when running as root.
    fn server_cmd(&self, bin: &str) -> Command {
        let path = Path::new(BIN).join(bin);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        // `postgres` may not be allowed into the caller's working directory.
        cmd.current_dir(&self.dir);
        cmd
    }

    /// `pg_ctl start` on the port, then waits until 127.0.0.1:port accepts connections.
    fn start_server(&self) -> Result<(), String> {
        let port = self.port().to_string();
        // pg_ctl hands -o to /bin/sh: single-quote the socket directory.
        let opts = format!(
            "-p {port} -k '{}' -c listen_addresses=127.0.0.1 -c fsync=off",
            self.dir.display()
        );
        let data = self.data();
        let log = self.dir.join("log");
        let secs = WAIT.as_secs().to_string();
        run(
            self.server_cmd("pg_ctl").args([
                "-D".as_ref(),
                data.as_os_str(),
                "-o".as_ref(),
                opts.as_ref(),
                "-l".as_ref(),
                log.as_os_str(),
                "-w".as_ref(),
                "-t".as_ref(),
                secs.as_ref(),
                "start".as_ref(),
            ]),
            WAIT + Duration::from_secs(5),
        )?;
        // pg_ctl -w checks through the Unix socket; wait for TCP too, which is what tests use.
        let deadline = Instant::now() + WAIT;
        loop {
            let ready = run(
                Command::new(Path::new(BIN).join("pg_isready")).args([
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "-U",
                    "keyway",
                    "-d",
                    "postgres",
                    "-t",
                    "2",
                ]),
                Duration::from_secs(5),
            );
            match ready {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() >= deadline => {
                    return Err(format!("not ready on 127.0.0.1:{port}: {e}"))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Stops the server if it runs: fast, then immediate, then SIGKILL to the postmaster.
    fn stop_blocking(&self) {
        for mode in ["fast", "immediate"] {
            if !self.running() {
                return;
            }
            let secs = WAIT.as_secs().to_string();
            let data = self.data();
            let r = run(
                self.server_cmd("pg_ctl").args([
                    "-D".as_ref(),
                    data.as_os_str(),
                    "-m".as_ref(),
                    mode.as_ref(),
                    "-w".as_ref(),
                    "-t".as_ref(),
                    secs.as_ref(),
                    "stop".as_ref(),
                ]),
                WAIT + Duration::from_secs(5),
            );
            if let Err(e) = r {
                eprintln!("postgres harness: pg_ctl stop -m {mode} failed: {e}");
            }
        }
        if let Some(pid) = self.postmaster_pid() {
            eprintln!("postgres harness: killing postmaster {pid}");
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = std::fs::remove_file(self.data().join("postmaster.pid"));
    }

    fn postmaster_pid(&self) -> Option<u32> {
        let pidfile = std::fs::read_to_string(self.data().join("postmaster.pid")).ok()?;
        pidfile.lines().next()?.trim().parse().ok()
    }
}

/// Runs `cmd` with a deadline; stdout on success, else the exit status and stderr. The pipes
/// are read on threads and given up on shortly after the exit too, in case a daemonised child
/// kept them open.
fn run(cmd: &mut Command, timeout: Duration) -> Result<String, String> {
    for var in [
        "PGHOST",
        "PGHOSTADDR",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGSERVICE",
        "PGSSLMODE",
        "PGPASSFILE",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("PGCONNECT_TIMEOUT", "5")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let what = format!("{cmd:?}");
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("{what}: cannot run: {e}"))?;
    let reader = |mut pipe: Box<dyn Read + Send>| {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
        });
        rx
    };
    let out = reader(Box::new(child.stdout.take().unwrap()));
    let err = reader(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| format!("{what}: {e}"))? {
            break Some(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let grace = Duration::from_secs(2);
    let stdout = out.recv_timeout(grace).unwrap_or_default();
    let stderr = err.recv_timeout(grace).unwrap_or_default();
    match status {
        Some(s) if s.success() => Ok(stdout),
        Some(s) => Err(format!("{what}: {s}\n{}", stderr.trim_end())),
        None => Err(format!(
            "{what}: timed out after {timeout:?}\n{}",
            stderr.trim_end()
        )),
    }
}

/// `None`, with the reason on stderr; a panic when KEYWAY_REQUIRE_INTEROP is set, as in the
/// other tests (tests/run.sh sets it after tests/setup.sh installed everything).
fn skip(why: &str) -> Option<Postgres> {
    assert!(
        std::env::var_os("KEYWAY_REQUIRE_INTEROP").is_none(),
        "PostgreSQL unavailable: {why}"
    );
    eprintln!("SKIP: PostgreSQL unavailable: {why}");
    None
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether 127.0.0.1:port accepts a TCP connection now.
pub fn accepts(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)).is_ok()
}

fn is_root() -> bool {
    // /proc/self belongs to the effective user.
    match std::fs::metadata("/proc/self") {
        Ok(m) => m.uid() == 0,
        Err(_) => Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false),
    }
}

fn on_path(bin: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
        .unwrap_or(false)
}

/// uid and gid of the `postgres` user.
fn postgres_ids() -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let o = Command::new("id").args([flag, "postgres"]).output().ok()?;
        if !o.status.success() {
            return None;
        }
        String::from_utf8_lossy(&o.stdout).trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

fn unique_dir() -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!(
        "{PREFIX}{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Stops the servers and removes the directories that earlier test processes, killed before
/// their `Drop` ran, left behind: those whose process id (in the name) no longer exists.
fn sweep_stale(as_postgres: bool) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        eprintln!(
            "postgres harness: removing {} left by process {pid}",
            entry.path().display()
        );
        // Its Drop stops the server (if any) and removes the directory.
        drop(Postgres {
            inner: Arc::new(Inner {
                dir: entry.path(),
                port: AtomicU16::new(0),
                as_postgres,
            }),
        });
    }
}
