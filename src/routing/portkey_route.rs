//! Routing by Portkey headers (`x-portkey-provider`, `x-portkey-config`, `x-portkey-azure-*`, …)
//! for `/v1/{op}` requests.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue};

use super::custom_host::name_is_forbidden;
use super::portkey::PortkeyConfig;
use super::provider::{
    AuthStyle, PathStyle, Provider, AZURE_AI_DEFAULT_API_VERSION, AZURE_OPENAI_DEFAULT_API_VERSION,
    BEDROCK_DEFAULT_REGION,
};
use super::url::{is_dns_label, BaseUrl};
use super::{
    auth_for, default_scope, push_query, Plan, RouteError, RouteId, Router, UpstreamAuth,
    AUTHORIZATION, X_API_KEY,
};
use crate::credentials::spec::{KeyParts, TokenSpec};
use crate::credentials::AuthMode;
use crate::secret::Secret;

const PROVIDER: &str = "x-portkey-provider";
const CONFIG: &str = "x-portkey-config";
const PORTKEY_API_KEY: &str = "x-portkey-api-key";
const VIRTUAL_KEY: &str = "x-portkey-virtual-key";
const CUSTOM_HOST: &str = "x-portkey-custom-host";
const REQUEST_TIMEOUT: &str = "x-portkey-request-timeout";
const AZURE_RESOURCE: &str = "x-portkey-azure-resource-name";
const AZURE_DEPLOYMENT: &str = "x-portkey-azure-deployment-id";
const AZURE_API_VERSION: &str = "x-portkey-azure-api-version";
const AZURE_AD_TOKEN: &str = "x-portkey-azure-ad-token";
const AZURE_AUTH_MODE: &str = "x-portkey-azure-auth-mode";
const AWS_REGION: &str = "x-portkey-aws-region";
const AWS_ACCESS_KEY_ID: &str = "x-portkey-aws-access-key-id";
const ENTRA_TENANT: &str = "x-portkey-azure-entra-tenant-id";
const ENTRA_CLIENT: &str = "x-portkey-azure-entra-client-id";
const ENTRA_SECRET: &str = "x-portkey-azure-entra-client-secret";
const ENTRA_SCOPE: &str = "x-portkey-azure-entra-scope";
const MANAGED_CLIENT: &str = "x-portkey-azure-managed-client-id";
const WORKLOAD_CLIENT: &str = "x-portkey-azure-workload-client-id";

/// Longest `x-portkey-request-timeout` accepted: one hour.
const MAX_REQUEST_TIMEOUT_MS: u64 = 3_600_000;

/// A header as text; a value that is not visible ASCII is a client error, not a panic.
fn header<'a>(h: &'a HeaderMap, name: &'static str) -> Result<Option<&'a str>, RouteError> {
    match h.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.trim()))
            .map_err(|_| bad(name, "is not valid ASCII text")),
    }
}

/// A field from its header, else from the config JSON.
fn field<'a>(
    h: &'a HeaderMap,
    name: &'static str,
    from_config: Option<&'a str>,
) -> Result<Option<&'a str>, RouteError> {
    Ok(header(h, name)?.or(from_config).filter(|v| !v.is_empty()))
}

