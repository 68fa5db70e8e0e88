//! The routing tables of a runtime: one row per provider (base URL, default key inline or
//! mapped), one per front-door route and one per virtual key, each with its credential built
//! once.

use std::collections::HashMap;

use super::credentials::Builder;
use super::BuildError;
use crate::config::Config;
use crate::credentials::spec::IdentityContext;
use crate::routing::url::BaseUrl;
use crate::routing::{
    FixedHost, FrontDoor, HeaderCredentials, MappedKey, ProviderRoute, Router, RouterParts,
    StoredConfig, VirtualKeyRoute,
};
use crate::vocab::Provider;

pub fn router(
    config: &Config,
    creds: &mut Builder<'_>,
    identity: IdentityContext,
) -> Result<Router, BuildError> {
    let providers = providers(config, creds)?;
    let mut routes = Vec::with_capacity(config.routes.len());
    for r in &config.routes {
        let (auth, secret) = creds
            .credential(r.provider, &r.credential, &r.upstream.host)
            .map_err(|e| {
                BuildError::Routing(format!(
                    "routes.{}: credential {}: {e}",
                    r.name, r.credential
                ))
            })?;
        routes.push(FrontDoor {
            name: r.name.clone(),
            path_prefix: r.path_prefix.clone(),
            host: r.host.clone(),
            provider: r.provider,
            fixed: FixedHost::of(&r.upstream).ok_or_else(|| {
                BuildError::Routing(format!("routes.{}: upstream has no fixed host", r.name))
            })?,
            base: r.upstream.clone(),
            strip_prefix: r.strip_prefix,
            auth,
            secret,
        });
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
        configs: config
            .configs
            .iter()
            .map(|(slug, c)| {
                let stored = StoredConfig {
                    target: c.config.clone().first_target(),
                    workspace: c.workspace.clone(),
                };
                (slug.clone(), stored)
            })
            .collect(),
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
                default_key: settings.and_then(|s| s.api_key.clone()),
                mapped_key,
                api_version: settings.and_then(|s| s.api_version.as_deref().map(Into::into)),
            })
        })
        .collect()
}
