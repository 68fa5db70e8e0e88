//! Wiring: config → router, caches, metrics → background service → proxy and admin services →
//! a Pingora `Server` ready to run.

use std::sync::Arc;

use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::services::listening::Service;

use crate::admin::AdminApp;
use crate::cache::dns::Dns;
use crate::cache::secrets::SecretStore;
use crate::cache::tokens::{SlotBearer, TokenCache};
use crate::config::secrets::SourceConfig;
use crate::config::Config;
use crate::credentials::secrets::{aws, keyvault, vault, Fetcher};
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
    let metrics = Arc::new(Metrics::new(
        pingora_prometheus::prometheus::default_registry(),
        &crate::routing::route_names(config),
    )?);
    let secrets = secret_store(config, &tokens, &identity, &metrics)?;
    let caches = crate::routing::Caches {
        tokens: tokens.clone(),
        secrets: &secrets,
        identity,
    };
    let router = Arc::new(Router::new(config, caches).map_err(BuildError::Routing)?);
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
        .enumerate()
        .map(|(i, v)| {
            let name = format!("auth.jwt[{i}]");
            (name, v.jwks().clone(), v.settings().refresh_interval)
        })
        .collect();
    let auth = Arc::new(crate::auth::gate::Authenticator::new(
        config.auth.mode,
        config.auth.keys.clone(),
        jwt,
        config.auth.workspaces.clone(),
        config.auth.virtual_keys.clone(),
    ));
    let ready = Arc::new(crate::refresh::readiness::Readiness::default());

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
        secrets: secrets.clone(),
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
        secrets,
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

/// The secret store: one fetcher per secret reference some credential, virtual key or provider
/// maps (an unused reference costs nothing, not even a Key Vault token), one entry per mapping.
fn secret_store(
    config: &Config,
    tokens: &TokenCache,
    identity: &IdentityContext,
    metrics: &Arc<Metrics>,
) -> Result<Arc<SecretStore>, BuildError> {
    let uses: Vec<_> = config
        .providers
        .values()
        .filter_map(|p| p.key_mapping.clone())
        .chain(
            config
                .credentials
                .values()
                .filter_map(|c| c.secret_uses().cloned()),
        )
        .collect();
    let http = crate::credentials::secrets::http_client();
    let mut fetchers: Vec<Option<Fetcher>> = Vec::new();
    for (i, r) in config.secrets.references.iter().enumerate() {
        log::info!("secret reference {}", r.shown);
        if !uses.iter().any(|u| u.reference == i) {
            log::warn!(
                "secret reference '{}' is not mapped anywhere; it is never fetched",
                r.slug
            );
            fetchers.push(None);
            continue;
        }
        let fetcher: Fetcher = match &r.source {
            SourceConfig::Aws(s) => Arc::new(aws::AwsSecret::new(s.clone(), r.path.clone())),
            SourceConfig::Vault(s) => {
                Arc::new(vault::VaultSecret::new(http.clone(), s.clone(), &r.path))
            }
            SourceConfig::KeyVault {
                vault_url,
                credential,
            } => {
                let spec = credential.spec(crate::credentials::KEY_VAULT_SCOPE, &|_| {
                    unreachable!("a Key Vault credential holds its client secret inline")
                });
                let name = format!("secret_references.{}", r.slug);
                // Pinned (fetched at start-up, gating /readyz) only when secrets are prefetched;
                // otherwise the first secret fetch gets the token.
                let pin = config.secrets.prefetch.then_some(name.as_str());
                let slot = tokens
                    .slot(&spec, pin, || identity.source(&spec))
                    .ok_or_else(|| {
                        BuildError::Routing(format!("{name}: tokens.max_cached is too small"))
                    })?;
                Arc::new(keyvault::KeyVaultSecret {
                    http: http.clone(),
                    url: keyvault::secret_url(vault_url, &r.path)
                        .map_err(|m| BuildError::Routing(format!("{name}: {m}")))?,
                    token: Arc::new(SlotBearer {
                        slot,
                        metrics: metrics.clone(),
                    }),
                })
            }
        };
        fetchers.push(Some(fetcher));
    }
    Ok(Arc::new(SecretStore::new(
        &config.secrets,
        uses,
        &fetchers,
        metrics.clone(),
    )))
}
