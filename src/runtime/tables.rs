//! The routing tables of a runtime: one row per provider (base URL, default key inline or
//! mapped), one per front-door route and one per virtual key, each with its credential built
//! once.

use std::collections::HashMap;
use std::sync::Arc;

use super::circuits::{Circuit, Circuits};
use super::credentials::Builder;
use super::BuildError;
use crate::config::Config;
use crate::credentials::spec::IdentityContext;
use crate::routing::url::BaseUrl;
use crate::routing::{
    ConfiguredKey, FixedHost, FrontDoor, FrontDoorTarget, HeaderCredentials, MappedKey,
    ProviderRoute, Router, RouterParts, StoredConfig, VirtualKeyRoute,
};
use crate::vocab::Provider;

pub fn router(
    config: &Config,
    creds: &mut Builder<'_>,
    identity: IdentityContext,
    circuits: &Circuits,
    used: &mut Vec<Circuit>,
) -> Result<Router, BuildError> {
    let providers = providers(config, creds)?;
    let mut routes = Vec::with_capacity(config.routes.len());
    for r in &config.routes {
        let mut targets = r.targets.clone().try_map(|path, t| {
            let (auth, secret) = creds
                .credential(t.provider, &t.credential, &t.upstream.host)
                .map_err(|e| {
                    BuildError::Routing(format!(
                        "routes.{} ({path}): credential {}: {e}",
                        r.name, t.credential
                    ))
                })?;
            Ok::<_, BuildError>(FrontDoorTarget {
                provider: t.provider,
                fixed: FixedHost::of(&t.upstream).ok_or_else(|| {
                    BuildError::Routing(format!(
                        "routes.{} ({path}): upstream has no fixed host",
                        r.name
                    ))
                })?,
                base: t.upstream.clone(),
                auth,
                secret,
            })
        })?;
        targets.attach_breakers(|path, cfg| {
            circuits.circuit(&format!("route:{}", r.name), path, cfg, used)
        });
        routes.push(FrontDoor {
            name: r.name.clone(),
            path_prefix: r.path_prefix.clone(),
            host: r.host.clone(),
            strip_prefix: r.strip_prefix,
            targets: Arc::new(targets),
        });
    }
    let mut configs = HashMap::with_capacity(config.configs.len());
    for (slug, c) in &config.configs {
        let mut tree = c.config.clone();
        tree.attach_breakers(|path, cfg| {
            circuits.circuit(&format!("config:{slug}"), path, cfg, used)
        });
        let stored = StoredConfig {
            tree: Arc::new(tree),
            workspace: c.workspace.clone(),
        };
        configs.insert(slug.clone(), stored);
    }
    let mut virtual_keys = HashMap::new();
    for vk in config.auth.virtual_keys.iter() {
        let base = base_url(config, vk.provider);
        let host = base
            .host_with(vk.resource_name.as_deref(), None)
            .into_owned();
        let (auth, secret) = creds
            .credential(vk.provider, &vk.credential, &host)
            .map_err(|e| {
                BuildError::Routing(format!(
                    "virtual_keys.{}: credential {}: {e}",
                    vk.id, vk.credential
                ))
            })?;
        let row = VirtualKeyRoute {
            provider: vk.provider,
            resource_name: vk.resource_name.clone(),
            deployment_id: vk.deployment_id.clone(),
            api_version: vk.api_version.clone(),
            auth,
            secret,
        };
        virtual_keys.insert(vk.id.to_string(), row);
    }
    Ok(Router::new(RouterParts {
        providers,
        routes,
        trusted: config.trusted_custom_hosts.clone(),
        virtual_keys,
        headers: HeaderCredentials {
            tokens: creds.tokens(),
            identity,
            workload: config.identity.workload.clone(),
            ambient: config.identity.ambient_from_headers,
        },
        configs,
    }))
}

fn base_url(config: &Config, p: Provider) -> BaseUrl {
    config
        .providers
        .get(&p)
        .and_then(|s| s.base_url.clone())
        .unwrap_or_else(|| BaseUrl::parse(p.default_base_url()).expect("built-in base URLs parse"))
}

/// One row per provider, in `Provider::index()` order.
fn providers(config: &Config, creds: &mut Builder<'_>) -> Result<Vec<ProviderRoute>, BuildError> {
    Provider::ALL
        .iter()
        .map(|&p| {
            let settings = config.providers.get(&p);
            let mapped_key = match settings.and_then(|s| s.key_mapping.as_ref()) {
                Some(u) => {
                    let entry = creds.secret(u).map_err(|e| {
                        BuildError::Routing(format!("providers.{p}: key mapping: {e}"))
                    })?;
                    MappedKey::new(p, entry)
                }
                None => None,
            };
            let base = base_url(config, p);
            Ok(ProviderRoute {
                configured: settings.is_some_and(|s| s.base_url.is_some()),
                fixed: FixedHost::of(&base),
                base,
                default_key: settings
                    .and_then(|s| s.api_key.as_ref())
                    .map(|k| ConfiguredKey::new(p, k.expose())),
                mapped_key,
                api_version: settings.and_then(|s| s.api_version.as_deref().map(Into::into)),
            })
        })
        .collect()
}
