//! Wiring: config → warm caches and metrics → the first runtime → the refresher, the reloader,
//! the proxy and the admin listener → a Pingora `Server` ready to run.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::services::listening::Service;

use crate::admin::AdminApp;
use crate::cache::renewal::Timing;
use crate::config::Config;
use crate::env::Env;
use crate::metrics::Metrics;
use crate::proxy::Gateway;
use crate::refresh::readiness::Readiness;
use crate::refresh::Refresher;
use crate::reload::{Overrides, ReloadService, Reloader};
use crate::runtime::{self, Warm};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{0}")]
    Runtime(#[from] runtime::BuildError),
    #[error("registering metrics: {0}")]
    Metrics(#[from] pingora_prometheus::prometheus::Error),
}

/// What keyway starts from: the validated configuration, its text, where it came from (for
/// reloads) and the command line's overrides.
pub struct Launch {
    pub config: Config,
    pub text: String,
    pub path: Option<PathBuf>,
    pub env: Env,
    pub overrides: Overrides,
}

/// Builds the server. Metrics go to the default registry, which `/metrics` serves.
pub fn build(launch: Launch) -> Result<Server, BuildError> {
    let config = &launch.config;
    let metrics = Arc::new(Metrics::new(
        pingora_prometheus::prometheus::default_registry(),
    )?);
    let warm = Arc::new(Warm::new(config, metrics, Timing::system()));
    let rt = Arc::new(runtime::build(
        config,
        runtime::digest_of(&launch.text),
        &warm,
    )?);
    rt.activate(&warm, None);
    let runtime = Arc::new(ArcSwap::new(rt));
    let ready = Arc::new(Readiness::default());

    let conf = ServerConf {
        threads: config.threads,
        grace_period_seconds: Some(config.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(5),
        ca_file: config.ca_file.clone(),
        work_stealing: config.work_stealing,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let refresher = Refresher {
        runtime: runtime.clone(),
        warm: warm.clone(),
        ready: ready.clone(),
    };
    let refresher = server.add_service(pingora::services::background::background_service(
        "refresher",
        refresher,
    ));
    let reloader = Arc::new(Reloader::new(
        launch.path.clone(),
        launch.env.clone(),
        launch.overrides.clone(),
        config,
        runtime.clone(),
        warm.clone(),
    ));
    server.add_service(pingora::services::background::background_service(
        "reloader",
        ReloadService { reloader },
    ));

    let gateway = Gateway { runtime, warm };
    let mut proxy = pingora::proxy::http_proxy_service(&server.configuration, gateway);
    proxy.add_tcp(&config.listen);
    let proxy = server.add_service(proxy);
    proxy.add_dependency(&refresher);

    let mut admin = Service::new(
        "admin".to_owned(),
        pingora::apps::http_app::HttpServer::new_app(AdminApp { ready }),
    );
    admin.add_tcp(&config.metrics_listen);
    server.add_service(admin);
    Ok(server)
}
