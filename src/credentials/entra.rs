//! Entra ID client-credentials exchange (`POST {authority}/{tenant}/oauth2/v2.0/token`), the one
//! request behind three modes: `entra` proves the client with a secret, `workload` and
//! `entraFederated` with a signed assertion (a Kubernetes or an AWS token). Also owns how an
//! OAuth error body becomes a `CredentialError::Rejected`.

use std::time::SystemTime;

use async_trait::async_trait;
use serde_json::Value;
use url::Url;

use super::client_secret::ClientSecret;
use super::http::{endpoint_name, parse_token, HttpReply};
use super::{AuthMode, CredentialError, CredentialSource, IdentityHttp, Token};
use crate::secret::Secret;

/// `client_assertion_type` for a JWT assertion (RFC 7523).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How the client proves who it is.
#[derive(Clone, Copy)]
pub enum ClientAuth<'a> {
    /// `client_secret=…`
    Secret(&'a Secret),
    /// `client_assertion=…&client_assertion_type=<JWT_BEARER>`
    Assertion(&'a str),
}

/// One client-credentials exchange. `authority` may end in `/` (as `AZURE_AUTHORITY_HOST`
/// does). 200 → the token; 400/401 → `Rejected` with the OAuth code and AADSTS code;
/// 429/5xx/network → `Unavailable`; anything else → `Malformed`.
pub async fn exchange(
    http: &IdentityHttp,
    mode: AuthMode,
    authority: &str,
    tenant: &str,
    client_id: &str,
    scope: &str,
    auth: ClientAuth<'_>,
) -> Result<Token, CredentialError> {
    let url = token_url(mode, authority, tenant)?;
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("client_id", client_id),
        ("scope", scope),
    ];
    match auth {
        ClientAuth::Secret(secret) => form.push(("client_secret", secret.expose())),
        ClientAuth::Assertion(jwt) => {
            form.push(("client_assertion", jwt));
            form.push(("client_assertion_type", JWT_BEARER));
        }
    }
    let reply = http.post_form(mode, &url, &form).await?;
    match reply.status {
        200 => parse_token(mode, &url, &reply.body, SystemTime::now()),
        400 | 401 => Err(rejected(mode, &reply)),
        429 | 500..=599 => Err(unavailable_status(mode, &url, reply.status)),
        s => Err(CredentialError::Malformed {
            mode,
            endpoint: endpoint_name(&url),
            detail: format!("HTTP {s}"),
        }),
    }
}

/// `{authority}/{tenant}/oauth2/v2.0/token`, with no `//` whatever the authority ends in.
pub fn token_url(mode: AuthMode, authority: &str, tenant: &str) -> Result<Url, CredentialError> {
    let setup = |why: &str| CredentialError::Setup {
        mode,
        message: format!(
            "authority {authority:?} {why}; give an https URL such as {}",
            super::DEFAULT_AUTHORITY
        ),
    };
    if tenant.is_empty() {
        return Err(CredentialError::Setup {
            mode,
            message: "no tenant id; set AZURE_TENANT_ID or the credential's tenant_id".into(),
        });
    }
    let mut url = Url::parse(authority.trim_end_matches('/')).map_err(|_| setup("is not a URL"))?;
    url.set_query(None);
    url.path_segments_mut()
        .map_err(|_| setup("cannot take a path"))?
        .pop_if_empty()
        .extend([tenant, "oauth2", "v2.0", "token"]);
    Ok(url)
}

/// A 4xx with an OAuth error body (`error`, `error_description`). Only the codes are kept:
/// descriptions may echo request details.
pub(crate) fn rejected(mode: AuthMode, reply: &HttpReply) -> CredentialError {
    let v: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    let code = match v.get("error") {
        Some(Value::String(s)) => Some(s.as_str()),
        Some(obj) => obj.get("code").and_then(Value::as_str),
        None => None,
    };
    let description = v.get("error_description").and_then(Value::as_str);
    CredentialError::Rejected {
        mode,
        status: reply.status,
        code: code
            .filter(|c| is_code(c))
            .unwrap_or("unknown_error")
            .to_owned(),
        aadsts: description.and_then(aadsts_code),
    }
}

pub(crate) fn unavailable_status(mode: AuthMode, url: &Url, status: u16) -> CredentialError {
    let reason = match status {
        429 => "throttled (HTTP 429)".to_owned(),
        s => format!("HTTP {s}"),
    };
    CredentialError::Unavailable {
        mode,
        endpoint: endpoint_name(url),
        reason,
    }
}

/// An error code is short and plain; anything else is not repeated in a message.
fn is_code(c: &str) -> bool {
    !c.is_empty()
        && c.len() <= 64
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
}

