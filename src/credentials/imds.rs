//! `managed` mode: tokens for the identity Azure attaches to the host. On a VM or VMSS that is
//! the Instance Metadata Service (`Imds`); on App Service and Container Apps it is the local
//! endpoint announced by `IDENTITY_ENDPOINT` / `IDENTITY_HEADER` (`AppService`). Both ask for a
//! *resource* (no `/.default`), which `resource_from_scope` derives from the Entra scope.

use std::time::SystemTime;

use async_trait::async_trait;
use url::Url;

use super::entra::{rejected, unavailable_status};
use super::http::{endpoint_name, parse_token, HttpReply};
use super::{AuthMode, CredentialError, CredentialSource, IdentityHttp, Token, DEFAULT_IMDS};
use crate::secret::Secret;

/// Path of the IMDS token endpoint.
pub const IMDS_TOKEN_PATH: &str = "/metadata/identity/oauth2/token";
pub const IMDS_API_VERSION: &str = "2018-02-01";
pub const APP_SERVICE_API_VERSION: &str = "2019-08-01";

const MODE: AuthMode = AuthMode::Managed;

/// `https://cognitiveservices.azure.com/.default` → `https://cognitiveservices.azure.com/`.
/// A scope without `/.default` is taken to be a resource already.
pub fn resource_from_scope(scope: &str) -> String {
    match scope.strip_suffix("/.default") {
        Some(base) => format!("{base}/"),
        None => scope.to_owned(),
    }
}

/// The Instance Metadata Service. No `client_id` means the system-assigned identity.
#[derive(Debug, Clone)]
pub struct Imds {
    pub http: IdentityHttp,
    /// Default [`DEFAULT_IMDS`].
    pub endpoint: String,
    /// e.g. `https://cognitiveservices.azure.com/`
    pub resource: String,
    /// A user-assigned identity's client id.
    pub client_id: Option<String>,
}

impl Imds {
    pub fn new(http: IdentityHttp, resource: impl Into<String>, client_id: Option<String>) -> Imds {
        Imds {
            http,
            endpoint: DEFAULT_IMDS.to_owned(),
            resource: resource.into(),
            client_id,
        }
    }

    /// `GET {endpoint}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=…[&client_id=…]`
    pub fn url(&self) -> Result<Url, CredentialError> {
        let base = format!("{}{IMDS_TOKEN_PATH}", self.endpoint.trim_end_matches('/'));
        let url = parse_endpoint(&base, "the IMDS endpoint")?;
        Ok(with_query(
            url,
            IMDS_API_VERSION,
            &self.resource,
            self.client_id.as_deref(),
        ))
    }

    /// Fails fast (1 s connect timeout) where there is no IMDS; 404/410/429/5xx are
    /// `Unavailable` (IMDS throttles and restarts), other 4xx `Rejected`.
    pub async fn get_token(&self) -> Result<Token, CredentialError> {
        let url = self.url()?;
        let reply = self
            .http
            .get_local(MODE, &url, &[("Metadata", "true")])
            .await?;
        token_from_reply(&url, &reply)
    }
}

#[async_trait]
impl CredentialSource for Imds {
    fn mode(&self) -> AuthMode {
        MODE
    }

    async fn fetch(&self) -> Result<Token, CredentialError> {
        self.get_token().await
    }
}

/// App Service / Container Apps managed identity.
#[derive(Debug, Clone)]
pub struct AppService {
    pub http: IdentityHttp,
    /// `IDENTITY_ENDPOINT`: the full token URL.
    pub endpoint: String,
    /// `IDENTITY_HEADER`, sent as `X-IDENTITY-HEADER`.
    pub header: Secret,
    pub resource: String,
    pub client_id: Option<String>,
}

impl AppService {
    /// `GET $IDENTITY_ENDPOINT?api-version=2019-08-01&resource=…[&client_id=…]`
    pub fn url(&self) -> Result<Url, CredentialError> {
        let url = parse_endpoint(&self.endpoint, "IDENTITY_ENDPOINT")?;
        Ok(with_query(
            url,
            APP_SERVICE_API_VERSION,
            &self.resource,
            self.client_id.as_deref(),
        ))
    }

    pub async fn get_token(&self) -> Result<Token, CredentialError> {
        let url = self.url()?;
        let headers = [("X-IDENTITY-HEADER", self.header.expose())];
        let reply = self.http.get_local(MODE, &url, &headers).await?;
        token_from_reply(&url, &reply)
    }
}

#[async_trait]
impl CredentialSource for AppService {
    fn mode(&self) -> AuthMode {
        MODE
    }

    async fn fetch(&self) -> Result<Token, CredentialError> {
        self.get_token().await
    }
}

fn parse_endpoint(url: &str, what: &str) -> Result<Url, CredentialError> {
    Url::parse(url).map_err(|_| CredentialError::Setup {
        mode: MODE,
        message: format!("{what} is not a URL; give an http URL such as {DEFAULT_IMDS}"),
    })
}

fn with_query(mut url: Url, api_version: &str, resource: &str, client_id: Option<&str>) -> Url {
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("api-version", api_version);
        q.append_pair("resource", resource);
        if let Some(id) = client_id {
            q.append_pair("client_id", id);
        }
    }
    url
}

/// Microsoft's IMDS guidance: retry 404 and 410 (the endpoint is updating), 429 and 5xx.
fn token_from_reply(url: &Url, reply: &HttpReply) -> Result<Token, CredentialError> {
    match reply.status {
        200 => parse_token(MODE, url, &reply.body, SystemTime::now()),
        404 | 410 | 429 | 500..=599 => Err(unavailable_status(MODE, url, reply.status)),
        400..=499 => Err(rejected(MODE, reply)),
        s => Err(CredentialError::Malformed {
            mode: MODE,
            endpoint: endpoint_name(url),
            detail: format!("HTTP {s}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_drops_default_keeps_slash() {
        assert_eq!(
            resource_from_scope(super::super::COGNITIVE_SCOPE),
            "https://cognitiveservices.azure.com/"
        );
        assert_eq!(
            resource_from_scope("https://vault.azure.net"),
            "https://vault.azure.net"
        );
    }

    #[test]
    fn imds_url_matches_the_wire_example() {
        let http = IdentityHttp::new();
        let imds = Imds::new(http, "https://cognitiveservices.azure.com/", None);
        assert_eq!(
            imds.url().unwrap().as_str(),
            "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fcognitiveservices.azure.com%2F"
        );
    }
}
