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

/// Whether `name` is removed before the request leaves: a credential or a Portkey header.
fn stripped(name: &HeaderName, also_strip: &[HeaderName]) -> bool {
    name.as_str().starts_with("x-portkey-")
        || CREDENTIAL_HEADERS.contains(name)
        || also_strip.contains(name)
}

/// Removes every stripped header. One pass over the request's names finds them (usually one
/// or two of a handful), so absent names cost no lookups in Pingora's two header maps.
fn strip(req: &mut RequestHeader, also_strip: &[HeaderName]) {
    loop {
        let mut found: [Option<HeaderName>; 8] = Default::default();
        let mut n = 0;
        for name in req.headers.keys().filter(|n| stripped(n, also_strip)) {
            found[n] = Some(name.clone());
            n += 1;
            if n == found.len() {
                break;
            }
        }
        for name in found.iter().flatten() {
            req.remove_header(name);
        }
        if n < found.len() {
            return;
        }
    }
}

/// Rewrites the request for `plan`. `also_strip` names the headers that carry a keyway
/// credential besides [`CREDENTIAL_HEADERS`] (configured JWT headers).
pub fn rewrite(
    req: &mut RequestHeader,
    plan: &Plan,
    token: Option<&CachedToken>,
    secret: Option<&http::HeaderValue>,
    also_strip: &[HeaderName],
) -> Result<()> {
    strip(req, also_strip);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(req: &RequestHeader) -> String {
        let mut buf = Vec::new();
        req.header_to_h1_wire(&mut buf);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn strip_removes_credentials_and_portkey_headers_only() {
        let mut req = RequestHeader::build("POST", b"/v1/chat/completions", None).unwrap();
        req.append_header("Content-Type", "application/json")
            .unwrap();
        req.append_header("Authorization", "Bearer kw-key").unwrap();
        req.append_header("Cookie", "a=b").unwrap();
        req.append_header("X-My-Token", "jwt").unwrap();
        // More than one batch of names to remove, and one name with two values.
        for i in 0..11 {
            req.append_header(format!("X-Portkey-Extra-{i}"), "v")
                .unwrap();
        }
        req.append_header("x-portkey-provider", "openai").unwrap();
        req.append_header("X-Portkey-Provider", "again").unwrap();
        req.append_header("Accept", "text/event-stream").unwrap();
        strip(&mut req, &[HeaderName::from_static("x-my-token")]);
        let names: Vec<&str> = req.headers.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["content-type", "accept"]);
        // Pingora's case map follows: the wire form has exactly the kept headers, cased as sent.
        assert_eq!(
            wire(&req),
            "Content-Type: application/json\r\nAccept: text/event-stream\r\n"
        );
    }
}
