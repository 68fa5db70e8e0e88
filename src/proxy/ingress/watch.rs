//! What re-reads the TLS listener's certificate: `SIGHUP`, and a change in the certificate's or
//! key's directory. Directories are watched, not files, because a Kubernetes Secret volume swaps
//! a `..data` symlink beside the files and cert-manager or an editor may replace them by rename.
//! Events are debounced so one rotation (certificate, then key) makes one reload.

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

use super::tls::ServedCert;

/// Events closer together than this make one reload.
const DEBOUNCE: Duration = Duration::from_millis(300);

pub struct CertWatch {
    pub served: Arc<ServedCert>,
    /// Watch the directories (`[tls] watch`); SIGHUP reloads either way.
    pub watch: bool,
}

fn dir_of(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

impl CertWatch {
    /// Watches the files' directories; events arrive on `tx`. `None` when off or when a
    /// directory cannot be watched (the reason is logged; SIGHUP still works).
    fn start_watcher(&self, tx: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
        if !self.watch {
            return None;
        }
        let files = self.served.files();
        let names: BTreeSet<OsString> = files
            .iter()
            .filter_map(|f| f.file_name().map(|n| n.to_owned()))
            .collect();
        let dirs: BTreeSet<PathBuf> = files.iter().map(|f| dir_of(f)).collect();
        // The files themselves, or the `..data`-style entries a Secret volume swaps.
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
        let mut watcher = notify::recommended_watcher(handler)
            .map_err(|e| {
                log::warn!("cannot watch the TLS certificate ({e}); reload it with SIGHUP")
            })
            .ok()?;
        for d in &dirs {
            if let Err(e) = watcher.watch(d, RecursiveMode::NonRecursive) {
                log::warn!(
                    "cannot watch {} ({e}); reload the TLS certificate with SIGHUP",
                    d.display()
                );
                return None;
            }
            log::info!("watching {} for TLS certificate changes", d.display());
        }
        Some(watcher)
    }
}

#[async_trait]
impl BackgroundService for CertWatch {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hangup = signal(SignalKind::hangup())
            .map_err(|e| {
                log::warn!("cannot listen for SIGHUP ({e}); TLS reloads follow the files only")
            })
            .ok();
        let (tx, mut rx) = mpsc::channel::<()>(64);
        let _watcher = self.start_watcher(tx);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                Some(_) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => None } } => {
                    self.served.reload("SIGHUP");
                }
                Some(()) = rx.recv() => {
                    while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, rx.recv()).await {}
                    self.served.reload("file changed");
                }
            }
        }
    }
}
