//! `keyway_requests_total` children for one runtime's routes: route names change with the
//! configuration, so each runtime carries its own counters, created when it is built, and a
//! reload removes the series of routes it dropped.

use pingora_prometheus::prometheus::{IntCounter, IntCounterVec};

/// Counters indexed `[provider][route][class]`, provider 0 being "none".
#[derive(Debug)]
pub struct RouteCounters {
    names: Vec<String>,
    counters: Vec<IntCounter>,
    classes: usize,
}

impl RouteCounters {
    pub(super) fn new<'a>(
        vec: &IntCounterVec,
        names: &[String],
        providers: impl Iterator<Item = &'a str>,
        classes: &[&str],
    ) -> RouteCounters {
        let mut counters = Vec::new();
        for p in providers {
            for r in names {
                for c in classes {
                    counters.push(vec.with_label_values(&[p, r.as_str(), c]));
                }
            }
        }
        RouteCounters {
            names: names.to_vec(),
            counters,
            classes: classes.len(),
        }
    }

    /// The route labels, in `RouteId` order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub(super) fn inc(&self, provider: usize, route: usize, class: usize) {
        let routes = self.names.len();
        let r = route.min(routes.saturating_sub(1));
        if let Some(c) = self
            .counters
            .get((provider * routes + r) * self.classes + class)
        {
            c.inc();
        }
    }

    pub(super) fn retire<'a>(
        &self,
        vec: &IntCounterVec,
        new: &RouteCounters,
        providers: impl Iterator<Item = &'a str>,
        classes: &[&str],
    ) {
        let gone: Vec<&String> = self
            .names
            .iter()
            .filter(|n| !new.names.contains(n))
            .collect();
        if gone.is_empty() {
            return;
        }
        for p in providers {
            for r in &gone {
                for c in classes {
                    let _ = vec.remove_label_values(&[p, r.as_str(), c]);
                }
            }
        }
    }
}
