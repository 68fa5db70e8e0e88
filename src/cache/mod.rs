//! Lock-free reads for the hot path, and the refresh engine (`renewal`) that says when each
//! cached credential is renewed.

pub mod dns;
pub mod renewal;
pub mod secrets;
pub mod tokens;
