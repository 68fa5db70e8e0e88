//! Azure's auth modes selected by request headers (open posture): a caller-supplied Entra
//! token, or a token keyway fetches and caches for the mode and fields the headers name.

use super::super::credentials::default_scope;
use super::super::portkey::PortkeyConfig;
use super::super::{AuthHeader, HeaderCredentials, RouteError, UpstreamAuth, AUTHORIZATION};
use super::{bad, field, Headers};
use super::{
    AZURE_AD_TOKEN, AZURE_AUTH_MODE, ENTRA_CLIENT, ENTRA_SCOPE, ENTRA_SECRET, ENTRA_TENANT,
    MANAGED_CLIENT, WORKLOAD_CLIENT,
};
use crate::credentials::spec::{ClientSecret, KeyParts, TokenSpec};
use crate::credentials::AuthMode;
use crate::secret::Secret;
use crate::vocab::strip_bearer;

/// Azure's auth modes other than a plain API key: a caller-supplied Entra token, or a token
/// keyway fetches and caches. `None` means "use an API key".
pub(super) fn azure_auth(
    router: &HeaderCredentials,
    host: &str,
    h: Headers<'_>,
    cfg: &PortkeyConfig,
) -> Result<Option<UpstreamAuth>, RouteError> {
    if let Some(token) = field(h, &AZURE_AD_TOKEN, cfg.azure_ad_token.as_deref())? {
        let token = strip_bearer(token).unwrap_or(token);
        let value = crate::vocab::bearer(token).ok_or_else(|| {
            bad(
                AZURE_AD_TOKEN.as_str(),
                "has characters not allowed in a header",
            )
        })?;
        return Ok(Some(UpstreamAuth::Static(AuthHeader {
            name: AUTHORIZATION,
            value,
        })));
    }
    let mode = match field(h, &AZURE_AUTH_MODE, cfg.azure_auth_mode.as_deref())? {
        None => return Ok(None),
        Some(m) => AuthMode::parse(m).ok_or_else(|| {
            bad(
                AZURE_AUTH_MODE.as_str(),
                "must be one of apiKey, entra, managed, workload, entraFederated",
            )
        })?,
    };
    if mode == AuthMode::ApiKey {
        return Ok(None);
    }
    let fields = token_fields(router, mode, host, h, cfg)?;
    let parts = fields.parts(mode);
    if let Some(slot) = router.tokens.get(&parts.key()) {
        return Ok(Some(UpstreamAuth::Token(slot)));
    }
    let spec = fields.spec(mode);
    router
        .tokens
        .slot(&spec, false, || router.identity.source(&spec))
        .map(|slot| Some(UpstreamAuth::Token(slot)))
        .ok_or(RouteError::TokenCacheFull)
}

/// A token credential's fields as the request states them, borrowed.
struct TokenFields<'a> {
    tenant: &'a str,
    client: &'a str,
    scope: &'a str,
    secret: &'a str,
    token_file: Option<&'a std::path::Path>,
}

impl<'a> TokenFields<'a> {
    fn parts(&self, mode: AuthMode) -> KeyParts<'a> {
        let extra: &'a [u8] = match mode {
            AuthMode::Entra => self.secret.as_bytes(),
            AuthMode::Workload => self
                .token_file
                .map_or(b"", |p| p.as_os_str().as_encoded_bytes()),
            _ => b"",
        };
        KeyParts {
            mode,
            tenant: self.tenant,
            client: self.client,
            scope: self.scope,
            extra,
        }
    }

    fn spec(&self, mode: AuthMode) -> TokenSpec {
        let (tenant, client_id, scope) = (
            self.tenant.to_owned(),
            self.client.to_owned(),
            self.scope.to_owned(),
        );
        match mode {
            AuthMode::Managed => TokenSpec::Managed {
                client_id: (!client_id.is_empty()).then_some(client_id),
                scope,
            },
            AuthMode::Workload => TokenSpec::Workload {
                tenant,
                client_id,
                token_file: self.token_file.map(Into::into).unwrap_or_default(),
                scope,
            },
            AuthMode::EntraFederated => TokenSpec::Federated {
                tenant,
                client_id,
                scope,
            },
            AuthMode::Entra | AuthMode::ApiKey => TokenSpec::Entra {
                tenant,
                client_id,
                secret: ClientSecret::Value(Secret::new(self.secret)),
                scope,
            },
        }
    }
}

fn token_fields<'a>(
    router: &'a HeaderCredentials,
    mode: AuthMode,
    host: &str,
    h: Headers<'a>,
    cfg: &'a PortkeyConfig,
) -> Result<TokenFields<'a>, RouteError> {
    let required = |name: &'static str, v: Option<&'a str>| {
        v.ok_or(RouteError::MissingAuthField {
            header: name,
            mode: mode.as_str(),
        })
    };
    let ambient = matches!(
        mode,
        AuthMode::Managed | AuthMode::Workload | AuthMode::EntraFederated
    );
    if ambient && !router.ambient {
        return Err(RouteError::Unsupported {
            header: "x-portkey-azure-auth-mode",
            what: "this gateway does not let requests select its own identities (azure.ambient_identity_from_headers = false)",
        });
    }
    let scope =
        field(h, &ENTRA_SCOPE, cfg.azure_entra_scope.as_deref())?.unwrap_or(default_scope(host));
    let tenant = field(h, &ENTRA_TENANT, cfg.azure_entra_tenant_id.as_deref())?;
    let client = field(h, &ENTRA_CLIENT, cfg.azure_entra_client_id.as_deref())?;
    let w = &router.workload;
    let mut f = TokenFields {
        tenant: "",
        client: "",
        scope,
        secret: "",
        token_file: None,
    };
    match mode {
        AuthMode::ApiKey => {}
        AuthMode::Entra => {
            f.tenant = required(ENTRA_TENANT.as_str(), tenant)?;
            f.client = required(ENTRA_CLIENT.as_str(), client)?;
            f.secret = required(
                ENTRA_SECRET.as_str(),
                field(h, &ENTRA_SECRET, cfg.azure_entra_client_secret.as_deref())?,
            )?;
        }
        AuthMode::Managed => {
            f.client =
                field(h, &MANAGED_CLIENT, cfg.azure_managed_client_id.as_deref())?.unwrap_or("");
        }
        AuthMode::Workload => {
            f.tenant = required("AZURE_TENANT_ID", tenant.or(w.tenant.as_deref()))?;
            f.client = required(
                WORKLOAD_CLIENT.as_str(),
                field(h, &WORKLOAD_CLIENT, cfg.azure_workload_client_id.as_deref())?
                    .or(w.client_id.as_deref()),
            )?;
            f.token_file = Some(
                w.token_file
                    .as_deref()
                    .ok_or(RouteError::MissingAuthField {
                        header: "AZURE_FEDERATED_TOKEN_FILE",
                        mode: mode.as_str(),
                    })?,
            );
        }
        AuthMode::EntraFederated => {
            f.tenant = required(ENTRA_TENANT.as_str(), tenant)?;
            f.client = required(ENTRA_CLIENT.as_str(), client)?;
        }
    }
    Ok(f)
}
