//! Which provider key a Portkey-routed target sends: the key in its config, the client's, or
//! the configuration's (inline or mapped from a secret manager).

use std::sync::Arc;

use http::HeaderName;

use super::super::portkey::PortkeyConfig;
use super::super::{auth_for, ProviderRoute, RouteError, Router, UpstreamAuth};
use super::{azure, bad, header, plain_header, Headers, PORTKEY_API_KEY};
use crate::cache::secrets::Entry;
use crate::vocab::{strip_bearer, AuthStyle, Provider};

/// The provider key from the config file: in the enforced posture the caller's own headers carry a
/// gateway credential, never a provider key.
pub(super) fn configured_key_auth(
    provider: Provider,
    pr: &ProviderRoute,
    op: &str,
) -> Result<(Option<UpstreamAuth>, Option<Arc<Entry>>), RouteError> {
    if provider.auth_style() == AuthStyle::None {
        return Ok((None, None));
    }
    let native = !op.starts_with("chat/completions");
    if let Some(m) = &pr.mapped_key {
        let auth = if native { &m.native } else { &m.compat };
        return Ok((Some(auth.clone()), Some(m.entry.clone())));
    }
    let key = pr
        .default_key
        .as_ref()
        .ok_or(RouteError::MissingKey(provider))?;
    key.header(native)
        .map(|a| (a.map(UpstreamAuth::Static), None))
        .map_err(|_| RouteError::MissingKey(provider))
}
pub(super) fn upstream_auth(
    router: &Router,
    provider: Provider,
    pr: &ProviderRoute,
    op: &str,
    host: &str,
    h: Headers<'_>,
    cfg: &PortkeyConfig,
) -> Result<(Option<UpstreamAuth>, Option<Arc<Entry>>), RouteError> {
    let style = provider.auth_style();
    if style == AuthStyle::None {
        return Ok((None, None));
    }
    let native = !op.starts_with("chat/completions");
    if provider.is_azure() {
        if let Some(auth) = azure::azure_auth(&router.headers, host, h, cfg)? {
            return Ok((Some(auth), None));
        }
    }
    let client_key = match cfg.api_key.as_deref().filter(|k| !k.is_empty()) {
        Some(k) => Some(("x-portkey-config", k)),
        None => client_key(h, style)?,
    };
    match client_key {
        Some((from, key)) => auth_for(provider, key, native)
            .map(|a| (a.map(UpstreamAuth::Static), None))
            .map_err(|_| bad(from, "has characters not allowed in a header")),
        None => configured_key_auth(provider, pr, op),
    }
}
static AUTHORIZATION_NAME: HeaderName = http::header::AUTHORIZATION;
static API_KEY_NAME: HeaderName = HeaderName::from_static("api-key");
static X_API_KEY_NAME: HeaderName = HeaderName::from_static("x-api-key");

/// The provider key a client sent: `x-portkey-api-key` wins over `Authorization: Bearer` (the
/// Portkey SDK sends a placeholder Bearer beside the real key), then the provider's own header.
fn client_key(
    h: Headers<'_>,
    style: AuthStyle,
) -> Result<Option<(&'static str, &str)>, RouteError> {
    if let Some(k) = header(h, &PORTKEY_API_KEY)?.filter(|k| !k.is_empty()) {
        return Ok(Some(("x-portkey-api-key", k)));
    }
    if let Some(v) = plain_header(h, &AUTHORIZATION_NAME)? {
        if let Some(k) = strip_bearer(v).filter(|k| !k.is_empty()) {
            return Ok(Some(("authorization", k)));
        }
    }
    let native = match style {
        AuthStyle::AzureApiKey => Some(&API_KEY_NAME),
        AuthStyle::Anthropic => Some(&X_API_KEY_NAME),
        _ => None,
    };
    if let Some(name) = native {
        if let Some(k) = plain_header(h, name)?.filter(|k| !k.is_empty()) {
            return Ok(Some((name.as_str(), k)));
        }
    }
    Ok(None)
}
