//! The refresh engine with controlled time: a `ManualClock` moved by hand and a jitter fixed at
//! the middle of its range (no jitter), so every instant below is exact.

use super::*;

const HOUR: Duration = Duration::from_secs(3600);

fn timing() -> (Arc<ManualClock>, Timing) {
    let clock = ManualClock::new();
    let timing = Timing {
        clock: clock.clone(),
        jitter: Arc::new(FixedJitter(0.5)),
    };
    (clock, timing)
}

#[test]
fn a_configured_credential_is_due_at_once_a_header_one_never_until_fetched() {
    let (_, t) = timing();
    let configured: Renewal<&str> = Renewal::new(t.clone(), true);
    assert!(configured.is_due());
    assert!(configured.claim_due());
    assert!(!configured.claim_due(), "one claim at a time");
    let header: Renewal<&str> = Renewal::new(t, false);
    assert!(!header.is_due() && !header.claim_due());
}

#[test]
fn renewal_comes_at_three_quarters_of_the_lifetime() {
    let (clock, t) = timing();
    let r: Renewal<&str> = Renewal::new(t, true);
    assert!(r.claim_due());
    r.succeeded(HOUR);
    // 75% of an hour is 45 min; the 5-minute margin does not bind.
    clock.advance(Duration::from_secs(45 * 60) - Duration::from_millis(1));
    assert!(!r.is_due());
    clock.advance(Duration::from_millis(1));
    assert!(r.is_due() && r.claim_due());
    // A 15-minute value: 75% is 11.25 min, but renewal comes 5 min before expiry, at 10 min.
    r.succeeded(Duration::from_secs(900));
    clock.advance(Duration::from_secs(599));
    assert!(!r.is_due());
    clock.advance(Duration::from_secs(1));
    assert!(r.is_due());
}

#[test]
fn transient_failures_back_off_from_one_second_to_a_minute() {
    let (clock, t) = timing();
    let r: Renewal<&str> = Renewal::new(t, true);
    let waits: Vec<u64> = (0..9)
        .map(|_| {
            assert!(r.claim_due());
            let w = r.failed("timeout", FailureClass::Transient);
            assert_eq!(r.backing_off().as_deref(), Some(&"timeout"));
            clock.advance(w);
            assert!(r.backing_off().is_none(), "the back-off ends on time");
            w.as_secs()
        })
        .collect();
    assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    assert_eq!(r.failures(), 9);
    r.succeeded(HOUR);
    assert_eq!(r.failures(), 0);
    assert!(r.last_error().is_none());
}

#[test]
fn a_refused_credential_is_not_retried_like_a_timeout() {
    let (clock, t) = timing();
    let r: Renewal<&str> = Renewal::new(t, true);
    assert!(r.claim_due());
    assert_eq!(
        r.failed("invalid_client", FailureClass::Refused),
        Duration::from_secs(15)
    );
    clock.advance(Duration::from_secs(14));
    assert!(!r.is_due(), "a refusal is not asked again within seconds");
    assert!(r.backing_off().is_some());
    clock.advance(Duration::from_secs(1));
    assert!(r.claim_due());
    assert_eq!(
        r.failed("invalid_client", FailureClass::Refused),
        Duration::from_secs(30)
    );
    // An upstream's refusal of the value is news: the back-off no longer holds callers.
    r.retry_now();
    assert!(r.backing_off().is_none());
}

#[test]
fn a_released_claim_looks_again_after_the_back_off() {
    let (clock, t) = timing();
    let r: Renewal<&str> = Renewal::new(t, true);
    assert!(r.claim_due());
    r.failed("down", FailureClass::Transient);
    clock.advance(Duration::from_secs(1));
    assert!(r.claim_due());
    assert!(r.is_claimed());
    // The refresh ended without a fetch (something else held the value): it is looked at
    // again one second on, not never and not at once.
    r.release_claim(Duration::from_secs(1));
    assert!(!r.is_claimed() && !r.is_due());
    clock.advance(Duration::from_secs(1));
    assert!(r.is_due());
}

#[test]
fn jitter_spreads_renewals_within_bounds() {
    let clock = ManualClock::new();
    for (sample, min_s, max_s) in [(0.0, 2520, 2520), (0.999, 2876, 2880)] {
        let r: Renewal<&str> = Renewal::new(
            Timing {
                clock: clock.clone(),
                jitter: Arc::new(FixedJitter(sample)),
            },
            false,
        );
        r.succeeded(HOUR);
        let start = clock.mono_ms();
        let at = r.refresh_at.load(Relaxed);
        let secs = (at - start) / 1000;
        assert!((min_s..=max_s).contains(&secs), "{sample}: {secs}");
    }
}
