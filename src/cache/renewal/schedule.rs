//! When to renew and how long to wait after a failure: pure math, unit-tested.
//!
//! Renew at about 75% of the lifetime (±5% jitter so a fleet started together does not hit the
//! identity provider together), but never later than 5 minutes before expiry, which leaves room
//! for several retries when the provider is down. Values shorter than 10 minutes cannot honour
//! that margin and are renewed at ~75% alone. Failed fetches back off exponentially by class
//! (transient: 1 s doubling to 60 s; refused or broken: 15 s doubling to 5 min; ±25% jitter)
//! while the old value keeps serving.

use std::time::Duration;

use super::FailureClass;

const FRACTION: f64 = 0.75;
const FRACTION_JITTER: f64 = 0.05;
const MARGIN: Duration = Duration::from_secs(300);
const MIN_DELAY: Duration = Duration::from_millis(500);
const RETRY_BASE: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);
const REFUSED_BASE: Duration = Duration::from_secs(15);
const REFUSED_MAX: Duration = Duration::from_secs(300);

/// Delay from now until renewal of a token that lives `lifetime` more. `jitter01` ∈ [0, 1).
pub fn refresh_delay(lifetime: Duration, jitter01: f64) -> Duration {
    let fraction = FRACTION + FRACTION_JITTER * (2.0 * jitter01 - 1.0);
    let mut delay = lifetime.mul_f64(fraction);
    if lifetime >= MARGIN * 2 {
        delay = delay.min(lifetime - MARGIN);
    }
    delay.max(MIN_DELAY)
}

/// Delay before retry number `failures` (1 for the first) after a failure of `class`.
/// `jitter01` ∈ [0, 1).
pub fn retry_delay(class: FailureClass, failures: u32, jitter01: f64) -> Duration {
    let (base, max) = match class {
        FailureClass::Transient => (RETRY_BASE, RETRY_MAX),
        FailureClass::Refused | FailureClass::Broken => (REFUSED_BASE, REFUSED_MAX),
    };
    let exp = base.saturating_mul(1u32 << failures.saturating_sub(1).min(8));
    exp.min(max).mul_f64(0.75 + 0.5 * jitter01)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn refresh_near_three_quarters_with_bounded_jitter() {
        assert_eq!(refresh_delay(HOUR, 0.5), HOUR.mul_f64(0.75));
        assert_eq!(refresh_delay(HOUR, 0.0), HOUR.mul_f64(0.70));
        assert!(refresh_delay(HOUR, 0.999) < HOUR.mul_f64(0.80));
    }

    #[test]
    fn never_later_than_five_minutes_before_expiry() {
        // 15 min token: 75% is 11.25 min, but the margin caps it at 10 min.
        let fifteen = Duration::from_secs(900);
        assert_eq!(refresh_delay(fifteen, 0.999), fifteen - MARGIN);
        // A 24 h IMDS token.
        let day = Duration::from_secs(86_400);
        assert!(refresh_delay(day, 0.999) <= day - MARGIN);
    }

    #[test]
    fn short_tokens_renew_at_three_quarters_and_never_spin() {
        assert_eq!(
            refresh_delay(Duration::from_secs(8), 0.5),
            Duration::from_secs(6)
        );
        assert_eq!(refresh_delay(Duration::ZERO, 0.5), MIN_DELAY);
    }

    #[test]
    fn retries_back_off_exponentially_to_a_cap() {
        let t = FailureClass::Transient;
        assert_eq!(retry_delay(t, 1, 0.5), Duration::from_secs(1));
        assert_eq!(retry_delay(t, 2, 0.5), Duration::from_secs(2));
        assert_eq!(retry_delay(t, 5, 0.5), Duration::from_secs(16));
        assert_eq!(retry_delay(t, 30, 0.5), RETRY_MAX);
        assert!(retry_delay(t, 3, 0.0) >= Duration::from_secs(3));
        assert!(retry_delay(t, 3, 0.999) < Duration::from_secs(5));
    }

    #[test]
    fn a_refusal_is_not_retried_like_a_timeout() {
        for class in [FailureClass::Refused, FailureClass::Broken] {
            assert_eq!(retry_delay(class, 1, 0.5), Duration::from_secs(15));
            assert_eq!(retry_delay(class, 2, 0.5), Duration::from_secs(30));
            assert_eq!(retry_delay(class, 50, 0.5), REFUSED_MAX);
            assert!(retry_delay(class, 1, 0.0) > retry_delay(FailureClass::Transient, 4, 0.999));
        }
    }
}
