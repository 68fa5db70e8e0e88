//! Circuit breakers of stored configs and front-door routes, found again by owner and target
//! path on every rebuild, so a reload that keeps a target keeps its circuit's state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::routing::strategy::{Breaker, CbConfig};

/// One circuit: whose it is (`config:<slug>` or `route:<name>`), which target, and its state.
#[derive(Debug, Clone)]
pub struct Circuit {
    pub owner: Arc<str>,
    pub target: Arc<str>,
    pub breaker: Arc<Breaker>,
}

/// Every circuit of the runtimes built so far, by owner and target path.
#[derive(Debug, Default)]
pub struct Circuits {
    by_key: Mutex<HashMap<(String, String), Circuit>>,
}

impl Circuits {
    /// The circuit of `owner`'s target at `path`: the existing one when its settings are
    /// unchanged, else a new, closed one. It is added to `used`, the runtime's list.
    pub fn circuit(
        &self,
        owner: &str,
        path: &str,
        cfg: &CbConfig,
        used: &mut Vec<Circuit>,
    ) -> Arc<Breaker> {
        let mut map = self.by_key.lock().unwrap_or_else(|e| e.into_inner());
        let key = (owner.to_owned(), path.to_owned());
        if let Some(c) = map.get(&key) {
            if c.breaker.config() == cfg {
                used.push(c.clone());
                return c.breaker.clone();
            }
        }
        let c = Circuit {
            owner: Arc::from(owner),
            target: Arc::from(path),
            breaker: Arc::new(Breaker::new(cfg.clone())),
        };
        let breaker = c.breaker.clone();
        used.push(c.clone());
        map.insert(key, c);
        breaker
    }

    /// Forgets the circuits the active runtime (`keep`) does not use.
    pub fn retain(&self, keep: &[Circuit]) {
        let mut map = self.by_key.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, c| keep.iter().any(|k| Arc::ptr_eq(&k.breaker, &c.breaker)));
    }
}
