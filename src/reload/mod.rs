//! Reloading the configuration while serving. A reload reads the file, validates it exactly as
//! `--check-config` does, builds a new runtime over the warm caches, fetches what is new (a
//! bounded wait), publishes it with one atomic swap and activates it. On any error the old
//! runtime keeps serving; the error is logged with its path in the file and counted. Settings a
//! running process cannot change (listeners, threads, work stealing, grace period, `ca_file`)
//! keep their values, and a warning names each one that changed. Triggers (`watch.rs`):
//! `SIGHUP`, and a change in the file's directory (a Kubernetes ConfigMap swaps a symlink there).

mod watch;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::config::{self, Config, Identity};
use crate::env::Env;
use crate::metrics::reload::ReloadOutcome;
use crate::runtime::{self, Runtime, Warm};

pub use watch::ReloadService;

/// How long a reload waits for the new runtime's credentials before it goes live anyway.
pub const WARM_UP_WITHIN: Duration = Duration::from_secs(10);

/// What the command line fixed, applied to every configuration read.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub metrics_listen: Option<String>,
    pub threads: Option<usize>,
}

impl Overrides {
    pub fn apply(&self, c: &mut Config) -> Result<(), config::ConfigError> {
        if let Some(l) = &self.listen {
            c.listen = l.clone();
        }
        if let Some(m) = &self.metrics_listen {
            c.metrics_listen = m.clone();
        }
        if let Some(t) = self.threads {
            c.threads = t;
        }
        config::check_overrides(c)
    }
}

/// The settings only a restart changes, as the process started with them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fixed {
    listen: String,
    metrics_listen: String,
    threads: usize,
    work_stealing: bool,
    grace_period: Duration,
    ca_file: Option<String>,
    watch_config: bool,
    /// Where Entra, IMDS, App Service identity, STS and Secrets Manager are: every token source
    /// and secret fetcher was made against them.
    endpoints: Endpoints,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoints {
    authority: String,
    imds: String,
    app_service: Option<String>,
    aws_region: Option<String>,
    sts: Option<String>,
    secretsmanager: Option<String>,
}

impl Endpoints {
    fn of(c: &Config) -> Endpoints {
        let i = &c.identity;
        Endpoints {
            authority: i.authority.clone(),
            imds: i.imds_endpoint.clone(),
            app_service: i.app_service.as_ref().map(|(e, _)| e.clone()),
            aws_region: i.aws_region.clone(),
            sts: i.sts_endpoint.clone(),
            secretsmanager: i.secretsmanager_endpoint.clone(),
        }
    }
}

impl Fixed {
    fn of(c: &Config) -> Fixed {
        Fixed {
            listen: c.listen.clone(),
            metrics_listen: c.metrics_listen.clone(),
            threads: c.threads,
            work_stealing: c.work_stealing,
            grace_period: c.grace_period,
            ca_file: c.ca_file.clone(),
            watch_config: c.watch_config,
            endpoints: Endpoints::of(c),
        }
    }

    /// The names of the settings `new` changes.
    fn changed(&self, new: &Fixed) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut check = |name, differs: bool| {
            if differs {
                out.push(name);
            }
        };
        check("listen", self.listen != new.listen);
        check("metrics_listen", self.metrics_listen != new.metrics_listen);
        check("threads", self.threads != new.threads);
        check("work_stealing", self.work_stealing != new.work_stealing);
        check(
            "grace_period_seconds",
            self.grace_period != new.grace_period,
        );
        check("ca_file", self.ca_file != new.ca_file);
        check("watch_config", self.watch_config != new.watch_config);
        check("[azure]/[aws] endpoints", self.endpoints != new.endpoints);
        out
    }
}

pub struct Reloader {
    path: Option<PathBuf>,
    env: Env,
    overrides: Overrides,
    fixed: Fixed,
    started_identity: Identity,
    pub runtime: Arc<ArcSwap<Runtime>>,
    pub warm: Arc<Warm>,
    /// One reload at a time.
    busy: tokio::sync::Mutex<()>,
    digest: Mutex<String>,
}

impl Reloader {
    pub fn new(
        path: Option<PathBuf>,
        env: Env,
        overrides: Overrides,
        started_with: &Config,
        runtime: Arc<ArcSwap<Runtime>>,
        warm: Arc<Warm>,
    ) -> Reloader {
        let digest = runtime.load().digest.clone();
        Reloader {
            path,
            env,
            overrides,
            fixed: Fixed::of(started_with),
            started_identity: started_with.identity.clone(),
            runtime,
            warm,
            busy: tokio::sync::Mutex::new(()),
            digest: Mutex::new(digest),
        }
    }

    /// The file to watch, if keyway runs with one and watching is on.
    pub fn watched(&self) -> Option<&PathBuf> {
        self.path.as_ref().filter(|_| self.fixed.watch_config)
    }

    /// Reloads now (`why` names the trigger in the log) and counts the outcome.
    pub async fn reload(&self, why: &str) -> ReloadOutcome {
        let _one = self.busy.lock().await;
        let outcome = self.try_reload(why).await;
        self.warm.metrics.reload.counted(outcome);
        outcome
    }

    async fn try_reload(&self, why: &str) -> ReloadOutcome {
        let Some(path) = &self.path else {
            log::info!("reload ({why}): keyway runs without a config file; nothing to reload");
            return ReloadOutcome::Unchanged;
        };
        let loaded = config::load_with_text(Some(path), &self.env).and_then(|(mut c, text)| {
            self.overrides.apply(&mut c)?;
            Ok((c, text))
        });
        let (cfg, text) = match loaded {
            Ok(v) => v,
            Err(e) => {
                log::error!("reload ({why}) refused, the running configuration stays: {e}");
                return ReloadOutcome::Invalid;
            }
        };
        let digest = runtime::digest_of(&text);
        if *self.digest.lock().unwrap_or_else(|p| p.into_inner()) == digest {
            log::debug!("reload ({why}): {} is unchanged", path.display());
            return ReloadOutcome::Unchanged;
        }
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
        let rt = match runtime::build(&cfg, digest.clone(), &self.warm) {
            Ok(rt) => Arc::new(rt),
            Err(e) => {
                log::error!("reload ({why}) refused, the running configuration stays: {e}");
                return ReloadOutcome::Invalid;
            }
        };
        let warmed = rt.warm_up(&self.warm, WARM_UP_WITHIN).await;
        if !warmed.missing.is_empty() {
            log::warn!(
                "reload ({why}): going live still waiting for: {}",
                warmed.missing.join("; ")
            );
        }
        let previous = self.runtime.swap(rt.clone());
        rt.activate(&self.warm, Some(&previous));
        *self.digest.lock().unwrap_or_else(|p| p.into_inner()) = digest.clone();
        log::info!("reload ({why}): configuration {digest} is live");
        ReloadOutcome::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_settings_that_changed_are_named() {
        let a = config::from_str("", &Env::default()).unwrap();
        let mut b = a.clone();
        b.threads += 1;
        b.listen = "127.0.0.1:1".into();
        b.grace_period = Duration::from_secs(1);
        assert_eq!(
            Fixed::of(&a).changed(&Fixed::of(&b)),
            ["listen", "threads", "grace_period_seconds"]
        );
        assert!(Fixed::of(&a).changed(&Fixed::of(&a)).is_empty());
    }
}
