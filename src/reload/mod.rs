//! Rebuilding the runtime while serving. The runtime is built from two sources: the config file
//! and the control plane's store (a snapshot of its rows at one version). A reload re-reads one
//! of them, validates both together exactly as `--check-config` validates a file, builds a new
//! runtime over the warm caches, fetches what is new (a bounded wait), publishes it with one
//! atomic swap and activates it. On any error the old runtime keeps serving; the error is
//! logged with its path and counted. Settings a running process cannot change keep their values
//! (`fixed.rs`), and a warning names each one that changed.
//!
//! Triggers: `SIGHUP` and a change in the file's directory (`watch.rs`); a new store version,
//! seen by a notification, the periodic version check or this instance's own admin write
//! (`store.rs`).

mod fixed;
mod store;
pub mod watch;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};

use crate::config::{self, Config, ConfigError, FileConfig, Identity};
use crate::env::Env;
use crate::metrics::reload::ReloadOutcome;
use crate::runtime::{self, Runtime, Warm};
use crate::store::{Row, Snapshot, Store, StoreSettings};

use fixed::Fixed;
pub use fixed::Overrides;
pub use watch::ReloadService;

/// How long a reload waits for the new runtime's credentials before it goes live anyway.
pub const WARM_UP_WITHIN: Duration = Duration::from_secs(10);

/// Where the configuration comes from: the file (its path, as parsed at start and its text's
/// digest), the environment and the command line's overrides.
pub struct Origin {
    pub path: Option<PathBuf>,
    pub env: Env,
    pub overrides: Overrides,
    pub file: FileConfig,
    pub file_digest: String,
}

/// What the running runtime was built from.
struct Sources {
    file: Arc<FileConfig>,
    /// Digest of the file's text.
    file_digest: String,
    /// The store's rows as last loaded (`None`: not loaded yet).
    snapshot: Option<Arc<Snapshot>>,
}

pub struct Reloader {
    path: Option<PathBuf>,
    env: Env,
    overrides: Overrides,
    fixed: Fixed,
    started_identity: Identity,
    pub runtime: Arc<ArcSwap<Runtime>>,
    pub warm: Arc<Warm>,
    /// One rebuild at a time.
    busy: tokio::sync::Mutex<()>,
    sources: Mutex<Sources>,
    /// The store, once connected.
    store: ArcSwapOption<Store>,
}

/// The digest that names a runtime: the file's, and the store version it includes.
fn digest(file_digest: &str, snapshot: Option<&Snapshot>) -> String {
    match snapshot {
        Some(s) => format!("{file_digest}-v{}", s.version),
        None => file_digest.to_owned(),
    }
}

impl Reloader {
    /// `started_with` is the configuration the process started with, validated from
    /// `origin.file`.
    pub fn new(
        origin: Origin,
        started_with: &Config,
        runtime: Arc<ArcSwap<Runtime>>,
        warm: Arc<Warm>,
    ) -> Reloader {
        Reloader {
            path: origin.path,
            env: origin.env,
            overrides: origin.overrides,
            fixed: Fixed::of(started_with),
            started_identity: started_with.identity.clone(),
            runtime,
            warm,
            busy: tokio::sync::Mutex::new(()),
            sources: Mutex::new(Sources {
                file: Arc::new(origin.file),
                file_digest: origin.file_digest,
                snapshot: None,
            }),
            store: ArcSwapOption::empty(),
        }
    }

    fn sources(&self) -> std::sync::MutexGuard<'_, Sources> {
        self.sources.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The config file as the running runtime has it.
    pub fn file(&self) -> Arc<FileConfig> {
        self.sources().file.clone()
    }

    /// The store's rows as last loaded (empty before the first load).
    pub fn rows(&self) -> Arc<Vec<Row>> {
        self.sources()
            .snapshot
            .as_ref()
            .map_or_else(Default::default, |s| Arc::new(s.rows.clone()))
    }

    /// The store version last loaded.
    pub fn version(&self) -> Option<i64> {
        self.sources().snapshot.as_ref().map(|s| s.version)
    }

    pub fn env(&self) -> &Env {
        &self.env
    }

    /// The store, when connected.
    pub fn store(&self) -> Option<Arc<Store>> {
        self.store.load_full()
    }

    pub fn store_settings(&self) -> Option<&StoreSettings> {
        self.fixed.store.as_ref()
    }

    /// The file to watch, if keyway runs with one and watching is on.
    pub fn watched(&self) -> Option<&PathBuf> {
        self.path.as_ref().filter(|_| self.fixed.watch_config)
    }

    /// Re-reads the config file (`why` names the trigger in the log), rebuilds with the store
    /// snapshot this instance has, and counts the outcome.
    pub async fn reload(&self, why: &str) -> ReloadOutcome {
        let _one = self.busy.lock().await;
        let outcome = self.reload_file(why).await;
        self.warm.metrics.reload.counted(outcome);
        outcome
    }

    async fn reload_file(&self, why: &str) -> ReloadOutcome {
        let Some(path) = &self.path else {
            log::info!("reload ({why}): keyway runs without a config file; nothing to reload");
            return ReloadOutcome::Unchanged;
        };
        let (file, text) = match config::parse(Some(path)) {
            Ok(v) => v,
            Err(e) => {
                log::error!("reload ({why}) refused, the running configuration stays: {e}");
                return ReloadOutcome::Invalid;
            }
        };
        let file_digest = runtime::digest_of(&text);
        let snapshot = {
            let s = self.sources();
            if s.file_digest == file_digest {
                log::debug!("reload ({why}): {} is unchanged", path.display());
                return ReloadOutcome::Unchanged;
            }
            s.snapshot.clone()
        };
        let outcome = self
            .rebuild(&file, &file_digest, snapshot.as_deref(), why)
            .await;
        if outcome == ReloadOutcome::Ok {
            let mut s = self.sources();
            s.file = Arc::new(file);
            s.file_digest = file_digest;
        }
        outcome
    }

