//! Lock-free reads for the hot path.

pub mod dns;
pub mod tokens;
