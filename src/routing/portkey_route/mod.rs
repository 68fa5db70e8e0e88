//! Routing by Portkey headers (`x-portkey-provider`, `x-portkey-config`, `x-portkey-azure-*`, …)
//! for `/v1/{op}` requests.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;

mod azure;
mod headers;
mod keys;
mod target;

use super::custom_host::name_is_forbidden;
use super::portkey::CustomHost;
use super::portkey::{parse_config, PortkeyConfig};
use super::strategy::{ParseOptions, RetryPolicy, Tree, RETRY_STATUS_DEFAULT};
use super::url::BaseUrl;
use super::{Access, FixedHost, Plan, RouteError, Router, UpstreamAuth, X_API_KEY};
use crate::vocab::{Provider, RouteId};
use keys::{configured_key_auth, upstream_auth};
use target::{concrete_host, upstream_path};

use headers::*;

/// Longest inline config kept parsed (longer ones are parsed per request).
const MAX_CACHED_CONFIG: usize = 16 * 1024;
/// Portkey's largest retry count.
const MAX_RETRY_COUNT: u32 = 5;
/// Longest `x-portkey-request-timeout` accepted: one hour.
const MAX_REQUEST_TIMEOUT_MS: u64 = 3_600_000;

/// What a `/v1/{op}` request asks for, read from its Portkey headers once.
#[derive(Debug)]
pub struct PortkeyRequest<'r> {
    op: &'r str,
    query: Option<&'r str>,
    /// The `x-portkey-config` tree (or one leaf carrying `x-portkey-retry-count`); `None`: the
    /// headers alone route.
    pub(in crate::routing) tree: Option<Arc<Tree<PortkeyConfig>>>,
    /// The workspace of the stored config the header named, if it is a workspace's.
    config_workspace: Option<Arc<str>>,
    /// The `x-portkey-*` headers present ([`Headers`]), found once by `parse`.
    present: u32,
}

/// A request as routing read it, before auth decides on its virtual keys.
#[derive(Debug)]
pub enum Parsed<'r> {
    /// Configured route number `i`.
    FrontDoor(usize),
    Portkey(PortkeyRequest<'r>),
}

/// The empty target a request routed by headers alone plans from.
static NO_CONFIG: std::sync::LazyLock<PortkeyConfig> =
    std::sync::LazyLock::new(PortkeyConfig::default);

impl<'r> Parsed<'r> {
    /// The request carries an `x-portkey-config` (Portkey then marks the answer with the
    /// target that served it).
    pub fn has_config(&self) -> bool {
        matches!(self, Parsed::Portkey(p) if p.tree.is_some())
    }

    /// The virtual key target `leaf` names (its config's `virtual_key`, else
    /// `x-portkey-virtual-key`), for auth to check; front-door routes name none.
    pub fn virtual_key<'a>(
        &'a self,
        leaf: usize,
        h: &'a HeaderMap,
    ) -> Result<Option<&'a str>, RouteError> {
        match self {
            Parsed::FrontDoor(_) => Ok(None),
            Parsed::Portkey(p) => field(
                p.headers(h),
                &VIRTUAL_KEY,
                p.target(leaf).virtual_key.as_deref(),
            ),
        }
    }
}

impl PortkeyRequest<'_> {
    /// `h` (the headers `parse` read) with what `parse` found in them.
    fn headers<'h>(&self, h: &'h HeaderMap) -> Headers<'h> {
        Headers {
            map: h,
            present: self.present,
        }
    }

    fn target(&self, leaf: usize) -> &PortkeyConfig {
        match &self.tree {
            Some(t) => &t.leaves()[leaf].target,
            None => &NO_CONFIG,
        }
    }

    /// The targets a plan is made for: one per leaf of the tree.
    pub(in crate::routing) fn leaf_count(&self) -> usize {
        self.tree.as_ref().map_or(1, |t| t.leaves().len())
    }
}

