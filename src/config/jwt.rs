//! The `[[auth.jwt]]` file schema (APIM `validate-jwt` / `validate-azure-ad-token` knobs, WIRE.md
//! §5) and its validation into the runtime [`JwtSettings`]. Errors name `auth.jwt[i].<field>` and
//! the fix.

use std::time::Duration;

use url::Url;

use super::schema::auth::{JwkSection, JwtSection, RequiredClaimSection};
use crate::auth::jwks::{
    parse_jwk, Jwk, JwksSource, AZURE_V1_ISSUER_HOST, DEFAULT_MIN_REFETCH_INTERVAL,
};
use crate::auth::jwt::{ClaimMatch, JwtSettings, RequiredClaim};

/// Default message of a refused token, as APIM's.
pub const DEFAULT_FAILED_MESSAGE: &str = "JWT not present or invalid.";
/// APIM's default clock skew: tolerates ordinary drift between the IdP's and our clocks.
const DEFAULT_CLOCK_SKEW: u64 = 300;
const MAX_CLOCK_SKEW: u64 = 3600;
const DEFAULT_REFRESH: u64 = 300;
const MAX_REFRESH: u64 = 86_400;

/// Validates one entry. `path` is its location (`auth.jwt[0]`); `authority_host` is the Entra
/// authority (`[azure] authority_host` / `AZURE_AUTHORITY_HOST` / the public default) used for
/// the tenant's v2 issuer and default discovery URL.
pub fn validate(
    section: JwtSection,
    path: &str,
    authority_host: &str,
) -> Result<JwtSettings, String> {
    let err = |field: &str, msg: String| format!("{path}.{field}: {msg}");
    let authority = authority_host.trim_end_matches('/');
    let (header, scheme) = header_and_scheme(&section, path)?;
    let tenant = match section.tenant_id.as_deref() {
        None => None,
        Some(t) if is_tenant(t) => Some(t),
        Some(t) => {
            return Err(err(
                "tenant_id",
                format!("'{t}' is not a tenant id or domain (letters, digits, '.', '-')"),
            ))
        }
    };
    let source = key_source(&section, path, authority, tenant)?;
    let mut issuers = non_empty_list(&section.issuers, "issuers", path)?;
    // A tenant GUID gives its issuers at once; a domain only through discovery (below), since
    // Entra writes the GUID, never the domain, into `iss`.
    if let Some(t) = tenant.filter(|t| is_guid(t)) {
        for iss in [
            format!("{AZURE_V1_ISSUER_HOST}/{t}/"),
            format!("{authority}/{t}/v2.0"),
        ] {
            if !issuers.contains(&iss) {
                issuers.push(iss);
            }
        }
    }
    if issuers.is_empty() && tenant.is_none() {
        return Err(format!(
            "{path}: set issuers or tenant_id: without them a token signed by any key of the set \
             is accepted, including other tenants' tokens from a shared key set such as Entra's"
        ));
    }
    let audiences = non_empty_list(&section.audiences, "audiences", path)?;
    if audiences.is_empty() {
        return Err(err(
            "audiences",
            "list at least one accepted `aud`: without it a token issued for any other API of \
             the issuer is accepted"
                .into(),
        ));
    }
    let skew = section.clock_skew_seconds.unwrap_or(DEFAULT_CLOCK_SKEW);
    if skew > MAX_CLOCK_SKEW {
        return Err(err(
            "clock_skew_seconds",
            format!("{skew} is above {MAX_CLOCK_SKEW}"),
        ));
    }
    let status = section.failed_validation_httpcode.unwrap_or(401);
    if !(400..=599).contains(&status) {
        return Err(err(
            "failed_validation_httpcode",
            format!("{status} is not an HTTP error status (400-599)"),
        ));
    }
    let refresh = section.refresh_interval_seconds.unwrap_or(DEFAULT_REFRESH);
    if !(1..=MAX_REFRESH).contains(&refresh) {
        return Err(err(
            "refresh_interval_seconds",
            format!("{refresh} is outside 1-{MAX_REFRESH}"),
        ));
    }
    // Entra's tokens carry the tenant GUID: with a domain (or a GUID) the tenant's discovery
    // document says which, at every JWKS refresh.
    let issuer_document = match tenant {
        Some(t) => Some(
            Url::parse(&format!(
                "{authority}/{t}/v2.0/.well-known/openid-configuration"
            ))
            .map_err(|e| err("tenant_id", format!("cannot build its discovery URL: {e}")))?,
        ),
        None => None,
    };
    Ok(JwtSettings {
        header,
        scheme,
        source,
        issuers,
        issuer_document,
        audiences,
        required_claims: required_claims(&section.required_claims, path)?,
        clock_skew: Duration::from_secs(skew),
        require_expiration_time: section.require_expiration_time.unwrap_or(true),
        failed_status: status,
        failed_message: section
            .failed_validation_error_message
            .unwrap_or_else(|| DEFAULT_FAILED_MESSAGE.to_owned()),
        client_application_ids: non_empty_list(
            &section.client_application_ids,
            "client_application_ids",
            path,
        )?,
        // Portkey's names by default; the validator falls back to `workspace_slug` / `scopes`.
        workspace_claim: claim_name(section.workspace_claim, "workspace_claim", path)?
            .or_else(|| Some("portkey_workspace".to_owned())),
        role_claim: claim_name(section.role_claim, "role_claim", path)?
            .or_else(|| Some("scope".to_owned())),
        refresh_interval: Duration::from_secs(refresh),
        min_refetch_interval: DEFAULT_MIN_REFETCH_INTERVAL,
    })
}

