//! What the benches build their inputs from: the runtime a configuration text makes, built the
//! way the tests build one (fresh caches, nothing fetched, no server).

use std::sync::Arc;

use keyway::cache::renewal::Timing;
use keyway::env::Env;
use keyway::metrics::Metrics;
use keyway::runtime::{self, Runtime, Warm};

/// The runtime of `toml` and the caches it looks its credentials up in. Panics on a config the
/// benches got wrong: a bench must never time an error path.
pub fn runtime(toml: &str) -> (Runtime, Warm) {
    let config = keyway::config::from_str(toml, &Env::default()).expect("bench config is valid");
    let registry = pingora_prometheus::prometheus::Registry::new();
    let metrics = Arc::new(Metrics::new(&registry).expect("metrics register"));
    let warm = Warm::new(&config, metrics, Timing::system());
    let rt = runtime::build(&config, runtime::digest_of(toml), &warm).expect("runtime builds");
    (rt, warm)
}
