//! `[listener]`: the socket buffers of the proxy listener's client connections (restart-only).

use super::{invalid, schema, ConfigError};

/// The socket buffers of the proxy listener's client connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerSettings {
    /// Bytes read ahead of the HTTP parser; 0 reads straight into the request's own buffer.
    pub read_buffer: usize,
    /// Bytes of answer gathered into one write; 0 writes each piece as it comes.
    pub write_buffer: usize,
}

/// Largest socket buffer accepted in `[listener]`.
const MAX_SOCKET_BUFFER: usize = 1 << 20;
/// `[listener]`'s defaults (README, Performance, for the measurements behind them).
pub const DEFAULT_READ_BUFFER: usize = 0;
/// 8 KiB still sends a whole SSE event batch or JSON answer in one write, at half the memory of
/// an idle keep-alive connection's 16 KiB (README, Limits: ~13 instead of ~19 KB each).
pub const DEFAULT_WRITE_BUFFER: usize = 8 * 1024;

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
    })
}
