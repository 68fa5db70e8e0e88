//! Wiring: config → router, caches, metrics → background service → proxy and admin services →
//! a Pingora `Server` ready to run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::services::listening::Service;

use crate::admin::AdminApp;
use crate::cache::dns::Dns;
use crate::cache::tokens::TokenCache;
use crate::config::Config;
use crate::credentials::spec::IdentityContext;
use crate::metrics::Metrics;
use crate::proxy::Gateway;
use crate::refresh::Refresher;
use crate::routing::Router;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{0}")]
    Routing(String),
    #[error("auth.jwt: {0}")]
    Jwt(String),
    #[error("registering metrics: {0}")]
    Metrics(#[from] pingora_prometheus::prometheus::Error),
}

/// Builds the server. Metrics go to the default registry, which `/metrics` serves.
pub fn build(config: &Config) -> Result<Server, BuildError> {
    let id = &config.identity;
    let tokens = Arc::new(TokenCache::new(id.token_max, id.token_idle));
    let identity = IdentityContext::new(
        id.authority.clone(),
        id.imds_endpoint.clone(),
        id.app_service.clone(),
        id.aws_region.clone(),
        id.sts_endpoint.clone(),
    );
    let router =
        Arc::new(Router::new(config, tokens.clone(), identity).map_err(BuildError::Routing)?);
    let metrics = Arc::new(Metrics::new(
        pingora_prometheus::prometheus::default_registry(),
        router.route_names(),
    )?);
    let dns = Arc::new(Dns::default());
    let jwt = config
        .jwt
        .iter()
        .cloned()
        .map(crate::auth::jwt::JwtValidator::new)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| BuildError::Jwt(e.to_string()))?;
    let jwks = jwt
        .iter()
        .map(|v| (v.jwks().clone(), v.settings().refresh_interval))
        .collect();
    let auth = Arc::new(crate::auth::gate::Authenticator {
        mode: config.auth.mode,
        keys: config.auth.keys.clone(),
        jwt,
        workspaces: config.auth.workspaces.clone(),
        virtual_keys: config.auth.virtual_keys.clone(),
    });
    let ready = Arc::new(AtomicBool::new(false));

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
        dns: dns.clone(),
        fixed_hosts: router.fixed_hosts(),
        tokens,
        jwks,
        metrics: metrics.clone(),
        ready: ready.clone(),
    };
    let refresher = server.add_service(pingora::services::background::background_service(
        "refresher",
        refresher,
    ));

    let gateway = Gateway {
        auth,
        router,
        dns,
        metrics,
        timeouts: config.timeouts,
    };
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

/// Marks readiness; `/readyz` answers 200 from then on.
pub fn set_ready(flag: &AtomicBool) {
    flag.store(true, Ordering::Release);
}
