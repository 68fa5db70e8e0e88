//! The proxy's front door beyond the clear listener: the TLS listener and its certificate
//! (`tls`, reloaded by `watch`), and the end of a graceful shutdown (`drain`).

pub mod drain;
pub mod tls;
pub mod watch;
