//! What starts a reload: `SIGHUP` (which also has the access log reopen its file), a change in
//! the config file's directory, or a new store version (`store.rs`, run beside them). The directory is
//! watched, not the file, because a Kubernetes ConfigMap update replaces a `..data` symlink
//! beside it (the file's own inode never changes) and editors save by rename. Events are
//! debounced, and a reload whose file is unchanged does nothing.

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

impl ReloadService {
    /// Watches the config file's directory; events arrive on `tx`. `None` without a file or
    /// when the directory cannot be watched (SIGHUP still works; the reason is logged).
    fn watch(&self, tx: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
        let path = self.reloader.watched()?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        let name = path.file_name().map(|n| n.to_owned());
        // Only the file itself, or the `..data`-style entries a ConfigMap swaps: other files
        // of the directory (logs, say) change all the time.
        let concerns = move |p: &std::path::Path| {
            let n = p.file_name();
            n == name.as_deref() || n.is_some_and(|n| n.as_encoded_bytes().starts_with(b".."))
        };
        let handler = move |res: notify::Result<notify::Event>| {
            if let Ok(e) = res {
                if !e.kind.is_access() && e.paths.iter().any(|p| concerns(p)) {
                    let _ = tx.try_send(());
                }
            }
        };
        let started = notify::recommended_watcher(handler)
            .and_then(|mut w| w.watch(&dir, RecursiveMode::NonRecursive).map(|_| w));
        match started {
            Ok(w) => {
                log::info!(
                    "watching {} for changes to {}",
                    dir.display(),
                    path.display()
                );
                Some(w)
            }
            Err(e) => {
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
                    // Let the burst of events of one save (or one ConfigMap swap) settle.
                    while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, rx.recv()).await {}
                    self.reloader.reload("file changed").await;
                }
            }
        }
    }
}