pub(super) fn parse<'r>(
    router: &Router,
    op: &'r str,
    query: Option<&'r str>,
    h: &HeaderMap,
) -> Result<Parsed<'r>, RouteError> {
    let h = Headers::scan(h);
    let present = h.present;
    let mut config_workspace = None;
    let timeout = request_timeout(h)?;
    let retry = retry_count(h)?;
    let tree = match header(h, &CONFIG)? {
        // A slug, not JSON: a stored config (Portkey's `pc-…` ids are slugs too).
        Some(raw)
            if !raw.is_empty()
                && raw
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            let stored = router.configs.get(raw).ok_or(RouteError::BadHeader {
                header: "x-portkey-config",
                problem: "names no stored config (send a config's slug or its JSON)".into(),
            })?;
            config_workspace = stored.workspace.clone();
            Some(stored.tree.clone())
        }
        // Clients send the same config on every request: it is parsed once per runtime (the
        // per-request headers that change the tree bypass the cache).
        Some(raw) if retry.is_none() && timeout.is_none() => {
            if let Some(tree) = router.inline.get(raw) {
                return Ok(portkey(op, query, Some(tree), None, present));
            }
            let tree = Arc::new(inline(raw, None, None)?);
            if raw.len() <= MAX_CACHED_CONFIG {
                router.inline.insert(raw.to_owned(), tree.clone());
            }
            Some(tree)
        }
        Some(raw) => Some(Arc::new(inline(raw, retry, timeout)?)),
        None if retry.is_some() || timeout.is_some() => Some(Arc::new(Tree::single(
            PortkeyConfig::default(),
            "config",
            retry.unwrap_or_default(),
            timeout,
        ))),
        None => None,
    };
    Ok(portkey(op, query, tree, config_workspace, present))
}

fn portkey<'r>(
    op: &'r str,
    query: Option<&'r str>,
    tree: Option<Arc<Tree<PortkeyConfig>>>,
    config_workspace: Option<Arc<str>>,
    present: u32,
) -> Parsed<'r> {
    Parsed::Portkey(PortkeyRequest {
        op,
        query,
        tree,
        config_workspace,
        present,
    })
}

/// An inline `x-portkey-config`, parsed.
fn inline(
    raw: &str,
    retry: Option<RetryPolicy>,
    timeout: Option<Duration>,
) -> Result<Tree<PortkeyConfig>, RouteError> {
    let opts = ParseOptions {
        root_path: "config",
        default_retry: retry,
        default_timeout: timeout,
    };
    parse_config(raw, &opts).map_err(|problem| RouteError::BadHeader {
        header: "x-portkey-config",
        problem,
    })
}

/// The provider target `leaf` goes to: its virtual key's, else the one it names.
pub(super) fn provider(
    router: &Router,
    req: &PortkeyRequest<'_>,
    leaf: usize,
    h: &HeaderMap,
    virtual_key: Option<&str>,
) -> Result<Provider, RouteError> {
    match virtual_key {
        Some(id) => router
            .virtual_keys
            .get(id)
            .map(|v| v.provider)
            .ok_or(RouteError::Internal(
                "an authorized virtual key has no route",
            )),
        None => provider_of(req.headers(h), req.target(leaf)),
    }
}

/// Plans target `leaf` of a parsed request for a caller with `access`.
pub(super) fn plan(
    router: &Router,
    req: &PortkeyRequest<'_>,
    leaf: usize,
    h: &HeaderMap,
    access: Access<'_>,
) -> Result<Plan, RouteError> {
    let h = req.headers(h);
    let op = req.op;
    let query = req.query;
    if let Some(w) = &req.config_workspace {
        if access.workspace != Some(&**w) {
            return Err(RouteError::ConfigForbidden);
        }
    }
    let own = req.target(leaf);
    let vk = match access.virtual_key {
        None => None,
        Some(id) => Some((
            id,
            router.virtual_keys.get(id).ok_or(RouteError::Internal(
                "an authorized virtual key has no route",
            ))?,
        )),
    };
    // The virtual key's Azure fields fill in what the target leaves open.
    let filled;
    let cfg = match &vk {
        Some((_, v))
            if (own.resource_name.is_none() && v.resource_name.is_some())
                || (own.deployment_id.is_none() && v.deployment_id.is_some())
                || (own.api_version.is_none() && v.api_version.is_some()) =>
        {
            let mut c = own.clone();
            c.resource_name = c.resource_name.take().or(v.resource_name.clone());
            c.deployment_id = c.deployment_id.take().or(v.deployment_id.clone());
            c.api_version = c.api_version.take().or(v.api_version.clone());
            filled = c;
            &filled
        }
        _ => own,
    };
    let provider = match &vk {
        Some((_, v)) => v.provider,
        None => provider_of(h, cfg)?,
    };
    if provider == Provider::Bedrock && header(h, &AWS_ACCESS_KEY_ID)?.is_some() {
        return Err(RouteError::Unsupported {
            header: "x-portkey-aws-access-key-id",
            what: "SigV4 for Bedrock's native API is not supported yet; send a Bedrock API key",
        });
    }
    let pr = &router.providers[provider.index()];

    // A config's custom host is parsed once for the runtime; a header's, per request.
    let custom = match cfg.custom_host.as_deref().filter(|v| !v.is_empty()) {
        Some(raw) => Some(
            cfg.parsed_custom_host
                .get_or_init(|| custom_host(router, raw).map(Arc::new))
                .clone()?,
        ),
        None => header(h, &CUSTOM_HOST)?
            .filter(|v| !v.is_empty())
            .map(|raw| custom_host(router, raw).map(Arc::new))
            .transpose()?,
    };
    let check_resolved_ips = custom.as_ref().is_some_and(|c| c.check);
    let base = custom.as_ref().map_or(&pr.base, |c| &c.base);

    let (host, host_header) = match &custom {
        Some(c) => (c.fixed.host.clone(), c.fixed.host_header.clone()),
        None => concrete_host(provider, base, pr, false, h, cfg)?,
    };
    let path = upstream_path(provider, base, pr, op, query, h, cfg)?;
    let (auth, secret) = match (&vk, access.enforced) {
        (Some((_, v)), _) => (v.auth.clone(), v.secret.clone()),
        // Enforced posture without a virtual key: the caller's headers hold a gateway
        // credential, never a provider key, so only the config's provider key can serve.
        (None, true) => configured_key_auth(provider, pr, op)?,
        (None, false) => upstream_auth(router, provider, pr, op, &host, h, cfg)?,
    };
    // The target's own timeout, else the header's (which a stored config was parsed without).
    let read_timeout = match &req.tree {
        Some(t) => t.leaves()[leaf].timeout,
        None => None,
    }
    .or(request_timeout(h)?);
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
        virtual_key: vk.map(|(id, _)| Arc::from(id)),
        secret,
    })
}

