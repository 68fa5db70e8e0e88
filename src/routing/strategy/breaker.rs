//! Circuit breakers of `strategy.cb_config`: each child of such a group has one, shared by every
//! request on the stored config or route that owns it (the runtime keys them by owner and path
//! so they outlive reloads). A circuit counts the final outcome of each attempt chain under its
//! child; fallback and loadbalance skip children whose circuit is open.

use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::json::{field, status_codes};
use super::retry::RETRY_STATUS_DEFAULT;
use super::StrategyError;

/// Timeouts always count as failures, whatever `failure_status_codes` says.
const TIMEOUT_STATUS: u16 = 408;

/// Shortest cooldown keyway accepts (Portkey's is 30 s).
const MIN_COOLDOWN_MS: u64 = 1000;

/// `strategy.cb_config`.
#[derive(Debug, Clone, PartialEq)]
pub struct CbConfig {
    /// Opens when this many failures were counted.
    pub failure_threshold: Option<u32>,
    /// Opens when at least `minimum_requests` were counted and this percentage (0 < x <= 100)
    /// of them failed.
    pub failure_threshold_percentage: Option<f64>,
    /// Default 1.
    pub minimum_requests: u32,
    /// How long an open circuit stays open; also the counting window that starts at the first
    /// failure (Portkey's `cooldown_interval`, milliseconds in the config, at least 1000).
    pub cooldown: Duration,
    /// Default 429, 500, 502, 503, 504; 408 (a timeout) always counts.
    pub failure_status_codes: Vec<u16>,
}

impl CbConfig {
    /// Reads a strategy's `cb_config` object at `path`.
    pub(crate) fn from_json(v: &Value, path: &str) -> Result<CbConfig, StrategyError> {
        let obj = v
            .as_object()
            .ok_or_else(|| StrategyError::new(path, "must be an object"))?;
        let at = |key: &str| format!("{path}.{key}");
        let int = |key: &'static str, min: u64| -> Result<Option<u64>, StrategyError> {
            obj.get(key)
                .map(|v| {
                    v.as_u64().filter(|n| *n >= min).ok_or_else(|| {
                        StrategyError::new(at(key), format!("must be an integer >= {min}"))
                    })
                })
                .transpose()
        };
        let failure_threshold = int("failure_threshold", 1)?.map(clamp_u32);
        let failure_threshold_percentage = obj
            .get("failure_threshold_percentage")
            .map(|v| {
                v.as_f64()
                    .filter(|p| *p > 0.0 && *p <= 100.0)
                    .ok_or_else(|| {
                        StrategyError::new(
                            at("failure_threshold_percentage"),
                            "must be a number above 0 and at most 100",
                        )
                    })
            })
            .transpose()?;
        if failure_threshold.is_none() && failure_threshold_percentage.is_none() {
            return Err(StrategyError::new(
                path,
                "give failure_threshold or failure_threshold_percentage (or both)",
            ));
        }
        let minimum_requests = int("minimum_requests", 1)?.map_or(1, clamp_u32);
        let cooldown = int("cooldown_interval", MIN_COOLDOWN_MS)?.ok_or_else(|| {
            StrategyError::new(
                at("cooldown_interval"),
                "is required: milliseconds a tripped circuit stays open, at least 1000",
            )
        })?;
        let failure_status_codes = match field(obj, &["failure_status_codes"]) {
            Some((key, codes)) => status_codes(codes, &at(key))?,
            None => RETRY_STATUS_DEFAULT.to_vec(),
        };
        Ok(CbConfig {
            failure_threshold,
            failure_threshold_percentage,
            minimum_requests,
            cooldown: Duration::from_millis(cooldown),
            failure_status_codes,
        })
    }

    fn is_failure(&self, code: u16) -> bool {
        code == TIMEOUT_STATUS || self.failure_status_codes.contains(&code)
    }

    fn trips(&self, requests: u32, failures: u32) -> bool {
        let by_count = self.failure_threshold.is_some_and(|t| failures >= t);
        let by_share = self.failure_threshold_percentage.is_some_and(|p| {
            requests >= self.minimum_requests
                && f64::from(failures) * 100.0 / f64::from(requests) >= p
        });
        by_count || by_share
    }
}

