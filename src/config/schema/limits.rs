//! `[limits]` as written in the file: what one client connection of the proxy listener may
//! cost before keyway closes or refuses it. Defaults and bounds are in `config/limits.rs`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Longest time from the first byte of an HTTP/1 request to the end of its header; the
    /// connection is closed when it runs out. Default 30000.
    pub header_timeout_ms: Option<u64>,
    /// Longest silence while a request body is being read; 408 (or a close once the answer has
    /// begun). Default 30000.
    pub body_timeout_ms: Option<u64>,
    /// Request line plus header fields, as sent; more is refused with 431. Default 65536.
    pub max_header_bytes: Option<usize>,
    /// Request target (path and query) as sent; longer is refused with 414. Default 8192.
    pub max_uri_bytes: Option<usize>,
    /// Client connections open at once on the proxy listener; more are closed as they are
    /// accepted. Default 16384.
    pub max_client_connections: Option<usize>,
}