pub(super) fn plan(
    router: &Router,
    op: &str,
    query: Option<&str>,
    h: &HeaderMap,
    caller: Option<&crate::auth::Caller>,
) -> Result<Plan, RouteError> {
    let mut cfg = match header(h, CONFIG)? {
        Some(raw) => PortkeyConfig::parse(raw)
            .map_err(|problem| RouteError::BadHeader {
                header: "x-portkey-config",
                problem,
            })?
            .first_target(),
        None => PortkeyConfig::default(),
    };
    let vk_id = field(h, VIRTUAL_KEY, cfg.virtual_key.as_deref())?
        .or(caller.and_then(|c| c.virtual_key.as_deref()))
        .map(str::to_owned);
    // Borrowed from the router: no per-request copy of the virtual key.
    let vk = match (&vk_id, caller) {
        (None, _) => None,
        (Some(_), None) => {
            return Err(RouteError::Unsupported {
                header: "x-portkey-virtual-key",
                what: "virtual keys need a gateway credential: set auth.mode = \"enforced\"",
            })
        }
        (Some(id), Some(c)) => Some(
            router
                .virtual_keys
                .virtual_key_for(c, id)
                .map_err(RouteError::Denied)?,
        ),
    };
    if let Some(v) = &vk {
        // The virtual key's Azure fields fill in what the request leaves open.
        cfg.resource_name = cfg.resource_name.take().or(v.resource_name.clone());
        cfg.deployment_id = cfg.deployment_id.take().or(v.deployment_id.clone());
        cfg.api_version = cfg.api_version.take().or(v.api_version.clone());
    }
    let provider = match &vk {
        Some(v) => v.provider,
        None => provider_of(h, &cfg)?,
    };
    if provider == Provider::Bedrock && header(h, AWS_ACCESS_KEY_ID)?.is_some() {
        return Err(RouteError::Unsupported {
            header: "x-portkey-aws-access-key-id",
            what: "SigV4 for Bedrock's native API is not supported yet; send a Bedrock API key",
        });
    }
    let pr = &router.providers[provider.index()];

    let custom = field(h, CUSTOM_HOST, cfg.custom_host.as_deref())?;
    let custom_base = custom.map(|raw| custom_base(router, raw)).transpose()?;
    let check_resolved_ips = custom_base.as_ref().is_some_and(|(_, check)| *check);
    let base = custom_base.as_ref().map_or(&pr.base, |(b, _)| b);

    let (host, host_header) = concrete_host(provider, base, pr, custom_base.is_some(), h, &cfg)?;
    let path = upstream_path(provider, base, pr, op, query, h, &cfg)?;
    let (auth, secret_ref) = match (&vk, caller) {
        (Some(v), _) => router.vk_auth(&v.id),
        // Enforced posture without a virtual key: the caller's headers hold a gateway
        // credential, never a provider key, so only the config's provider key can serve.
        (None, Some(_)) => configured_key_auth(provider, pr, op)?,
        (None, None) => upstream_auth(router, provider, pr, op, &host, h, &cfg)?,
    };
    let read_timeout = request_timeout(h, cfg.request_timeout)?;
    Ok(Plan {
        provider,
        route: RouteId::PORTKEY,
        tls: base.tls,
        host,
        port: base.port,
        host_header,
        path,
        add_anthropic_version: provider == Provider::Anthropic
            && match &auth {
                Some(UpstreamAuth::Static(a)) => a.name == X_API_KEY,
                Some(UpstreamAuth::Secret(s)) => s.name == X_API_KEY,
                _ => false,
            },
        auth,
        check_resolved_ips,
        read_timeout,
        virtual_key: vk.map(|v| v.id.clone()),
        secret_ref,
    })
}

/// The provider key from the config file: in the enforced posture the caller's own headers carry a
/// gateway credential, never a provider key.
fn configured_key_auth(
    provider: Provider,
    pr: &super::ProviderRuntime,
    op: &str,
) -> Result<(Option<UpstreamAuth>, Option<usize>), RouteError> {
    if provider.auth_style() == AuthStyle::None {
        return Ok((None, None));
    }
    let native = !op.starts_with("chat/completions");
    if let Some(m) = &pr.mapped_key {
        let auth = if native { &m.native } else { &m.compat };
        return Ok((Some(auth.clone()), Some(m.id)));
    }
    let key = pr
        .default_key
        .as_ref()
        .ok_or(RouteError::MissingKey(provider))?;
    auth_for(provider, key.expose(), native)
        .map(|a| (a.map(UpstreamAuth::Static), None))
        .map_err(|_| RouteError::MissingKey(provider))
}

fn provider_of(h: &HeaderMap, cfg: &PortkeyConfig) -> Result<Provider, RouteError> {
    let (slug, from) = match header(h, PROVIDER)?.filter(|s| !s.is_empty()) {
        Some(s) => (s, "x-portkey-provider"),
        None => match cfg.provider.as_deref() {
            Some(s) => (s, "x-portkey-config"),
            None => return Err(RouteError::MissingProvider),
        },
    };
    Provider::from_slug(slug).ok_or_else(|| RouteError::InvalidProvider {
        header: from,
        slug: slug.chars().take(64).collect(),
    })
}

/// Parses a caller's custom host; the bool says whether its resolved addresses need checking.
fn custom_base(router: &Router, raw: &str) -> Result<(BaseUrl, bool), RouteError> {
    let base = BaseUrl::parse(raw).map_err(RouteError::ForbiddenCustomHost)?;
    if base.has_placeholder() {
        return Err(RouteError::ForbiddenCustomHost(
            "must name a concrete host".into(),
        ));
    }
    if router.trusted.allows(&base.host, base.port) {
        return Ok((base, false));
    }
    if name_is_forbidden(&base.host) {
        return Err(RouteError::ForbiddenCustomHost(
            "loopback, private, link-local and metadata hosts are not allowed unless listed in TRUSTED_CUSTOM_HOSTS".into(),
        ));
    }
    Ok((base, true))
}

