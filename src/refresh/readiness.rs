//! Readiness: set by the refresher once every configured credential holds a token, every mapped
//! secret a value and every JWT validator its keys; read by `/readyz`, which names what is still
//! missing. Once ready, an instance stays ready: later failures are served from the caches
//! (static stability) and show in the metrics, not as a flapping probe.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

#[derive(Debug, Default)]
pub struct Readiness {
    ready: AtomicBool,
    /// What start-up still waits for, one item per entry.
    waiting: ArcSwap<Vec<String>>,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// What is still missing (empty once ready).
    pub fn waiting_for(&self) -> Arc<Vec<String>> {
        self.waiting.load_full()
    }

    /// Records what is missing; an empty list makes the instance ready for good. Returns whether
    /// this call made it ready.
    pub fn update(&self, missing: Vec<String>) -> bool {
        if self.is_ready() {
            return false;
        }
        let done = missing.is_empty();
        self.waiting.store(Arc::new(missing));
        if done {
            self.ready.store(true, Ordering::Release);
        }
        done
    }

    /// The `/readyz` body: `ready`, or what start-up waits for.
    pub fn body(&self) -> String {
        if self.is_ready() {
            return "ready\n".to_owned();
        }
        let waiting = self.waiting_for();
        match waiting.is_empty() {
            true => "starting\n".to_owned(),
            false => format!("not ready; waiting for: {}\n", waiting.join("; ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_what_is_missing_then_latches() {
        let r = Readiness::default();
        assert_eq!(r.body(), "starting\n");
        assert!(!r.update(vec!["credential 'az' (no token yet)".into(), "x".into()]));
        assert_eq!(
            r.body(),
            "not ready; waiting for: credential 'az' (no token yet); x\n"
        );
        assert!(r.update(vec![]));
        assert!(r.is_ready());
        assert!(!r.update(vec!["late".into()]), "stays ready");
        assert_eq!(r.body(), "ready\n");
    }
}
