//! Local fakes of the secret managers keyway reads (Azure Key Vault, HashiCorp Vault), built on
//! `FakeUpstream`. Each checks requests the way the real service does (Key Vault: an Entra token
//! for the vault scope and `api-version`; Vault: `X-Vault-Token`, namespace, AppRole leases),
//! answers in the real JSON shapes and error codes, and records what it received. Both sit
//! behind a `Front` that can refuse connections, so a test can take a manager down the way a
//! crashed or unreachable one looks to keyway, or answer 503 as an overloaded or sealed one does.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;

use super::identity::{path_of, EntraHandle, FakeEntra, Params};
use super::{FakeUpstream, Recorded, Reply};

mod front;
mod key_vault;
mod vault;

// Each test binary uses its own part of the fakes.
#[allow(unused_imports)]
pub use front::Front;
#[allow(unused_imports)]
pub use key_vault::FakeKeyVault;
#[allow(unused_imports)]
pub use vault::FakeVault;

/// The scope keyway asks Entra for when it reads Key Vault.
pub const VAULT_SCOPE: &str = "https://vault.azure.net/.default";
/// The only Key Vault `api-version` keyway sends (and this fake accepts).
pub const KV_API_VERSION: &str = "7.4";

/// How a fake secret manager is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outage {
    /// Up.
    None,
    /// Every request gets a 503 (Key Vault throttled / Vault sealed).
    Unavailable,
    /// The port refuses connections and open connections are cut.
    Refused,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn rfc3339_now() -> String {
    // Vault prints RFC 3339 with nanoseconds; the exact instant does not matter to keyway.
    let s = unix_now();
    let (days, rem) = (s / 86400, s % 86400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000000000Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z.rem_euclid(146097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn random_hex(n: usize) -> String {
    let mut s = String::with_capacity(n);
    while s.len() < n {
        s.push_str(&format!("{:016x}", rand::random::<u64>()));
    }
    s.truncate(n);
    s
}

fn json_reply(status: u16, body: Value, headers: Vec<(&'static str, &'static str)>) -> Reply {
    Reply::Json {
        status,
        body: body.to_string(),
        headers,
    }
}

fn delayed(delay: Option<Duration>, r: Reply) -> Reply {
    match delay {
        Some(d) => Reply::Delay(d, Box::new(r)),
        None => r,
    }
}