fn concrete_host(
    provider: Provider,
    base: &BaseUrl,
    pr: &super::ProviderRuntime,
    custom: bool,
    h: &HeaderMap,
    cfg: &PortkeyConfig,
) -> Result<(Arc<str>, HeaderValue), RouteError> {
    if !custom {
        if let Some(f) = &pr.fixed {
            return Ok((f.host.clone(), f.host_header.clone()));
        }
    }
    let resource = if provider.is_azure() && base.host.contains(super::url::RESOURCE) {
        let r = field(h, AZURE_RESOURCE, cfg.resource_name.as_deref())?.ok_or(
            RouteError::MissingField {
                header: "x-portkey-azure-resource-name",
                provider,
            },
        )?;
        if !is_dns_label(r) {
            return Err(bad(
                "x-portkey-azure-resource-name",
                "must be a DNS label (letters, digits, '-')",
            ));
        }
        Some(r)
    } else {
        None
    };
    let region = if provider == Provider::Bedrock {
        let r = field(h, AWS_REGION, cfg.aws_region.as_deref())?.unwrap_or(BEDROCK_DEFAULT_REGION);
        if !is_dns_label(r) {
            return Err(bad(
                "x-portkey-aws-region",
                "must be a region name such as us-east-1",
            ));
        }
        Some(r)
    } else {
        None
    };
    let host = base.host_with(resource, region);
    let host_header = HeaderValue::from_str(&base.host_header(&host)).map_err(|_| {
        bad(
            "x-portkey-custom-host",
            "has characters not allowed in a Host header",
        )
    })?;
    Ok((Arc::from(&*host), host_header))
}

fn bad(header: &'static str, problem: &str) -> RouteError {
    RouteError::BadHeader {
        header,
        problem: problem.into(),
    }
}

fn upstream_path(
    provider: Provider,
    base: &BaseUrl,
    pr: &super::ProviderRuntime,
    op: &str,
    query: Option<&str>,
    h: &HeaderMap,
    cfg: &PortkeyConfig,
) -> Result<Option<String>, RouteError> {
    let mut p = String::with_capacity(base.path.len() + op.len() + 96);
    p.push_str(&base.path);
    match provider.path_style() {
        PathStyle::Append if &*base.path == "/v1" => return Ok(None),
        PathStyle::Append => {
            p.push('/');
            p.push_str(op);
            push_query(&mut p, query, None);
        }
        PathStyle::AzureOpenAi => {
            let version = api_version(h, cfg, pr, AZURE_OPENAI_DEFAULT_API_VERSION)?;
            if version == "v1" || version == "preview" {
                p.push_str("/openai/v1/");
                p.push_str(op);
                if version == "preview" {
                    p.push_str("?api-version=preview");
                }
            } else {
                let deployment = field(h, AZURE_DEPLOYMENT, cfg.deployment_id.as_deref())?.ok_or(
                    RouteError::MissingField {
                        header: "x-portkey-azure-deployment-id",
                        provider,
                    },
                )?;
                if !deployment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                {
                    return Err(bad(
                        "x-portkey-azure-deployment-id",
                        "may hold only letters, digits, '-', '_' and '.'",
                    ));
                }
                p.push_str("/openai/deployments/");
                p.push_str(deployment);
                p.push('/');
                p.push_str(op);
                p.push_str("?api-version=");
                p.push_str(version);
            }
            push_query(&mut p, query, Some("api-version"));
        }
        PathStyle::AzureAi => {
            let version = api_version(h, cfg, pr, AZURE_AI_DEFAULT_API_VERSION)?;
            p.push_str("/models/");
            p.push_str(op);
            p.push_str("?api-version=");
            p.push_str(version);
            push_query(&mut p, query, Some("api-version"));
        }
    }
    Ok(Some(p))
}

fn api_version<'a>(
    h: &'a HeaderMap,
    cfg: &'a PortkeyConfig,
    pr: &'a super::ProviderRuntime,
    default: &'static str,
) -> Result<&'a str, RouteError> {
    let v = field(h, AZURE_API_VERSION, cfg.api_version.as_deref())?
        .or(pr.api_version.as_deref())
        .unwrap_or(default);
    if v.is_empty()
        || !v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(bad(
            "x-portkey-azure-api-version",
            "may hold only letters, digits, '-' and '.'",
        ));
    }
    Ok(v)
}

