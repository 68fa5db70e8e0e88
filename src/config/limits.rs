//! `[limits]`: deadlines and sizes a public ingress needs, validated into [`LimitSettings`]
//! (restart-only: the proxy listener's connection layer is built with them).

use std::time::Duration;

use super::{invalid, schema::limits::LimitsSection, ConfigError};

/// What a client connection of the proxy listener may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSettings {
    /// From the first byte of an HTTP/1 request to the end of its header.
    pub header_timeout: Duration,
    /// Longest silence while a request body is read.
    pub body_timeout: Duration,
    /// Request line plus header fields, as sent (431 above).
    pub max_header_bytes: usize,
    /// Request target as sent (414 above).
    pub max_uri_bytes: usize,
    /// Client connections open at once.
    pub max_client_connections: usize,
}

/// nginx closes a client that has not sent its header in 60 s and Envoy sets no such deadline by
/// default; 30 s is ample for API clients, which send their header at once.
pub const DEFAULT_HEADER_TIMEOUT_MS: u64 = 30_000;
/// nginx's `client_body_timeout` is 60 s between reads; half that holds an upstream connection
/// for less time.
pub const DEFAULT_BODY_TIMEOUT_MS: u64 = 30_000;
/// Envoy's default is 60 KiB of headers, nginx's 4 × 8 KiB buffers: 64 KiB is enough for large
/// JWTs and Portkey's config headers.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// nginx's 8 KiB request-line buffer.
pub const DEFAULT_MAX_URI_BYTES: usize = 8 * 1024;
/// Above the 10 000 streams of `loadtest/streams.sh`; each idle connection costs ~15 KB (README).
pub const DEFAULT_MAX_CLIENT_CONNECTIONS: usize = 16_384;

/// Pingora refuses (400) a header it has read more than 1 MiB of: the limit must be below.
const MAX_HEADER_CEILING: usize = 1_048_575;

pub(super) fn validate_limits(l: &LimitsSection) -> Result<LimitSettings, ConfigError> {
    let ms = |path: &str, v: Option<u64>, default: u64, max: u64| match v.unwrap_or(default) {
        n if (1..=max).contains(&n) => Ok(Duration::from_millis(n)),
        _ => Err(invalid(
            format!("limits.{path}"),
            format!("must be from 1 to {max}"),
        )),
    };
    let count = |path: &str, v: Option<usize>, default: usize, min: usize, max: usize| match v
        .unwrap_or(default)
    {
        n if (min..=max).contains(&n) => Ok(n),
        _ => Err(invalid(
            format!("limits.{path}"),
            format!("must be from {min} to {max}"),
        )),
    };
    let max_header_bytes = count(
        "max_header_bytes",
        l.max_header_bytes,
        DEFAULT_MAX_HEADER_BYTES,
        1024,
        MAX_HEADER_CEILING,
    )?;
    Ok(LimitSettings {
        header_timeout: ms(
            "header_timeout_ms",
            l.header_timeout_ms,
            DEFAULT_HEADER_TIMEOUT_MS,
            300_000,
        )?,
        body_timeout: ms(
            "body_timeout_ms",
            l.body_timeout_ms,
            DEFAULT_BODY_TIMEOUT_MS,
            3_600_000,
        )?,
        max_header_bytes,
        max_uri_bytes: count(
            "max_uri_bytes",
            l.max_uri_bytes,
            DEFAULT_MAX_URI_BYTES,
            256,
            max_header_bytes,
        )?,
        max_client_connections: count(
            "max_client_connections",
            l.max_client_connections,
            DEFAULT_MAX_CLIENT_CONNECTIONS,
            1,
            1_000_000,
        )?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<LimitSettings, ConfigError> {
        let s: LimitsSection = toml::from_str(text).unwrap();
        validate_limits(&s)
    }

    #[test]
    fn defaults_are_in_the_nginx_envoy_range() {
        let d = parse("").unwrap();
        assert_eq!(d.header_timeout, Duration::from_secs(30));
        assert_eq!(d.body_timeout, Duration::from_secs(30));
        assert_eq!(d.max_header_bytes, 65_536);
        assert_eq!(d.max_uri_bytes, 8_192);
        assert_eq!(d.max_client_connections, 16_384);
    }

    #[test]
    fn values_outside_their_bounds_are_refused_by_path() {
        let cases = [
            ("header_timeout_ms = 0", "limits.header_timeout_ms"),
            ("body_timeout_ms = 3600001", "limits.body_timeout_ms"),
            ("max_header_bytes = 1048576", "limits.max_header_bytes"),
            ("max_uri_bytes = 100", "limits.max_uri_bytes"),
            (
                "max_header_bytes = 4096\nmax_uri_bytes = 8192",
                "limits.max_uri_bytes",
            ),
            (
                "max_client_connections = 0",
                "limits.max_client_connections",
            ),
        ];
        for (text, path) in cases {
            match parse(text) {
                Err(ConfigError::Invalid { path: p, .. }) => assert_eq!(p, path, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn set_values_are_kept() {
        let s = parse(
            "header_timeout_ms = 2000\nbody_timeout_ms = 1500\nmax_header_bytes = 4096\n\
             max_uri_bytes = 1024\nmax_client_connections = 5",
        )
        .unwrap();
        assert_eq!(
            s,
            LimitSettings {
                header_timeout: Duration::from_millis(2000),
                body_timeout: Duration::from_millis(1500),
                max_header_bytes: 4096,
                max_uri_bytes: 1024,
                max_client_connections: 5,
            }
        );
    }
}
