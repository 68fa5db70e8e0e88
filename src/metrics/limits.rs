//! The proxy listener's limits (`[limits]`): refusals and closes by limit, and the client
//! connections open now. Every child is created here, at start-up.

use pingora_prometheus::prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry, Result};

/// Which limit refused or closed a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The request header did not arrive within `header_timeout_ms` (connection closed).
    HeaderDeadline,
    /// The body stalled for `body_timeout_ms` (408, or a close once the answer had begun).
    BodyDeadline,
    /// Request line and header fields over `max_header_bytes` (431).
    HeaderSize,
    /// Request target over `max_uri_bytes` (414).
    UriLength,
    /// A connection over `max_client_connections` (closed as it was accepted).
    Connections,
}

impl Limit {
    pub const ALL: [Limit; 5] = [
        Limit::HeaderDeadline,
        Limit::BodyDeadline,
        Limit::HeaderSize,
        Limit::UriLength,
        Limit::Connections,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Limit::HeaderDeadline => "header_deadline",
            Limit::BodyDeadline => "body_deadline",
            Limit::HeaderSize => "header_size",
            Limit::UriLength => "uri_length",
            Limit::Connections => "connections",
        }
    }
}

#[derive(Debug, Clone)]
pub struct LimitMetrics {
    /// Indexed as [`Limit::ALL`].
    rejections: Vec<IntCounter>,
    /// `keyway_client_connections`: client connections of the proxy listener open now.
    pub client_connections: IntGauge,
}

impl LimitMetrics {
    pub fn new(registry: &Registry) -> Result<LimitMetrics> {
        let vec = IntCounterVec::new(
            Opts::new(
                "keyway_limit_rejections_total",
                "Client requests refused and connections closed by a [limits] setting, by limit (header_deadline, body_deadline, header_size, uri_length, connections)",
            ),
            &["limit"],
        )?;
        let client_connections = IntGauge::new(
            "keyway_client_connections",
            "Client connections open on the proxy listener",
        )?;
        registry.register(Box::new(vec.clone()))?;
        registry.register(Box::new(client_connections.clone()))?;
        Ok(LimitMetrics {
            rejections: Limit::ALL
                .iter()
                .map(|l| vec.with_label_values(&[l.as_str()]))
                .collect(),
            client_connections,
        })
    }

    /// The counter of `limit`, for a holder that bumps it without this struct.
    pub fn counter(&self, limit: Limit) -> IntCounter {
        self.rejections[limit as usize].clone()
    }

    pub fn rejected(&self, limit: Limit) {
        self.rejections[limit as usize].inc();
    }
}
