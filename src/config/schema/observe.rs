//! `[access_log]` and `[usage]`: what keyway records of each request it proxies.

use serde::{Deserialize, Serialize};

/// `[access_log]`: one JSON line per request.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogSection {
    /// Default false: an upgrade adds no output of its own until asked to.
    pub enabled: Option<bool>,
    /// `"stdout"` (default) or a file, opened for appending.
    pub path: Option<String>,
    /// Fraction of requests logged, 0.0 to 1.0. Default 1.0.
    pub sample: Option<f64>,
    /// Lines waiting for the writer before new ones are dropped (and counted). Default 8192.
    pub buffer_lines: Option<usize>,
}

/// `[usage]`: token counts read from the answers as they pass.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UsageSection {
    /// Default true.
    pub enabled: Option<bool>,
    /// Models that get their own `model` label: an answer's model matches an entry exactly or
    /// as the entry's dated snapshot (`<entry>-YYYY-MM-DD`, `<entry>-YYYYMMDD`); every other
    /// model is `other`. Default: none.
    #[serde(default)]
    pub models: Vec<String>,
}
