//! Token sources against local fakes of Entra, IMDS, App Service and AWS STS: each test calls
//! `keyway::credentials` directly and asserts the exact request the fake received.

mod common;

#[path = "credentials/entra.rs"]
mod entra;
#[path = "credentials/federated.rs"]
mod federated;
#[path = "credentials/managed.rs"]
mod managed;
#[path = "credentials/workload.rs"]
mod workload;

use std::time::SystemTime;

use keyway::credentials::Token;

const TENANT: &str = "tenant-1";
const COGNITIVE_RESOURCE: &str = "https://cognitiveservices.azure.com/";

/// `expires_at` is `secs` from now, give or take the test's own run time.
fn assert_expires_in(t: &Token, secs: u64) {
    let left = t.lifetime_left(SystemTime::now()).as_secs();
    assert!(
        left <= secs && left + 5 >= secs,
        "lifetime left {left}, expected ~{secs}"
    );
}
