//! How a provider key becomes its header: which header each provider wants, Bearer or not, for
//! keys known when routing and for keys mapped from a secret manager (their header is built
//! when the value is read).

use std::sync::Arc;

use http::{HeaderName, HeaderValue};

use super::plan::{AuthHeader, SecretAuth, UpstreamAuth};
use super::{API_KEY, AUTHORIZATION, X_API_KEY};
use crate::cache::secrets::Entry;
use crate::credentials::{AI_FOUNDRY_SCOPE, COGNITIVE_SCOPE};
use crate::vocab::{AuthStyle, Provider};

/// A provider's default key mapped from a secret: its store entry and its header in both of
/// the provider's styles (see `auth_for`'s `native`).
#[derive(Debug)]
pub struct MappedKey {
    pub entry: Arc<Entry>,
    pub native: UpstreamAuth,
    pub compat: UpstreamAuth,
}

impl MappedKey {
    pub fn new(provider: Provider, entry: Arc<Entry>) -> Option<MappedKey> {
        Some(MappedKey {
            native: secret_auth(provider, &entry, true)?,
            compat: secret_auth(provider, &entry, false)?,
            entry,
        })
    }
}

/// A provider's key from the configuration, as its header in both of the provider's styles
/// (see `auth_for`'s `native`): built with the runtime, not per request. `Err` when the key
/// holds characters not allowed in a header.
#[derive(Debug)]
pub struct ConfiguredKey {
    native: Result<Option<AuthHeader>, &'static str>,
    compat: Result<Option<AuthHeader>, &'static str>,
}

impl ConfiguredKey {
    pub fn new(provider: Provider, key: &str) -> ConfiguredKey {
        ConfiguredKey {
            native: auth_for(provider, key, true),
            compat: auth_for(provider, key, false),
        }
    }

    /// The key's header in one style.
    pub fn header(&self, native: bool) -> Result<Option<AuthHeader>, &'static str> {
        match native {
            true => self.native.clone(),
            false => self.compat.clone(),
        }
    }
}

/// The header that carries `key` for `provider`; `native` selects Anthropic's own API
/// (x-api-key) over its OpenAI-compatible one (Bearer). `Ok(None)` for providers that take no
/// credential.
pub fn auth_for(
    provider: Provider,
    key: &str,
    native: bool,
) -> Result<Option<AuthHeader>, &'static str> {
    let Some((name, bearer)) = key_header(provider.auth_style(), native) else {
        return Ok(None);
    };
    let value = match bearer {
        true => crate::vocab::bearer(key),
        false => HeaderValue::from_str(key).ok().map(|mut v| {
            v.set_sensitive(true);
            v
        }),
    };
    let value = value.ok_or("the key holds characters not allowed in a header")?;
    Ok(Some(AuthHeader { name, value }))
}

/// A mapped key's header for `provider`; `native` as in `auth_for`.
pub fn secret_auth(provider: Provider, entry: &Arc<Entry>, native: bool) -> Option<UpstreamAuth> {
    let (name, bearer) = key_header(provider.auth_style(), native)?;
    Some(UpstreamAuth::Secret(Arc::new(SecretAuth::new(
        entry.clone(),
        name,
        bearer,
    ))))
}

/// The header a provider key goes in, and whether as `Bearer`; `None` for providers that take
/// no credential.
fn key_header(style: AuthStyle, native: bool) -> Option<(HeaderName, bool)> {
    Some(match style {
        AuthStyle::None => return None,
        AuthStyle::Bearer => (AUTHORIZATION, true),
        AuthStyle::AzureApiKey => (API_KEY, false),
        AuthStyle::Anthropic if native => (X_API_KEY, false),
        AuthStyle::Anthropic => (AUTHORIZATION, true),
    })
}

/// Entra scope for an Azure host: AI Foundry hosts want their own audience.
pub fn default_scope(host: &str) -> &'static str {
    if host.ends_with(".services.ai.azure.com") {
        AI_FOUNDRY_SCOPE
    } else {
        COGNITIVE_SCOPE
    }
}
