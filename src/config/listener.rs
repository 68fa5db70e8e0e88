//! `[listener]`: the proxy listener's client connections — socket buffers, HTTP/2 limits, h2c —
//! and the socket listeners are handed over on during an upgrade (all restart-only).

use std::time::Duration;

use super::{invalid, schema, ConfigError};

/// The proxy listeners' client connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerSettings {
    /// Bytes read ahead of the HTTP parser; 0 reads straight into the request's own buffer.
    pub read_buffer: usize,
    /// Bytes of answer gathered into one write; 0 writes each piece as it comes.
    pub write_buffer: usize,
    pub h2: H2Settings,
}

/// HTTP/2 from clients: on the TLS listener by ALPN, on the clear one with `h2c`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H2Settings {
    /// Accept HTTP/2 with prior knowledge on the clear listener.
    pub h2c: bool,
    pub max_concurrent_streams: u32,
    pub max_header_list_bytes: u32,
    /// `None`: an idle HTTP/2 connection stays open until the client closes it.
    pub idle_timeout: Option<Duration>,
}

/// Largest socket buffer accepted in `[listener]`.
const MAX_SOCKET_BUFFER: usize = 1 << 20;
/// `[listener]`'s defaults (README, Performance, for the measurements behind them).
pub const DEFAULT_READ_BUFFER: usize = 0;
/// 8 KiB still sends a whole SSE event batch or JSON answer in one write, at half the memory of
/// an idle keep-alive connection's 16 KiB (README, Limits: ~13 instead of ~19 KB each).
pub const DEFAULT_WRITE_BUFFER: usize = 8 * 1024;
/// Pingora's own bounded defaults, kept when the file says nothing.
pub const DEFAULT_H2_STREAMS: u32 = 100;
pub const DEFAULT_H2_HEADER_LIST: u32 = 64 * 1024;
/// As long as Pingora keeps an idle HTTP/1.1 connection.
pub const DEFAULT_H2_IDLE_SECONDS: u64 = 60;
pub const DEFAULT_UPGRADE_SOCKET: &str = "/tmp/keyway_upgrade.sock";

pub(super) fn validate_listener(
    l: &schema::ListenerSection,
) -> Result<ListenerSettings, ConfigError> {
    let size = |path: &str, v: Option<usize>, default: usize| match v.unwrap_or(default) {
        n if n > MAX_SOCKET_BUFFER => Err(invalid(
            format!("listener.{path}"),
            "must be at most 1048576",
        )),
        n => Ok(n),
    };
    Ok(ListenerSettings {
        read_buffer: size(
            "read_buffer_bytes",
            l.read_buffer_bytes,
            DEFAULT_READ_BUFFER,
        )?,
        write_buffer: size(
            "write_buffer_bytes",
            l.write_buffer_bytes,
            DEFAULT_WRITE_BUFFER,
        )?,
        h2: validate_h2(l)?,
    })
}

fn validate_h2(l: &schema::ListenerSection) -> Result<H2Settings, ConfigError> {
    let streams = match l.h2_max_concurrent_streams.unwrap_or(DEFAULT_H2_STREAMS) {
        n @ 1..=10_000 => n,
        _ => {
            return Err(invalid(
                "listener.h2_max_concurrent_streams",
                "must be from 1 to 10000",
            ))
        }
    };
    let headers = match l.h2_max_header_list_bytes.unwrap_or(DEFAULT_H2_HEADER_LIST) {
        n @ 1024..=1_048_576 => n,
        _ => {
            return Err(invalid(
                "listener.h2_max_header_list_bytes",
                "must be from 1024 to 1048576",
            ))
        }
    };
    let idle = l.h2_idle_timeout_seconds.unwrap_or(DEFAULT_H2_IDLE_SECONDS);
    Ok(H2Settings {
        h2c: l.h2c.unwrap_or(false),
        max_concurrent_streams: streams,
        max_header_list_bytes: headers,
        idle_timeout: (idle > 0).then(|| Duration::from_secs(idle)),
    })
}

/// The hand-over socket: an absolute path (both processes of an upgrade must agree on it).
pub(super) fn validate_upgrade_socket(l: &schema::ListenerSection) -> Result<String, ConfigError> {
    match l.upgrade_socket.as_deref() {
        None => Ok(DEFAULT_UPGRADE_SOCKET.to_owned()),
        Some(p) if p.starts_with('/') => Ok(p.to_owned()),
        Some(_) => Err(invalid(
            "listener.upgrade_socket",
            "must be an absolute path, e.g. /run/keyway/upgrade.sock",
        )),
    }
}
