//! Trace export (`[tracing]`): spans sent, spans lost and failed export requests. Registered
//! whether or not tracing is on (then they stay at 0).

use pingora_prometheus::prometheus::{IntCounter, Registry, Result};

#[derive(Debug, Clone)]
pub struct TraceMetrics {
    /// Spans the collector accepted (a 2xx answer to their export request).
    pub exported: IntCounter,
    /// Spans lost: the queue was full, or their export request failed.
    pub dropped: IntCounter,
    /// Export requests that failed (no answer, or not 2xx).
    pub export_failures: IntCounter,
}

impl TraceMetrics {
    pub fn new(registry: &Registry) -> Result<TraceMetrics> {
        let exported = IntCounter::new(
            "keyway_trace_spans_exported_total",
            "Spans the OTLP collector accepted",
        )?;
        let dropped = IntCounter::new(
            "keyway_trace_spans_dropped_total",
            "Spans never exported: the export queue was full or their export request failed",
        )?;
        let export_failures = IntCounter::new(
            "keyway_trace_export_failures_total",
            "OTLP export requests that failed (connection error, timeout or a non-2xx answer)",
        )?;
        registry.register(Box::new(exported.clone()))?;
        registry.register(Box::new(dropped.clone()))?;
        registry.register(Box::new(export_failures.clone()))?;
        Ok(TraceMetrics {
            exported,
            dropped,
            export_failures,
        })
    }
}