fn provider_of(h: Headers<'_>, cfg: &PortkeyConfig) -> Result<Provider, RouteError> {
    let (slug, from) = match header(h, &PROVIDER)?.filter(|s| !s.is_empty()) {
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

/// Parses a caller's custom host.
fn custom_host(router: &Router, raw: &str) -> Result<CustomHost, RouteError> {
    let base = BaseUrl::parse(raw).map_err(RouteError::ForbiddenCustomHost)?;
    if base.has_placeholder() {
        return Err(RouteError::ForbiddenCustomHost(
            "must name a concrete host".into(),
        ));
    }
    let fixed = FixedHost::of(&base).ok_or_else(|| {
        RouteError::ForbiddenCustomHost("has characters not allowed in a Host header".into())
    })?;
    if router.trusted.allows(&base.host, base.port) {
        return Ok(CustomHost {
            base,
            check: false,
            fixed,
        });
    }
    if name_is_forbidden(&base.host) {
        return Err(RouteError::ForbiddenCustomHost(
            "loopback, private, link-local and metadata hosts are not allowed unless listed in TRUSTED_CUSTOM_HOSTS".into(),
        ));
    }
    Ok(CustomHost {
        base,
        check: true,
        fixed,
    })
}

pub(super) fn bad(header: &'static str, problem: &str) -> RouteError {
    RouteError::BadHeader {
        header,
        problem: problem.into(),
    }
}

/// `x-portkey-request-timeout`: milliseconds per attempt.
fn request_timeout(h: Headers<'_>) -> Result<Option<Duration>, RouteError> {
    let Some(raw) = header(h, &REQUEST_TIMEOUT)? else {
        return Ok(None);
    };
    match raw.parse::<u64>() {
        Err(_) => Err(bad(
            "x-portkey-request-timeout",
            "must be a whole number of milliseconds",
        )),
        Ok(0) => Err(bad("x-portkey-request-timeout", "must be greater than 0")),
        Ok(ms) if ms > MAX_REQUEST_TIMEOUT_MS => Err(bad(
            "x-portkey-request-timeout",
            "must be at most 3600000 (one hour)",
        )),
        Ok(ms) => Ok(Some(Duration::from_millis(ms))),
    }
}

/// `x-portkey-retry-count`: the retry every target without one of its own gets.
fn retry_count(h: Headers<'_>) -> Result<Option<RetryPolicy>, RouteError> {
    let Some(raw) = header(h, &RETRY_COUNT)? else {
        return Ok(None);
    };
    match raw.parse::<u32>() {
        Ok(n) if n <= MAX_RETRY_COUNT => Ok(Some(RetryPolicy {
            attempts: n,
            on_status_codes: RETRY_STATUS_DEFAULT.to_vec(),
            use_retry_after: false,
        })),
        _ => Err(bad(
            "x-portkey-retry-count",
            "must be a whole number from 0 to 5",
        )),
    }
}