fn header_and_scheme(
    s: &JwtSection,
    path: &str,
) -> Result<(http::HeaderName, Option<String>), String> {
    let name = s.header.as_deref().unwrap_or("Authorization");
    let header = http::HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{path}.header: '{name}' is not a valid header name"))?;
    let scheme = match s.scheme.as_deref() {
        Some("") => None,
        Some(sc)
            if sc
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)) =>
        {
            Some(sc.to_owned())
        }
        Some(sc) => {
            return Err(format!(
                "{path}.scheme: '{sc}' is not an auth scheme (e.g. \"Bearer\", or \"\" for none)"
            ))
        }
        None if header == http::header::AUTHORIZATION => Some("Bearer".to_owned()),
        None => None,
    };
    Ok((header, scheme))
}

fn key_source(
    s: &JwtSection,
    path: &str,
    authority: &str,
    tenant: Option<&str>,
) -> Result<JwksSource, String> {
    let url = |field: &str, v: &str| -> Result<Url, String> {
        Url::parse(v)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| format!("{path}.{field}: '{v}' is not an http(s) URL"))
    };
    let given = [
        s.openid_config.is_some(),
        s.jwks_uri.is_some(),
        s.keys.is_some(),
    ];
    match given.iter().filter(|g| **g).count() {
        0 => match tenant {
            Some(t) => {
                let discovery = format!("{authority}/{t}/v2.0/.well-known/openid-configuration");
                Ok(JwksSource::OpenIdConfig(url("tenant_id", &discovery)?))
            }
            None => Err(format!(
                "{path}: set one of openid_config, jwks_uri or keys (or tenant_id for Entra)"
            )),
        },
        1 => {
            if let Some(u) = &s.openid_config {
                return Ok(JwksSource::OpenIdConfig(url("openid_config", u)?));
            }
            if let Some(u) = &s.jwks_uri {
                return Ok(JwksSource::JwksUri(url("jwks_uri", u)?));
            }
            inline_keys(s.keys.as_deref().unwrap_or_default(), path)
        }
        _ => Err(format!(
            "{path}: openid_config, jwks_uri and keys are alternatives: set only one"
        )),
    }
}

fn inline_keys(keys: &[JwkSection], path: &str) -> Result<JwksSource, String> {
    if keys.is_empty() {
        return Err(format!(
            "{path}.keys: is empty; list at least one public JWK"
        ));
    }
    let mut out = Vec::with_capacity(keys.len());
    let mut kids = std::collections::HashSet::new();
    for (j, k) in keys.iter().enumerate() {
        let jwk = Jwk {
            kty: k.kty.clone(),
            kid: k.kid.clone(),
            alg: k.alg.clone(),
            use_: k.use_.clone(),
            crv: k.crv.clone(),
            n: k.n.clone(),
            e: k.e.clone(),
            x: k.x.clone(),
            y: k.y.clone(),
        };
        let parsed = parse_jwk(&jwk).map_err(|e| format!("{path}.keys[{j}]: {e}"))?;
        if let Some(kid) = parsed.kid {
            if !kids.insert(kid.clone()) {
                return Err(format!("{path}.keys[{j}].kid: '{kid}' is listed twice"));
            }
        }
        out.push(jwk);
    }
    Ok(JwksSource::Inline(out))
}

fn required_claims(
    list: &[RequiredClaimSection],
    path: &str,
) -> Result<Vec<RequiredClaim>, String> {
    list.iter()
        .enumerate()
        .map(|(j, c)| {
            let at = format!("{path}.required_claims[{j}]");
            if c.name.trim().is_empty() {
                return Err(format!("{at}.name: is empty"));
            }
            let match_ = match c.match_.as_deref() {
                None | Some("all") => ClaimMatch::All,
                Some("any") => ClaimMatch::Any,
                Some(m) => return Err(format!("{at}.match: '{m}' is not \"all\" or \"any\"")),
            };
            if c.values.iter().any(|v| v.is_empty()) {
                return Err(format!("{at}.values: contains an empty value"));
            }
            Ok(RequiredClaim {
                name: c.name.clone(),
                match_,
                values: c.values.clone(),
            })
        })
        .collect()
}

fn non_empty_list(list: &[String], field: &str, path: &str) -> Result<Vec<String>, String> {
    if list.iter().any(|v| v.trim().is_empty()) {
        return Err(format!("{path}.{field}: contains an empty value"));
    }
    Ok(list.to_vec())
}

fn claim_name(v: Option<String>, field: &str, path: &str) -> Result<Option<String>, String> {
    match v {
        Some(c) if c.trim().is_empty() => Err(format!("{path}.{field}: is empty; omit it instead")),
        other => Ok(other),
    }
}

/// `8-4-4-4-12` hex digits.
fn is_guid(t: &str) -> bool {
    let groups: Vec<&str> = t.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn is_tenant(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 256
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

#[cfg(test)]
#[path = "jwt_tests.rs"]
mod tests;
