//! Graceful shutdown that ends when the work does. After `SIGTERM` (or after a `SIGQUIT`
//! hand-over) Pingora closes the listeners, lets in-flight requests and streams finish and then
//! sleeps the whole `grace_period_seconds` regardless. This watcher exits the process as soon as
//! nothing is in flight, so the grace period is only the upper bound.
//!
//! "In flight" is `keyway_requests_in_flight`: a request counts from `request_filter` until its
//! context drops, after the last byte of its answer or stream was written. Idle keep-alive
//! connections hold nothing: Pingora closes them when the shutdown starts.

use std::time::Duration;

use pingora::server::ExecutionPhase;
use pingora_prometheus::prometheus::IntGauge;
use tokio::sync::broadcast::{self, error::RecvError};

/// How often the gauge is read during the grace period.
const POLL: Duration = Duration::from_millis(20);
/// Readings of zero in a row before exiting: covers a request whose head was read just before
/// the listeners closed but whose `request_filter` has not run yet, and the last frames of an
/// HTTP/2 answer still leaving its connection task.
const QUIET_READINGS: u32 = 5;

/// Starts the watcher thread. It does nothing until the grace period starts.
pub fn exit_when_drained(phases: broadcast::Receiver<ExecutionPhase>, in_flight: IntGauge) {
    let spawned = std::thread::Builder::new()
        .name("keyway-drain".into())
        .spawn(move || watch(phases, in_flight));
    if let Err(e) = spawned {
        log::warn!("cannot start the drain watcher ({e}): shutdown waits the whole grace period");
    }
}

fn watch(mut phases: broadcast::Receiver<ExecutionPhase>, in_flight: IntGauge) {
    loop {
        match phases.blocking_recv() {
            Ok(ExecutionPhase::ShutdownGracePeriod) => break,
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => return,
        }
    }
    log::info!(
        "graceful shutdown: draining {} request(s) in flight",
        in_flight.get()
    );
    let mut quiet = 0;
    while quiet < QUIET_READINGS {
        std::thread::sleep(POLL);
        quiet = if in_flight.get() <= 0 { quiet + 1 } else { 0 };
    }
    log::info!("graceful shutdown: nothing in flight, exiting before the grace period ends");
    std::process::exit(0);
}
