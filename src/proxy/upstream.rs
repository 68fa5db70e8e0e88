//! The request as it leaves keyway: every inbound credential and `x-portkey-*` header removed,
//! `Host`, the provider's credential and the planned path set, everything else kept.

use http::header::{HOST, PROXY_AUTHORIZATION};
use http::{HeaderName, Uri};
use pingora::http::RequestHeader;
use pingora::{Error, ErrorType, Result};

use crate::cache::tokens::CachedToken;
use crate::routing::{
    anthropic_version, Plan, UpstreamAuth, ANTHROPIC_VERSION_HEADER, API_KEY, AUTHORIZATION,
    X_API_KEY,
};

/// Headers that carry a credential meant for keyway or for some other service.
const CREDENTIAL_HEADERS: [HeaderName; 7] = [
    AUTHORIZATION,
    PROXY_AUTHORIZATION,
    API_KEY,
    X_API_KEY,
    HeaderName::from_static("x-goog-api-key"),
    HeaderName::from_static("ocp-apim-subscription-key"),
    http::header::COOKIE,
];

/// Rewrites the request for `plan`. `also_strip` names the headers that carry a keyway
/// credential besides [`CREDENTIAL_HEADERS`] (configured JWT headers).
pub fn rewrite(
    req: &mut RequestHeader,
    plan: &Plan,
    token: Option<&CachedToken>,
    secret: Option<&http::HeaderValue>,
    also_strip: &[HeaderName],
) -> Result<()> {
    for name in CREDENTIAL_HEADERS.iter().chain(also_strip) {
        req.remove_header(name);
    }
    // Requests carry a handful of headers: rescanning beats allocating a list per request.
    while let Some(name) = req
        .headers
        .keys()
        .find(|n| n.as_str().starts_with("x-portkey-"))
        .cloned()
    {
        req.remove_header(&name);
    }
    req.insert_header(HOST, plan.host_header.clone())?;
    match (&plan.auth, token) {
        (Some(UpstreamAuth::Static(a)), _) => req.insert_header(a.name.clone(), a.value.clone())?,
        (Some(UpstreamAuth::Token(_)), Some(t)) => {
            req.insert_header(AUTHORIZATION, t.header.clone())?
        }
        (Some(UpstreamAuth::Secret(s)), _) => {
            if let Some(v) = secret {
                req.insert_header(s.name.clone(), v.clone())?
            }
        }
        _ => {}
    }
    if plan.add_anthropic_version && !req.headers.contains_key(ANTHROPIC_VERSION_HEADER) {
        req.insert_header(ANTHROPIC_VERSION_HEADER, anthropic_version())?;
    }
    if let Some(path) = &plan.path {
        let uri = Uri::try_from(path.as_str())
            .map_err(|e| Error::because(ErrorType::InternalError, "building upstream URI", e))?;
        req.set_uri(uri);
    }
    Ok(())
}
