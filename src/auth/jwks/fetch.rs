//! Fetching what a provider publishes: its discovery document (`jwks_uri`, `issuer`) and its
//! key set, over HTTP with size and time bounds; and an Entra tenant's issuers.

use url::Url;

use super::{Discovery, JwksCache, JwksError, AZURE_V1_ISSUER_HOST, MAX_BODY};

impl JwksCache {
    pub(super) async fn discovery(&self, url: &Url) -> Result<Discovery, JwksError> {
        let body = self.get_body(url).await?;
        serde_json::from_slice(&body).map_err(|e| JwksError::Parse {
            url: url.to_string(),
            what: "OpenID configuration",
            detail: e.to_string(),
        })
    }

    pub(super) async fn get_body(&self, url: &Url) -> Result<Vec<u8>, JwksError> {
        let http_err = |e: reqwest::Error| JwksError::Http {
            url: url.to_string(),
            detail: e.without_url().to_string(),
        };
        let mut resp = self
            .client
            .get(url.clone())
            .header("accept", "application/json")
            .send()
            .await
            .map_err(http_err)?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(JwksError::Status {
                url: url.to_string(),
                status,
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(http_err)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(JwksError::Parse {
                    url: url.to_string(),
                    what: "key document",
                    detail: format!("larger than {MAX_BODY} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

pub(super) fn jwks_uri(doc_url: &Url, doc: &Discovery) -> Result<Url, JwksError> {
    let parse_err = |detail: String| JwksError::Parse {
        url: doc_url.to_string(),
        what: "OpenID configuration",
        detail,
    };
    let raw = doc
        .jwks_uri
        .as_deref()
        .ok_or_else(|| parse_err("no jwks_uri".into()))?;
    let jwks = Url::parse(raw).map_err(|e| parse_err(format!("jwks_uri: {e}")))?;
    if !matches!(jwks.scheme(), "http" | "https") {
        return Err(parse_err("jwks_uri is not an http(s) URL".into()));
    }
    Ok(jwks)
}

/// The issuers of an Entra tenant from its v2 discovery document: the document's `issuer`
/// (`{authority}/{tenant GUID}/v2.0`) and the same tenant's v1 issuer
/// (`https://sts.windows.net/{tenant GUID}/`), so a tenant named by its domain accepts the
/// tokens Entra issues, which always carry the GUID.
pub(super) fn tenant_issuers(doc_url: &Url, doc: &Discovery) -> Result<Vec<String>, JwksError> {
    let issuer = doc
        .issuer
        .as_deref()
        .filter(|i| Url::parse(i).is_ok())
        .ok_or_else(|| JwksError::Parse {
            url: doc_url.to_string(),
            what: "OpenID configuration",
            detail: "no issuer URL".into(),
        })?;
    let mut out = vec![issuer.to_owned()];
    let tenant = issuer
        .trim_end_matches('/')
        .strip_suffix("/v2.0")
        .and_then(|rest| rest.rsplit('/').next())
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if let Some(t) = tenant {
        out.push(format!("{AZURE_V1_ISSUER_HOST}/{t}/"));
    }
    Ok(out)
}
