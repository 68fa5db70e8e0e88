//! Client authentication of a runtime: the gateway keys, workspaces and virtual keys of the
//! configuration, and its JWT validators — the previous runtime's when their settings are the
//! same (their verified tokens and key sets stay warm), else new ones over the key set of the
//! same identity provider when there is one.

use std::sync::Arc;

use super::{BuildError, JwksWatch, Warm};
use crate::auth::gate::Authenticator;
use crate::auth::jwt::{JwtSettings, JwtValidator};
use crate::config::Config;

pub fn authenticator(
    config: &Config,
    warm: &Warm,
) -> Result<(Authenticator, Vec<JwksWatch>), BuildError> {
    let previous = warm
        .validators
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut jwt = Vec::with_capacity(config.jwt.len());
    let mut watches = Vec::with_capacity(config.jwt.len());
    for (i, settings) in config.jwt.iter().enumerate() {
        let v = validator(settings, &previous)?;
        watches.push(JwksWatch {
            name: format!("auth.jwt[{i}]"),
            cache: v.jwks().clone(),
            every: settings.refresh_interval,
        });
        jwt.push(v);
    }
    let auth = Authenticator::new(
        config.auth.mode,
        config.auth.keys.clone(),
        jwt,
        config.auth.workspaces.clone(),
        config.auth.virtual_keys.clone(),
    );
    Ok((auth, watches))
}

fn validator(
    settings: &JwtSettings,
    previous: &[Arc<JwtValidator>],
) -> Result<Arc<JwtValidator>, BuildError> {
    if let Some(same) = previous.iter().find(|v| v.settings() == settings) {
        return Ok(same.clone());
    }
    let same_keys = previous.iter().find(|v| {
        let s = v.settings();
        s.source == settings.source
            && s.issuer_document == settings.issuer_document
            && s.min_refetch_interval == settings.min_refetch_interval
    });
    match same_keys {
        Some(v) => Ok(Arc::new(JwtValidator::with_keys(
            settings.clone(),
            v.jwks().clone(),
        ))),
        None => JwtValidator::new(settings.clone())
            .map(Arc::new)
            .map_err(|e| BuildError::Jwt(e.to_string())),
    }
}
