//! What starts a reload: `SIGHUP` (which also has the access log reopen its file), a change in
//! the config file's directory, or a new store version (`store.rs`, run beside them). The directory is
//! watched, not the file, because a Kubernetes ConfigMap update replaces a `..data` symlink
//! beside it (the file's own inode never changes) and editors save by rename. Events are
//! debounced, and a reload whose file is unchanged does nothing.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use notify::{RecursiveMode, Watcher};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use super::Reloader;

/// Events closer together than this make one reload.
const DEBOUNCE: Duration = Duration::from_millis(300);

pub struct ReloadService {
    pub reloader: Arc<Reloader>,
    /// Run on `SIGHUP` before the reload, without waiting (the access log's reopen).
    pub on_hangup: Option<Box<dyn Fn() + Send + Sync>>,
}

/// Watches the directories of `files` (not the files: a ConfigMap or Secret volume swaps a
/// `..data` symlink beside them, editors and cert-manager replace by rename) and sends on `tx`
/// when one of the files or a `..`-entry changes; other entries of the directories are ignored.
/// The error names the directory that could not be watched.
pub fn watch_files(
    files: &[&Path],
    tx: mpsc::Sender<()>,
) -> Result<notify::RecommendedWatcher, (PathBuf, notify::Error)> {
    let names: BTreeSet<OsString> = files
        .iter()
        .filter_map(|f| f.file_name().map(|n| n.to_owned()))
        .collect();
    let dirs: BTreeSet<PathBuf> = files
        .iter()
        .map(|f| match f.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        })
        .collect();
    let concerns = move |p: &Path| {
        p.file_name()
            .is_some_and(|n| names.contains(n) || n.as_encoded_bytes().starts_with(b".."))
    };
    let handler = move |res: notify::Result<notify::Event>| {
        if let Ok(e) = res {
            if !e.kind.is_access() && e.paths.iter().any(|p| concerns(p)) {
                let _ = tx.try_send(());
            }
        }
    };
    let first = dirs.first().cloned().unwrap_or_else(|| PathBuf::from("."));
    let mut watcher = notify::recommended_watcher(handler).map_err(|e| (first, e))?;
    for d in &dirs {
        watcher
            .watch(d, RecursiveMode::NonRecursive)
            .map_err(|e| (d.clone(), e))?;
    }
    Ok(watcher)
}

/// After a first event: waits until the burst of one save (or one volume swap) has settled.
pub async fn settle(rx: &mut mpsc::Receiver<()>) {
    while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, rx.recv()).await {}
}

impl ReloadService {
    /// Watches the config file's directory; events arrive on `tx`. `None` without a file or
    /// when the directory cannot be watched (SIGHUP still works; the reason is logged).
    fn watch(&self, tx: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
        let path = self.reloader.watched()?;
        match watch_files(&[path.as_path()], tx) {
            Ok(w) => {
                log::info!("watching the directory of {} for changes", path.display());
                Some(w)
            }
            Err((dir, e)) => {
                log::warn!(
                    "cannot watch {} ({e}); reload with SIGHUP instead",
                    dir.display()
                );
                None
            }
        }
    }
}

#[async_trait]
impl BackgroundService for ReloadService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                log::warn!("cannot listen for SIGHUP ({e}); reloads follow the file only");
                None
            }
        };
        let (tx, mut rx) = mpsc::channel::<()>(64);
        let _watcher = self.watch(tx);
        let reloader = self.reloader.clone();
        let follower = tokio::spawn(async move { reloader.follow_store().await });
        loop {
            tokio::select! {
                _ = shutdown.changed() => {
                    follower.abort();
                    return;
                }
                Some(_) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => None } } => {
                    if let Some(hook) = &self.on_hangup {
                        hook();
                    }
                    self.reloader.reload("SIGHUP").await;
                }
                Some(()) = rx.recv() => {
                    settle(&mut rx).await;
                    self.reloader.reload("file changed").await;
                }
            }
        }
    }
}
