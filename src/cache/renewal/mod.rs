//! The refresh engine: when one cached credential (a token slot, a secret entry) is renewed and
//! how its failures are spaced. One type, [`Renewal`], holds the renewal time, the back-off, the
//! failure count and the last error; the clock and the jitter come in from outside, so the whole
//! schedule is tested with controlled time (`ManualClock`, `FixedJitter`).
//!
//! Policy (`schedule.rs`): renew at ~75% of the lifetime (±5% jitter), never later than five
//! minutes before expiry. A failure backs off by its class: a transient one (network, 5xx, 429,
//! timeout) retries after 1 s doubling to 60 s; a refusal (the identity provider or manager said
//! no: bad secret, no permission) or a broken answer retries after 15 s doubling to 5 min, since
//! asking again at once cannot help and only loads the provider. Every delay is jittered ±25%.
//! The caller keeps serving what it has while it may (static stability); this type only says
//! when to try again.

pub mod schedule;

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwapOption;

/// Time as the caches see it: a monotonic millisecond count for scheduling and the wall clock
/// for token expiry.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Milliseconds since some fixed instant; never goes back.
    fn mono_ms(&self) -> u64;
    fn wall(&self) -> SystemTime;
}

/// The real clocks.
#[derive(Debug)]
pub struct SystemClock {
    epoch: Instant,
}

impl SystemClock {
    pub fn shared() -> Arc<dyn Clock> {
        Arc::new(SystemClock {
            epoch: Instant::now(),
        })
    }
}

impl Clock for SystemClock {
    fn mono_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock tests move by hand; both scales advance together.
#[derive(Debug)]
pub struct ManualClock {
    mono_ms: AtomicU64,
    wall_start: SystemTime,
}

impl ManualClock {
    pub fn new() -> Arc<ManualClock> {
        Arc::new(ManualClock {
            mono_ms: AtomicU64::new(1_000),
            wall_start: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        })
    }

    pub fn advance(&self, d: Duration) {
        self.mono_ms.fetch_add(d.as_millis() as u64, Relaxed);
    }
}

impl Clock for ManualClock {
    fn mono_ms(&self) -> u64 {
        self.mono_ms.load(Relaxed)
    }

    fn wall(&self) -> SystemTime {
        self.wall_start + Duration::from_millis(self.mono_ms.load(Relaxed))
    }
}

/// Uniform samples in `[0, 1)` that spread renewals and retries.
pub trait Jitter: Send + Sync + fmt::Debug {
    fn sample(&self) -> f64;
}

#[derive(Debug)]
pub struct RandomJitter;

impl Jitter for RandomJitter {
    fn sample(&self) -> f64 {
        rand::random::<f64>()
    }
}

/// Always the same sample (0.5 is the middle: no jitter at all); for tests.
#[derive(Debug)]
pub struct FixedJitter(pub f64);

impl Jitter for FixedJitter {
    fn sample(&self) -> f64 {
        self.0
    }
}

/// What a failed fetch says about trying again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// The network, a 5xx, a 429 or a timeout: the same request may work in a moment.
    Transient,
    /// The provider answered and refused (bad secret, no permission, unknown secret): only a
    /// change elsewhere helps.
    Refused,
    /// An answer keyway cannot use, or a setup problem: likewise.
    Broken,
}

/// The time and jitter every renewal of a cache shares.
#[derive(Debug, Clone)]
pub struct Timing {
    pub clock: Arc<dyn Clock>,
    pub jitter: Arc<dyn Jitter>,
}

impl Timing {
    pub fn system() -> Timing {
        Timing {
            clock: SystemClock::shared(),
            jitter: Arc::new(RandomJitter),
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.mono_ms()
    }
}

/// "Never" for `refresh_at`: not scheduled, or claimed by a refresh under way.
const NEVER: u64 = u64::MAX;

/// When one cached credential is renewed, and its failures so far. Lock-free; every method is
/// cheap enough for the request path.
pub struct Renewal<E> {
    timing: Timing,
    /// When the refresher should renew (ms on the clock's scale); `NEVER` while claimed or
    /// when nothing is scheduled.
    refresh_at: AtomicU64,
    /// Until when a failure stands: callers get `last_error` without a new fetch.
    retry_at: AtomicU64,
    failures: AtomicU32,
    last_error: ArcSwapOption<E>,
}

impl<E> fmt::Debug for Renewal<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Renewal")
            .field("refresh_at", &self.refresh_at.load(Relaxed))
            .field("failures", &self.failures.load(Relaxed))
            .finish_non_exhaustive()
    }
}