fn upstream_auth(
    router: &Router,
    provider: Provider,
    pr: &super::ProviderRuntime,
    op: &str,
    host: &str,
    h: &HeaderMap,
    cfg: &PortkeyConfig,
) -> Result<(Option<UpstreamAuth>, Option<usize>), RouteError> {
    let style = provider.auth_style();
    if style == AuthStyle::None {
        return Ok((None, None));
    }
    let native = !op.starts_with("chat/completions");
    if provider.is_azure() {
        if let Some(auth) = azure_auth(router, host, h, cfg)? {
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

/// Azure's auth modes other than a plain API key: a caller-supplied Entra token, or a token
/// keyway fetches and caches. `None` means "use an API key".
fn azure_auth(
    router: &Router,
    host: &str,
    h: &HeaderMap,
    cfg: &PortkeyConfig,
) -> Result<Option<UpstreamAuth>, RouteError> {
    if let Some(token) = field(h, AZURE_AD_TOKEN, cfg.azure_ad_token.as_deref())? {
        let token = strip_bearer(token).unwrap_or(token);
        let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| bad(AZURE_AD_TOKEN, "has characters not allowed in a header"))?;
        value.set_sensitive(true);
        return Ok(Some(UpstreamAuth::Static(super::AuthHeader {
            name: AUTHORIZATION,
            value,
        })));
    }
    let mode = match field(h, AZURE_AUTH_MODE, cfg.azure_auth_mode.as_deref())? {
        None => return Ok(None),
        Some(m) => AuthMode::parse(m).ok_or_else(|| {
            bad(
                AZURE_AUTH_MODE,
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
        .slot(&spec, None, || router.identity.source(&spec))
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
                secret: crate::credentials::spec::ClientSecret::Value(Secret::new(self.secret)),
                scope,
            },
        }
    }
}

fn token_fields<'a>(
    router: &'a Router,
    mode: AuthMode,
    host: &str,
    h: &'a HeaderMap,
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
    if ambient && !router.ambient_from_headers {
        return Err(RouteError::Unsupported {
            header: "x-portkey-azure-auth-mode",
            what: "this gateway does not let requests select its own identities (azure.ambient_identity_from_headers = false)",
        });
    }
    let scope =
        field(h, ENTRA_SCOPE, cfg.azure_entra_scope.as_deref())?.unwrap_or(default_scope(host));
    let tenant = field(h, ENTRA_TENANT, cfg.azure_entra_tenant_id.as_deref())?;
    let client = field(h, ENTRA_CLIENT, cfg.azure_entra_client_id.as_deref())?;
    let w = &router.identity_defaults;
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
            f.tenant = required(ENTRA_TENANT, tenant)?;
            f.client = required(ENTRA_CLIENT, client)?;
            f.secret = required(
                ENTRA_SECRET,
                field(h, ENTRA_SECRET, cfg.azure_entra_client_secret.as_deref())?,
            )?;
        }
        AuthMode::Managed => {
            f.client =
                field(h, MANAGED_CLIENT, cfg.azure_managed_client_id.as_deref())?.unwrap_or("");
        }
        AuthMode::Workload => {
            f.tenant = required("AZURE_TENANT_ID", tenant.or(w.tenant.as_deref()))?;
            f.client = required(
                WORKLOAD_CLIENT,
                field(h, WORKLOAD_CLIENT, cfg.azure_workload_client_id.as_deref())?
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
            f.tenant = required(ENTRA_TENANT, tenant)?;
            f.client = required(ENTRA_CLIENT, client)?;
        }
    }
    Ok(f)
}

/// The provider key a client sent: `x-portkey-api-key` wins over `Authorization: Bearer` (the
/// Portkey SDK sends a placeholder Bearer beside the real key), then the provider's own header.
fn client_key(h: &HeaderMap, style: AuthStyle) -> Result<Option<(&'static str, &str)>, RouteError> {
    if let Some(k) = header(h, PORTKEY_API_KEY)?.filter(|k| !k.is_empty()) {
        return Ok(Some(("x-portkey-api-key", k)));
    }
    if let Some(v) = header(h, "authorization")? {
        if let Some(k) = strip_bearer(v).filter(|k| !k.is_empty()) {
            return Ok(Some(("authorization", k)));
        }
    }
    let native = match style {
        AuthStyle::AzureApiKey => Some("api-key"),
        AuthStyle::Anthropic => Some("x-api-key"),
        _ => None,
    };
    if let Some(name) = native {
        if let Some(k) = header(h, name)?.filter(|k| !k.is_empty()) {
            return Ok(Some((name, k)));
        }
    }
    Ok(None)
}

fn strip_bearer(v: &str) -> Option<&str> {
    let (scheme, rest) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

fn request_timeout(
    h: &HeaderMap,
    from_config: Option<u64>,
) -> Result<Option<Duration>, RouteError> {
    let ms = match header(h, REQUEST_TIMEOUT)? {
        Some(raw) => Some(raw.parse::<u64>().map_err(|_| {
            bad(
                "x-portkey-request-timeout",
                "must be a whole number of milliseconds",
            )
        })?),
        None => from_config,
    };
    match ms {
        None => Ok(None),
        Some(0) => Err(bad("x-portkey-request-timeout", "must be greater than 0")),
        Some(ms) if ms > MAX_REQUEST_TIMEOUT_MS => Err(bad(
            "x-portkey-request-timeout",
            "must be at most 3600000 (one hour)",
        )),
        Some(ms) => Ok(Some(Duration::from_millis(ms))),
    }
}
