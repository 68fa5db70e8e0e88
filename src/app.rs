//! Wiring: config → warm caches and metrics → the first runtime → the refresher, the reloader
//! (which follows the file and the store), the proxy, the metrics listener and the admin API's
//! listener → a Pingora `Server` ready to run.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use pingora::apps::HttpServerOptions;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use pingora::services::listening::Service;

use crate::cache::renewal::Timing;
use crate::config::{Config, FileConfig, H2Settings};
use crate::control::ControlPlane;
use crate::env::Env;
use crate::metrics::strategy::{CircuitCollector, CircuitSource};
use crate::metrics::tls::TlsMetrics;
use crate::metrics::Metrics;
use crate::proxy::admin_api::AdminApi;
use crate::proxy::connections::Counted;
use crate::proxy::health::HealthApp;
use crate::proxy::ingress::{drain, tls, watch::CertWatch};
use crate::proxy::Gateway;
use crate::refresh::readiness::Readiness;
use crate::refresh::Refresher;
use crate::reload::{Origin, Overrides, ReloadService, Reloader};
use crate::routing::strategy::CircuitState;
use crate::runtime::{self, Warm};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{0}")]
    Runtime(#[from] runtime::BuildError),
    #[error("registering metrics: {0}")]
    Metrics(#[from] pingora_prometheus::prometheus::Error),
    #[error(
        "access_log.path: cannot open the access log ({0}); give a writable file or \"stdout\""
    )]
    AccessLog(String),
    #[error("TLS listener: {0}")]
    Tls(#[from] tls::TlsError),
}

/// What keyway starts from: the validated configuration, the file it was validated from and its
/// text, where it came from (for reloads) and the command line's overrides.
pub struct Launch {
    pub config: Config,
    pub file: FileConfig,
    pub text: String,
    pub path: Option<PathBuf>,
    pub env: Env,
    pub overrides: Overrides,
    /// Take the listeners over from a running keyway (`--upgrade`) instead of binding them.
    pub upgrade: bool,
}