/// The first `AADSTSnnnnn` in an Entra error description.
pub fn aadsts_code(description: &str) -> Option<String> {
    let start = description.find("AADSTS")?;
    let digits: String = description[start + 6..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    (!digits.is_empty()).then(|| format!("AADSTS{digits}"))
}

/// `entra` mode: a service principal with a client secret.
#[derive(Debug, Clone)]
pub struct EntraSecret {
    pub http: IdentityHttp,
    /// Default [`super::DEFAULT_AUTHORITY`]; sovereign clouds differ.
    pub authority: String,
    pub tenant: String,
    pub client_id: String,
    pub secret: ClientSecret,
    /// Default [`super::COGNITIVE_SCOPE`].
    pub scope: String,
}

impl EntraSecret {
    /// A mapped secret is read from its cache first. When Entra refuses it, the secret was
    /// probably rotated: the cache is told, the secret is fetched afresh (once, however many
    /// token fetches hit the refusal together) and, if it changed, the exchange is tried once
    /// more, so a rotation costs no failed request.
    pub async fn get_token(&self) -> Result<Token, CredentialError> {
        let lookup = match &self.secret {
            ClientSecret::Value(v) => return self.exchange_with(v).await,
            ClientSecret::Lookup(l) => l,
        };
        let secret = lookup.current().await?;
        let result = self.exchange_with(&secret).await;
        if !matches!(result, Err(CredentialError::Rejected { .. })) {
            return result;
        }
        lookup.refused(&secret);
        match lookup.current().await {
            Ok(fresh) if fresh != secret => {
                log::info!(
                    "entra: the identity provider refused the mapped client secret; retrying with the value fetched afresh"
                );
                let retried = self.exchange_with(&fresh).await;
                if matches!(retried, Err(CredentialError::Rejected { .. })) {
                    lookup.refused(&fresh);
                }
                retried
            }
            // Unchanged (not rotated) or not to be had: the refusal stands.
            _ => result,
        }
    }

    async fn exchange_with(&self, secret: &Secret) -> Result<Token, CredentialError> {
        exchange(
            &self.http,
            AuthMode::Entra,
            &self.authority,
            &self.tenant,
            &self.client_id,
            &self.scope,
            ClientAuth::Secret(secret),
        )
        .await
    }
}

#[async_trait]
impl CredentialSource for EntraSecret {
    fn mode(&self) -> AuthMode {
        AuthMode::Entra
    }

    async fn fetch(&self) -> Result<Token, CredentialError> {
        self.get_token().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_url_never_doubles_slashes() {
        for authority in [
            "https://login.microsoftonline.com",
            "https://login.microsoftonline.com/",
        ] {
            let u = token_url(AuthMode::Entra, authority, "tid").unwrap();
            assert_eq!(
                u.as_str(),
                "https://login.microsoftonline.com/tid/oauth2/v2.0/token"
            );
        }
        let u = token_url(AuthMode::Entra, "https://adfs.example/adfs/", "t").unwrap();
        assert_eq!(u.as_str(), "https://adfs.example/adfs/t/oauth2/v2.0/token");
    }

    #[test]
    fn bad_authority_or_tenant_is_setup() {
        for (a, t) in [
            ("not a url", "t"),
            ("https://login.microsoftonline.com", ""),
        ] {
            let e = token_url(AuthMode::Workload, a, t).unwrap_err();
            assert!(matches!(e, CredentialError::Setup { .. }), "{e}");
        }
    }

    #[test]
    fn aadsts_code_is_found_anywhere() {
        assert_eq!(
            aadsts_code("AADSTS7000215: Invalid client secret provided.").as_deref(),
            Some("AADSTS7000215")
        );
        assert_eq!(
            aadsts_code("x AADSTS90002: Tenant").as_deref(),
            Some("AADSTS90002")
        );
        assert_eq!(aadsts_code("AADSTS: none"), None);
        assert_eq!(aadsts_code("plain"), None);
    }

    #[test]
    fn rejected_keeps_codes_only() {
        let reply = HttpReply {
            status: 401,
            body: r#"{"error":"invalid_client","error_description":"AADSTS7000215: secret sk-x"}"#
                .into(),
        };
        let e = rejected(AuthMode::Entra, &reply);
        assert_eq!(
            e.to_string(),
            "entra: identity provider rejected the request (HTTP 401, invalid_client) AADSTS7000215"
        );
        let reply = HttpReply {
            status: 400,
            body: r#"{"error":"sk secret with spaces"}"#.into(),
        };
        assert!(!rejected(AuthMode::Entra, &reply)
            .to_string()
            .contains("secret"));
    }
}
