//! Distributed tracing (`[tracing]`, off by default): W3C `traceparent` in and out, a SERVER
//! span per request and a CLIENT span per upstream attempt with the HTTP and GenAI semantic
//! convention attributes, exported over OTLP/HTTP in the background. Pingora-free: the proxy's
//! glue (`proxy/trace.rs`) feeds it. Off, none of it runs: the proxy holds no tracer and
//! checks one `Option` per hook.

pub mod context;
pub mod export;
pub mod request;
pub mod span;

pub use export::{Exporter, Tracer};
pub use request::{Arrival, RequestTrace, Upstream};
pub use span::GenAi;
