//! Lock-free reads for the hot path.

pub mod dns;
pub mod secrets;
pub mod tokens;
