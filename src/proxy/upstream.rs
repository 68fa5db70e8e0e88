//! The request as it leaves keyway: every inbound credential and `x-portkey-*` header removed,
//! `Host`, the provider's credential and the planned path set, everything else kept.

use bytes::Bytes;
use http::header::{HOST, PROXY_AUTHORIZATION};
use http::{HeaderName, HeaderValue, Uri};
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

/// Removes every stripped header but `kept` (which the caller then sets, replacing every value
/// the client sent under it). One pass over the request's names finds them (usually one or
/// two of a handful), so absent names cost no lookups in Pingora's two header maps.
fn strip(req: &mut RequestHeader, also_strip: &[HeaderName], kept: Option<&HeaderName>) {
    loop {
        let mut found: [Option<HeaderName>; 8] = Default::default();
        let mut n = 0;
        let names = req.headers.keys();
        for name in names.filter(|&n| Some(n) != kept && stripped(n, also_strip)) {
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

/// The name Pingora's case map keeps for a credential header, as it would write it. For these
/// names Pingora copies the name into a new buffer on every insert (it titles only a few
/// standard names, and sends the rest in lower case); a static one costs nothing.
fn case_name(name: &HeaderName) -> Option<Bytes> {
    const NAMES: [&str; 3] = ["authorization", "api-key", "x-api-key"];
    NAMES
        .into_iter()
        .find(|&n| n == name.as_str())
        .map(|n| Bytes::from_static(n.as_bytes()))
}

/// Sets `name` to `value`, replacing what the request held under it.
fn set(req: &mut RequestHeader, name: &HeaderName, value: &HeaderValue) -> Result<()> {
    match case_name(name) {
        Some(case) => req.insert_header(case, value.clone()),
        None => req.insert_header(name.clone(), value.clone()),
    }
}

/// Rewrites the request for `plan`. `also_strip` names the headers that carry a keyway
/// credential besides [`CREDENTIAL_HEADERS`] (configured JWT headers).
pub fn rewrite(
    req: &mut RequestHeader,
    plan: &Plan,
    token: Option<&CachedToken>,
    secret: Option<&HeaderValue>,
    also_strip: &[HeaderName],
) -> Result<()> {
    let credential = match (&plan.auth, token) {
        (Some(UpstreamAuth::Static(a)), _) => Some((&a.name, &a.value)),
        (Some(UpstreamAuth::Token(_)), Some(t)) => Some((&AUTHORIZATION, &t.header)),
        (Some(UpstreamAuth::Secret(s)), _) => secret.map(|v| (&s.name, v)),
        _ => None,
    };
    strip(req, also_strip, credential.map(|(name, _)| name));
    req.insert_header(HOST, plan.host_header.clone())?;
    if let Some((name, value)) = credential {
        set(req, name, value)?;
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
        strip(&mut req, &[HeaderName::from_static("x-my-token")], None);
        let names: Vec<&str> = req.headers.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["content-type", "accept"]);
        // Pingora's case map follows: the wire form has exactly the kept headers, cased as sent.
        assert_eq!(
            wire(&req),
            "Content-Type: application/json\r\nAccept: text/event-stream\r\n"
        );
    }

    fn plan(auth: Option<UpstreamAuth>) -> Plan {
        Plan {
            provider: crate::vocab::Provider::OpenAi,
            route: crate::vocab::RouteId::PORTKEY,
            tls: true,
            host: "api.openai.com".into(),
            port: 443,
            host_header: HeaderValue::from_static("api.openai.com"),
            path: None,
            auth,
            add_anthropic_version: false,
            check_resolved_ips: false,
            read_timeout: None,
            virtual_key: None,
            secret: None,
        }
    }

    fn static_auth(name: HeaderName, value: &'static str) -> Option<UpstreamAuth> {
        Some(UpstreamAuth::Static(crate::routing::AuthHeader {
            name,
            value: HeaderValue::from_static(value),
        }))
    }

    #[test]
    fn the_credential_replaces_every_value_the_client_sent_under_its_name() {
        let mut req = RequestHeader::build("POST", b"/v1/chat/completions", None).unwrap();
        req.append_header("Host", "keyway.local").unwrap();
        req.append_header("Authorization", "Bearer kw-one").unwrap();
        req.append_header("x-portkey-provider", "openai").unwrap();
        req.append_header("authorization", "Bearer kw-two").unwrap();
        req.append_header("Api-Key", "client").unwrap();
        let plan = plan(static_auth(AUTHORIZATION, "Bearer sk-upstream"));
        rewrite(&mut req, &plan, None, None, &[]).unwrap();
        assert_eq!(
            wire(&req),
            "Host: api.openai.com\r\nauthorization: Bearer sk-upstream\r\n"
        );
        let values: Vec<_> = req.headers.get_all(AUTHORIZATION).iter().collect();
        assert_eq!(values, ["Bearer sk-upstream"]);
    }

    #[test]
    fn a_credential_the_client_did_not_send_is_added_in_lower_case() {
        for (name, wire_name) in [(API_KEY, "api-key"), (X_API_KEY, "x-api-key")] {
            let mut req = RequestHeader::build("POST", b"/v1/messages", None).unwrap();
            req.append_header("Authorization", "Bearer kw-gateway")
                .unwrap();
            let plan = plan(static_auth(name.clone(), "sk-upstream"));
            rewrite(&mut req, &plan, None, None, &[]).unwrap();
            assert_eq!(
                wire(&req),
                format!("Host: api.openai.com\r\n{wire_name}: sk-upstream\r\n")
            );
            assert_eq!(req.headers[&name], "sk-upstream");
            assert!(!req.headers.contains_key(AUTHORIZATION));
        }
    }

    #[test]
    fn without_a_credential_to_send_the_clients_is_still_removed() {
        let mut req = RequestHeader::build("POST", b"/v1/chat/completions", None).unwrap();
        req.append_header("Authorization", "Bearer kw-gateway")
            .unwrap();
        // A provider that takes no credential: nothing is sent, nothing of the client's kept.
        let plan = plan(None);
        rewrite(&mut req, &plan, None, None, &[]).unwrap();
        assert_eq!(wire(&req), "Host: api.openai.com\r\n");
    }
}