impl<E> Renewal<E> {
    /// `due_now`: the refresher renews at its next look (configured credentials); otherwise
    /// nothing is scheduled until a first fetch succeeds or fails.
    pub fn new(timing: Timing, due_now: bool) -> Renewal<E> {
        Renewal {
            timing,
            refresh_at: AtomicU64::new(if due_now { 0 } else { NEVER }),
            retry_at: AtomicU64::new(0),
            failures: AtomicU32::new(0),
            last_error: ArcSwapOption::empty(),
        }
    }

    pub fn timing(&self) -> &Timing {
        &self.timing
    }

    pub fn now_ms(&self) -> u64 {
        self.timing.now_ms()
    }

    /// A fetch succeeded with a value that lives `lifetime` more: renew at ~75% of it.
    pub fn succeeded(&self, lifetime: Duration) {
        let delay = schedule::refresh_delay(lifetime, self.timing.jitter.sample());
        self.failures.store(0, Relaxed);
        self.retry_at.store(0, Relaxed);
        self.last_error.store(None);
        self.refresh_at
            .store(self.now_ms() + delay.as_millis() as u64, Relaxed);
    }

    /// A fetch succeeded; renew again after `delay` exactly (documents refreshed on a fixed
    /// period, such as a JWKS).
    pub fn succeeded_in(&self, delay: Duration) {
        self.failures.store(0, Relaxed);
        self.retry_at.store(0, Relaxed);
        self.last_error.store(None);
        self.refresh_at
            .store(self.now_ms() + delay.as_millis() as u64, Relaxed);
    }

    /// A fetch failed: back off by `class` and keep `error` for callers until then. Returns the
    /// delay before the next try.
    pub fn failed(&self, error: E, class: FailureClass) -> Duration {
        let n = self.failures.fetch_add(1, Relaxed) + 1;
        let wait = schedule::retry_delay(class, n, self.timing.jitter.sample());
        let at = self.now_ms() + wait.as_millis() as u64;
        self.retry_at.store(at, Relaxed);
        self.refresh_at.store(at, Relaxed);
        self.last_error.store(Some(Arc::new(error)));
        wait
    }

    /// Claims a due renewal for the refresher, so one runs at a time.
    pub fn claim_due(&self) -> bool {
        let at = self.refresh_at.load(Relaxed);
        self.now_ms() >= at
            && self
                .refresh_at
                .compare_exchange(at, NEVER, Relaxed, Relaxed)
                .is_ok()
    }

    /// Whether a claim is outstanding (or nothing is scheduled).
    pub fn is_claimed(&self) -> bool {
        self.refresh_at.load(Relaxed) == NEVER
    }

    /// A claimed renewal that ended without a fetch (it was backing off): look again at the
    /// end of the back-off, and no sooner than `min` from now.
    pub fn release_claim(&self, min: Duration) {
        if self.is_claimed() {
            let at = self
                .retry_at
                .load(Relaxed)
                .max(self.now_ms() + min.as_millis() as u64);
            self.refresh_at.store(at, Relaxed);
        }
    }

    pub fn is_due(&self) -> bool {
        self.now_ms() >= self.refresh_at.load(Relaxed)
    }

    /// The last failure while its back-off runs: callers answer with it instead of fetching.
    pub fn backing_off(&self) -> Option<Arc<E>> {
        let e = self.last_error.load_full()?;
        (self.now_ms() < self.retry_at.load(Relaxed)).then_some(e)
    }

    /// The last failure, whether or not its back-off has run out.
    pub fn last_error(&self) -> Option<Arc<E>> {
        self.last_error.load_full()
    }

    /// News that makes a retry worth it now (an upstream refused the value, so a fetch may bring
    /// a rotated one): the back-off no longer stands.
    pub fn retry_now(&self) {
        self.retry_at.store(0, Relaxed);
    }

    pub fn failures(&self) -> u32 {
        self.failures.load(Relaxed)
    }
}

#[cfg(test)]
mod tests;