    /// Makes the store's version `at_least` (or newer) live: loads the snapshot unless this
    /// instance already has it, and rebuilds with the file as it runs. `at_least = 0` loads
    /// whatever the store has. Counted in the store's metrics (`keyway_store_*`), not as a
    /// config reload; on an error the running runtime stays.
    pub async fn reload_store(&self, at_least: i64, why: &str) -> Option<ReloadOutcome> {
        let _one = self.busy.lock().await;
        if self.version().is_some_and(|v| v >= at_least) && at_least > 0 {
            return Some(ReloadOutcome::Unchanged);
        }
        let store = self.store()?;
        let snapshot = match store.snapshot().await {
            Ok(s) => Arc::new(s),
            Err(e) => {
                self.warm.metrics.store_error("snapshot");
                log::warn!("store: reading the snapshot failed, the running one stays: {e}");
                self.warm
                    .set_store_problem(Some(format!("cannot read it: {e}")));
                return None;
            }
        };
        self.warm.metrics.control.checked_now();
        let (file, file_digest, had) = {
            let s = self.sources();
            (s.file.clone(), s.file_digest.clone(), s.snapshot.clone())
        };
        if had.as_ref().is_some_and(|h| h.version == snapshot.version) {
            return Some(ReloadOutcome::Unchanged);
        }
        // Rows are the store's truth whether or not they fit the file: the admin API lists them,
        // and the next file reload builds with them.
        self.sources().snapshot = Some(snapshot.clone());
        let outcome = self
            .rebuild(&file, &file_digest, Some(&snapshot), why)
            .await;
        if outcome == ReloadOutcome::Ok {
            self.warm.set_store_problem(None);
            self.warm
                .metrics
                .control
                .live(snapshot.version, &snapshot.changed_at);
        } else {
            self.warm.metrics.store_error("apply");
            self.warm.set_store_problem(Some(format!(
                "version {} does not fit the config file (see the log)",
                snapshot.version
            )));
        }
        Some(outcome)
    }

    /// Brings this instance's snapshot up to the store's current version before an admin read
    /// (so a read after a write through another instance sees it). Bounded: when the store
    /// does not answer within a second, the snapshot this instance has is what is read.
    pub async fn catch_up(&self) {
        let Some(store) = self.store() else {
            return;
        };
        match tokio::time::timeout(Duration::from_secs(1), store.version()).await {
            Ok(Ok(v)) if self.version() != Some(v) => {
                self.reload_store(v, "admin read").await;
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                self.warm.metrics.store_error("poll");
                log::debug!("store: admin read served from the snapshot: {e}");
            }
            Err(_) => log::debug!("store: admin read served from the snapshot (no answer)"),
        }
    }

    /// The configuration of `file` and `snapshot` together, as the running process applies it.
    fn assemble(
        &self,
        file: &FileConfig,
        snapshot: Option<&Snapshot>,
    ) -> Result<Config, ConfigError> {
        let sections =
            snapshot.map_or_else(Default::default, |s| config::stored::sections(&s.rows));
        let (mut cfg, skipped) = config::validate_merged(file, sections, &self.env)?;
        for s in skipped {
            log::warn!("store: {s} is also declared in the config file; the file's is used");
        }
        self.overrides.apply(&mut cfg)?;
        Ok(cfg)
    }

    async fn rebuild(
        &self,
        file: &FileConfig,
        file_digest: &str,
        snapshot: Option<&Snapshot>,
        why: &str,
    ) -> ReloadOutcome {
        let cfg = match self.assemble(file, snapshot) {
            Ok(c) => c,
            Err(e) => {
                log::error!("reload ({why}) refused, the running configuration stays: {e}");
                return ReloadOutcome::Invalid;
            }
        };
        let mut cfg = cfg;
        let changed = self.fixed.changed(&Fixed::of(&cfg));
        // The identity endpoints stay those the process started with (the token sources and
        // fetchers of the warm caches were made against them).
        cfg.identity = Identity {
            token_idle: cfg.identity.token_idle,
            token_max: cfg.identity.token_max,
            ambient_from_headers: cfg.identity.ambient_from_headers,
            ..self.started_identity.clone()
        };
        if !changed.is_empty() {
            log::warn!(
                "reload ({why}): {} changed but take effect only at a restart; the running values stay",
                changed.join(", ")
            );
        }
        let digest = digest(file_digest, snapshot);
        let mut rt = match runtime::build(&cfg, digest.clone(), &self.warm) {
            Ok(rt) => rt,
            Err(e) => {
                log::error!("reload ({why}) refused, the running configuration stays: {e}");
                return ReloadOutcome::Invalid;
            }
        };
        rt.awaits_store = self.fixed.store.is_some() && snapshot.is_none();
        let rt = Arc::new(rt);
        let warmed = rt
            .warm_up(&self.warm, WARM_UP_WITHIN, Some(&self.runtime.load()))
            .await;
        if !warmed.missing.is_empty() {
            log::warn!(
                "reload ({why}): going live still waiting for: {}",
                warmed.missing.join("; ")
            );
        }
        let previous = self.runtime.swap(rt.clone());
        rt.activate(&self.warm, Some(&previous));
        log::info!("reload ({why}): configuration {digest} is live");
        ReloadOutcome::Ok
    }
}
