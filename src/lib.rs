//! keyway: a high-throughput gateway for LLM APIs on Pingora. See README.md.

pub mod app;
pub mod auth;
pub mod cache;
pub mod config;
pub mod control;
pub mod credentials;
pub mod env;
pub mod error;
pub mod metrics;
pub mod observe;
pub mod proxy;
pub mod refresh;
pub mod reload;
pub mod routing;
pub mod runtime;
pub mod secret;
pub mod store;
pub mod trace;
pub mod vocab;