fn clamp_u32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    Closed,
    Open,
}

impl CircuitState {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
        }
    }
}

type Observer = Box<dyn Fn(CircuitState) + Send + Sync>;

/// One child's circuit. Touched once per attempt chain, so a plain mutex is enough.
pub struct Breaker {
    cfg: CbConfig,
    counters: Mutex<Counters>,
    observer: Option<Observer>,
}

#[derive(Debug, Default)]
struct Counters {
    requests: u32,
    failures: u32,
    first_failure: Option<Instant>,
    opened_at: Option<Instant>,
}

impl Counters {
    /// Ends an open period, or a counting window, that is over. True when the circuit closed.
    fn expire(&mut self, now: Instant, cooldown: Duration) -> bool {
        if let Some(opened) = self.opened_at {
            let over = now.saturating_duration_since(opened) >= cooldown;
            if over {
                *self = Counters::default();
            }
            return over;
        }
        // Failures older than a cooldown no longer count (Portkey resets its counters a
        // cooldown after the first failure), so a rare error cannot trip a circuit days later.
        if self
            .first_failure
            .is_some_and(|t| now.saturating_duration_since(t) >= cooldown)
        {
            *self = Counters::default();
        }
        false
    }
}

impl Breaker {
    pub fn new(cfg: CbConfig) -> Breaker {
        Breaker {
            cfg,
            counters: Mutex::new(Counters::default()),
            observer: None,
        }
    }

    /// A breaker that calls `observer` on every change of state (after the change, outside
    /// the lock), including a close that `state` notices when the cooldown is over: for the
    /// transition metrics.
    pub fn with_observer(
        cfg: CbConfig,
        observer: impl Fn(CircuitState) + Send + Sync + 'static,
    ) -> Breaker {
        Breaker {
            observer: Some(Box::new(observer)),
            ..Breaker::new(cfg)
        }
    }

    pub fn config(&self) -> &CbConfig {
        &self.cfg
    }

    /// Open until `cooldown` after it opened, then closed with its counters reset.
    pub fn state(&self, now: Instant) -> CircuitState {
        let (state, closed) = {
            let mut c = self.lock();
            let closed = c.expire(now, self.cfg.cooldown);
            (open_if(c.opened_at.is_some()), closed)
        };
        if closed {
            self.notify(CircuitState::Closed);
        }
        state
    }

    /// Records the final outcome (`code`) of one attempt chain; returns `Some(new_state)` when
    /// this call changed the state. Outcomes while open are not counted (the counters start
    /// afresh when it closes).
    pub fn record(&self, now: Instant, code: u16) -> Option<CircuitState> {
        let (closed, opened) = {
            let mut c = self.lock();
            let closed = c.expire(now, self.cfg.cooldown);
            let opened = c.opened_at.is_none() && self.count(&mut c, now, code);
            (closed, opened)
        };
        if closed {
            self.notify(CircuitState::Closed);
        }
        if opened {
            self.notify(CircuitState::Open);
            return Some(CircuitState::Open);
        }
        closed.then_some(CircuitState::Closed)
    }

    /// Counts one outcome on a closed circuit; true when it trips.
    fn count(&self, c: &mut Counters, now: Instant, code: u16) -> bool {
        c.requests = c.requests.saturating_add(1);
        if self.cfg.is_failure(code) {
            c.failures = c.failures.saturating_add(1);
            c.first_failure.get_or_insert(now);
        }
        let trips = self.cfg.trips(c.requests, c.failures);
        if trips {
            c.opened_at = Some(now);
        }
        trips
    }

    fn notify(&self, state: CircuitState) {
        if let Some(observer) = &self.observer {
            observer(state);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Counters> {
        // The counters stay consistent even if a holder panicked: every update is one step.
        self.counters.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn open_if(open: bool) -> CircuitState {
    if open {
        CircuitState::Open
    } else {
        CircuitState::Closed
    }
}

impl fmt::Debug for Breaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("cfg", &self.cfg)
            .field("counters", &*self.lock())
            .finish_non_exhaustive()
    }
}
