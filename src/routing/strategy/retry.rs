//! Retrying one target: the policy (`retry` in a config), the exponential back-off between
//! attempts, and the wait an upstream asks for in its retry-after headers.

use std::time::Duration;

use serde_json::Value;

use super::json::{field, status_codes};
use super::StrategyError;

/// Statuses retried when `retry.on_status_codes` is not given (Portkey's default).
pub const RETRY_STATUS_DEFAULT: [u16; 5] = [429, 500, 502, 503, 504];

/// Cumulative retry-after wait per request: a wait beyond it stops retrying that target and
/// its answer stands (Portkey's cap).
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(60);

/// Longest back-off between two attempts, whatever the attempt number.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Most retries one target may have (Portkey's limit).
const MAX_ATTEMPTS: u64 = 5;

/// `retry` of a config target. The default (attempts 0) never retries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RetryPolicy {
    /// Retries after the first attempt, 0..=5.
    pub attempts: u32,
    /// Statuses that are retried; timeouts count as 408, connection failures as 503, other
    /// upstream errors as 502.
    pub on_status_codes: Vec<u16>,
    /// On a 429 or 503, wait what the upstream's retry-after headers ask instead of backing off.
    pub use_retry_after: bool,
}

impl RetryPolicy {
    /// `attempts` retries on the default statuses, without retry-after (the
    /// `x-portkey-retry-count` header).
    pub fn attempts(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            attempts,
            on_status_codes: RETRY_STATUS_DEFAULT.to_vec(),
            use_retry_after: false,
        }
    }

    /// Reads a config's `retry` object at `path`: `attempts` (required, 0..=5),
    /// `on_status_codes` (default `RETRY_STATUS_DEFAULT`), `use_retry_after_header(s)`.
    pub(crate) fn from_json(v: &Value, path: &str) -> Result<RetryPolicy, StrategyError> {
        let obj = v.as_object().ok_or_else(|| {
            StrategyError::new(path, "must be an object {attempts, on_status_codes}")
        })?;
        let attempts = obj
            .get("attempts")
            .and_then(Value::as_u64)
            .filter(|n| *n <= MAX_ATTEMPTS)
            .ok_or_else(|| {
                StrategyError::new(format!("{path}.attempts"), "must be an integer from 0 to 5")
            })?;
        let on_status_codes = match field(obj, &["on_status_codes", "onStatusCodes"]) {
            Some((key, codes)) => status_codes(codes, &format!("{path}.{key}"))?,
            None => RETRY_STATUS_DEFAULT.to_vec(),
        };
        let use_retry_after = match field(
            obj,
            &[
                "use_retry_after_header",
                "use_retry_after_headers",
                "useRetryAfterHeader",
            ],
        ) {
            Some((key, v)) => v.as_bool().ok_or_else(|| {
                StrategyError::new(format!("{path}.{key}"), "must be true or false")
            })?,
            None => false,
        };
        Ok(RetryPolicy {
            attempts: attempts as u32,
            on_status_codes,
            use_retry_after,
        })
    }
}

/// The wait before retry `n` (1 for the first retry): `base * 2^(n-1)`, capped at 30 s, then
/// times a factor in [0.5, 1.0] taken from `jitter` (0..1, clamped), so retries of many
/// requests spread out instead of arriving together.
pub fn backoff(n: u32, base: Duration, jitter: f64) -> Duration {
    if base.is_zero() {
        return Duration::ZERO;
    }
    let full = 2u32
        .checked_pow(n.saturating_sub(1))
        .and_then(|m| base.checked_mul(m))
        .map_or(MAX_BACKOFF, |d| d.min(MAX_BACKOFF));
    let jitter = if jitter.is_nan() {
        1.0
    } else {
        jitter.clamp(0.0, 1.0)
    };
    let factor = 0.5 + 0.5 * jitter;
    Duration::from_nanos((full.as_nanos() as f64 * factor).round() as u64)
}

/// The wait a response asks for: `retry-after-ms`, then `x-ms-retry-after-ms` (milliseconds,
/// integer or decimal), then `retry-after` (seconds, integer or decimal; an HTTP-date is
/// ignored). A header that does not parse is skipped. Takes a lookup so it is independent of
/// the header map type.
pub fn retry_after<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Option<Duration> {
    let ms = |name: &str| get(name).and_then(|v| seconds(v, 1000.0));
    ms("retry-after-ms")
        .or_else(|| ms("x-ms-retry-after-ms"))
        .or_else(|| get("retry-after").and_then(|v| seconds(v, 1.0)))
}

/// A non-negative decimal `raw` in units of 1/`per_second` s; absurd values saturate.
fn seconds(raw: &str, per_second: f64) -> Option<Duration> {
    let raw = raw.trim();
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let n: f64 = raw.parse().ok()?;
    Some(Duration::try_from_secs_f64(n / per_second).unwrap_or(Duration::MAX))
}
