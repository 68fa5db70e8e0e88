//! What re-reads the TLS listener's certificate: `SIGHUP`, and a change in the certificate's or
//! key's directory. Directories are watched, not files, because a Kubernetes Secret volume swaps
//! a `..data` symlink beside the files and cert-manager or an editor may replace them by rename.
//! Events are debounced so one rotation (certificate, then key) makes one reload.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use super::tls::ServedCert;
use crate::reload::watch::{settle, watch_files};

pub struct CertWatch {
    pub served: Arc<ServedCert>,
    /// Watch the directories (`[tls] watch`); SIGHUP reloads either way.
    pub watch: bool,
}

impl CertWatch {
    /// Watches the files' directories; events arrive on `tx`. `None` when off or when a
    /// directory cannot be watched (the reason is logged; SIGHUP still works).
    fn start_watcher(&self, tx: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
        if !self.watch {
            return None;
        }
        match watch_files(&self.served.files(), tx) {
            Ok(w) => {
                log::info!("watching the TLS certificate's and key's directories for changes");
                Some(w)
            }
            Err((dir, e)) => {
                log::warn!(
                    "cannot watch {} ({e}); reload the TLS certificate with SIGHUP",
                    dir.display()
                );
                None
            }
        }
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
                    settle(&mut rx).await;
                    self.served.reload("file changed");
                }
            }
        }
    }
}