/// Builds the server. Metrics go to the default registry, which `/metrics` serves.
pub fn build(launch: Launch) -> Result<Server, BuildError> {
    let config = &launch.config;
    let metrics = Arc::new(Metrics::new(
        pingora_prometheus::prometheus::default_registry(),
    )?);
    let limits_metrics = metrics.limits.clone();
    let warm = Arc::new(Warm::new(config, metrics.clone(), Timing::system()));
    let metrics_trace = metrics.trace.clone();
    let file_digest = runtime::digest_of(&launch.text);
    // The file's objects serve at once; the store's join when the reloader has loaded them
    // (until then the instance is not ready, and `/readyz` says why).
    let mut first = runtime::build(config, file_digest.clone(), &warm)?;
    first.awaits_store = config.store.is_some();
    let rt = Arc::new(first);
    rt.activate(&warm, None);
    let runtime = Arc::new(ArcSwap::new(rt));
    let ready = Arc::new(Readiness::default());
    let circuits = runtime.clone();
    let source: CircuitSource = Arc::new(move || {
        let now = std::time::Instant::now();
        let rt = circuits.load();
        rt.circuits
            .iter()
            .map(|c| {
                let open = c.breaker.state(now) == CircuitState::Open;
                (c.owner.clone(), c.target.clone(), open)
            })
            .collect()
    });
    pingora_prometheus::prometheus::default_registry()
        .register(Box::new(CircuitCollector::new(source)?))?;

    let conf = ServerConf {
        threads: config.threads,
        grace_period_seconds: Some(config.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(5),
        ca_file: config.ca_file.clone(),
        work_stealing: config.work_stealing,
        // Every attempt of a routing strategy is one of Pingora's tries.
        max_retries: crate::config::MAX_ATTEMPTS as usize,
        upstream_keepalive_pool_size: config.keepalive_pool,
        upgrade_sock: config.upgrade_socket.clone(),
        ..ServerConf::default()
    };
    // Before the bootstrap: with --upgrade, the old process starts leaving once it has handed
    // over its sockets, so nothing that can fail may come after.
    let tls = match &config.tls {
        Some(t) => {
            let metrics = TlsMetrics::new(pingora_prometheus::prometheus::default_registry())?;
            let served = Arc::new(tls::ServedCert::load(t, metrics)?);
            Some((t, tls::listener_settings(t, served.clone())?, served))
        }
        None => None,
    };
    let opt = Opt {
        upgrade: launch.upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();
    drain::exit_when_drained(server.watch_execution_phase(), metrics.in_flight.clone());

    let refresher = Refresher {
        runtime: runtime.clone(),
        warm: warm.clone(),
        ready: ready.clone(),
    };
    let refresher = server.add_service(pingora::services::background::background_service(
        "refresher",
        refresher,
    ));
    let origin = Origin {
        path: launch.path.clone(),
        env: launch.env.clone(),
        overrides: launch.overrides.clone(),
        file: launch.file.clone(),
        file_digest,
    };
    let reloader = Arc::new(Reloader::new(origin, config, runtime.clone(), warm.clone()));
    let observe = crate::observe::Observer::new(&config.observe, warm.metrics.clone())
        .map_err(|e| BuildError::AccessLog(e.to_string()))?;
    let observe = Arc::new(observe);
    let log = observe.clone();
    server.add_service(pingora::services::background::background_service(
        "reloader",
        ReloadService {
            reloader: reloader.clone(),
            on_hangup: Some(Box::new(move || log.reopen_log())),
        },
    ));

    // The admin API exists with a store (it is where its objects live).
    let control = config.store.as_ref().map(|_| {
        Arc::new(ControlPlane {
            runtime: runtime.clone(),
            reloader,
            metrics,
        })
    });
    let tracer = config.tracing.as_ref().map(|t| {
        let (tracer, exporter) = crate::trace::Tracer::new(t, metrics_trace.clone());
        // The origin only: a path or query could carry a collector's token.
        log::info!(
            "tracing: OTLP/HTTP export to {} (sample_ratio {})",
            t.endpoint.origin().ascii_serialization(),
            t.sample_ratio
        );
        server.add_service(pingora::services::background::background_service(
            "trace exporter",
            crate::proxy::trace::TraceExport::new(exporter),
        ));
        Arc::new(tracer)
    });
    let gateway = Gateway {
        runtime,
        observe,
        warm,
        admin: control.clone().filter(|_| config.admin.on_proxy_listener),
        tracer,
        limits: config.limits,
    };
    // The proxy app behind the client-connection cap and the header deadline.
    let mut app = pingora::proxy::http_proxy(&server.configuration, gateway);
    http2_options(&mut app, config.listener.h2);
    let app = Counted::new(app, &config.limits, &limits_metrics);
    let mut proxy = Service::new("Pingora HTTP Proxy Service".to_owned(), app);
    let buffers = L4BufferSettings::new(config.listener.read_buffer, config.listener.write_buffer);
    proxy.add_listener(ListenerConfig::tcp(&config.listen).l4_buffer(buffers));
    if let Some((t, settings, served)) = tls {
        proxy.add_listener(
            ListenerConfig::tcp(&t.listen)
                .tls(settings)
                .l4_buffer(buffers),
        );
        server.add_service(pingora::services::background::background_service(
            "TLS certificate",
            CertWatch {
                served,
                watch: t.watch,
            },
        ));
    }
    let proxy = server.add_service(proxy);
    proxy.add_dependency(&refresher);

    let mut health = Service::new(
        "metrics".to_owned(),
        pingora::apps::http_app::HttpServer::new_app(HealthApp { ready }),
    );
    health.add_tcp(&config.metrics_listen);
    server.add_service(health);

    if let Some(control) = control {
        let mut admin = Service::new(
            "admin API".to_owned(),
            pingora::apps::http_app::HttpServer::new_app(AdminApi { control }),
        );
        admin.add_tcp(&config.admin.listen);
        server.add_service(admin);
    }
    Ok(server)
}

/// HTTP/2 from clients: h2c on the clear listener when asked, and explicit limits for every
/// HTTP/2 connection (custom options would otherwise lose Pingora's bounded defaults).
fn http2_options<S>(app: &mut pingora::proxy::HttpProxy<S>, h2: H2Settings) {
    let mut options = HttpServerOptions::default();
    options.h2c = h2.h2c;
    options.h2_idle_timeout = h2.idle_timeout;
    app.server_options = Some(options);
    let mut limits = pingora::protocols::http::v2::server::H2Options::new();
    limits.max_concurrent_streams(h2.max_concurrent_streams);
    limits.max_header_list_size(h2.max_header_list_bytes);
    app.h2_options = Some(limits);
}
