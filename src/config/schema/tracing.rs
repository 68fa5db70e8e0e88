//! `[tracing]`: OpenTelemetry trace export over OTLP/HTTP. Absent: no tracing at all.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TracingSection {
    /// The collector's OTLP/HTTP base URL (`http://collector:4318`); spans go to
    /// `<otlp_endpoint>/v1/traces` unless the URL already ends with `/v1/traces`. Required.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported resource. Default `keyway`.
    pub service_name: Option<String>,
    /// Share of new traces (no sampled client `traceparent`) recorded, 0.0 to 1.0. Default 1.0.
    /// A client's `traceparent` decides for its own trace (parent-based sampling).
    pub sample_ratio: Option<f64>,
    /// Headers sent to the collector (authentication); never logged.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Headers sent to the collector, each read from the named environment variable.
    #[serde(default)]
    pub headers_env: BTreeMap<String, String>,
    /// Per export request. Default 10000.
    pub timeout_ms: Option<u64>,
    /// Spans waiting for export; more are dropped (and counted). Default 2048.
    pub max_queue_size: Option<usize>,
    /// Spans per export request. Default 512.
    pub max_export_batch_size: Option<usize>,
    /// Longest wait before a partial batch is sent. Default 5000.
    pub schedule_delay_ms: Option<u64>,
}
