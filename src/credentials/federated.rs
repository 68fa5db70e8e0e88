//! `entraFederated` mode (AWS → Entra): AWS STS `GetWebIdentityToken` signs a JWT for the
//! audience `api://AzureADTokenExchange` with whatever AWS credentials the standard chain finds,
//! and that JWT is the client assertion of an Entra exchange. Owns the STS client factory and
//! how STS errors become `CredentialError`s.

use async_trait::async_trait;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sts::operation::get_web_identity_token::GetWebIdentityTokenError;

use super::entra::{exchange, ClientAuth};
use super::{
    AuthMode, CredentialError, CredentialSource, IdentityHttp, Token, FEDERATION_AUDIENCE,
};
use crate::secret::Secret;

const MODE: AuthMode = AuthMode::EntraFederated;
/// How STS is named in errors (the endpoint comes from the SDK's resolver).
pub const STS_OPERATION: &str = "AWS STS GetWebIdentityToken";
/// Entra accepts RS256 assertions.
pub const SIGNING_ALGORITHM: &str = "RS256";

/// AWS error codes that mean "try again later" even on a 4xx.
const RETRYABLE_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalFailure",
    "InternalError",
    "ServiceUnavailable",
    "IDPCommunicationError",
];

/// One Entra app federated with an AWS principal.
#[derive(Debug, Clone)]
pub struct Federated {
    pub http: IdentityHttp,
    pub sts: aws_sdk_sts::Client,
    pub authority: String,
    pub tenant: String,
    pub client_id: String,
    pub scope: String,
    /// 60–3600; STS defaults to 300 when unset.
    pub duration_seconds: Option<i32>,
}

impl Federated {
    pub async fn get_token(&self) -> Result<Token, CredentialError> {
        let jwt = self.web_identity_token().await?;
        exchange(
            &self.http,
            MODE,
            &self.authority,
            &self.tenant,
            &self.client_id,
            &self.scope,
            ClientAuth::Assertion(jwt.expose()),
        )
        .await
    }

    /// The AWS-signed JWT. STS throttling, 5xx and network trouble are `Unavailable`; other
    /// STS errors `Rejected` with the AWS error code.
    pub async fn web_identity_token(&self) -> Result<Secret, CredentialError> {
        let out = self
            .sts
            .get_web_identity_token()
            .audience(FEDERATION_AUDIENCE)
            .signing_algorithm(SIGNING_ALGORITHM)
            .set_duration_seconds(self.duration_seconds)
            .send()
            .await
            .map_err(|e| sts_error(&e))?;
        out.web_identity_token()
            .filter(|t| !t.is_empty())
            .map(Secret::new)
            .ok_or_else(|| CredentialError::Malformed {
                mode: MODE,
                endpoint: STS_OPERATION.into(),
                detail: "no WebIdentityToken in the answer".into(),
            })
    }
}

#[async_trait]
impl CredentialSource for Federated {
    fn mode(&self) -> AuthMode {
        MODE
    }

    async fn fetch(&self) -> Result<Token, CredentialError> {
        self.get_token().await
    }
}

/// An STS client on the standard AWS chain (env keys, `AWS_ROLE_ARN` +
/// `AWS_WEB_IDENTITY_TOKEN_FILE`, profile, instance metadata). `region` and `endpoint` override
/// what the environment says; `AWS_ENDPOINT_URL_STS` / `AWS_ENDPOINT_URL` are honoured anyway.
pub async fn sts_client(region: Option<String>, endpoint: Option<String>) -> aws_sdk_sts::Client {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = region {
        loader = loader.region(Region::new(region));
    }
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    aws_sdk_sts::Client::new(&loader.load().await)
}

/// Maps an STS failure. Messages carry the HTTP status and AWS error code, never a credential.
pub fn sts_error(err: &SdkError<GetWebIdentityTokenError>) -> CredentialError {
    let unavailable = |reason: String| CredentialError::Unavailable {
        mode: MODE,
        endpoint: STS_OPERATION.into(),
        reason,
    };
    match err {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let code = ctx.err().code().unwrap_or("unknown_error");
            if status == 429 || status >= 500 || RETRYABLE_CODES.contains(&code) {
                unavailable(format!("HTTP {status}, {code}"))
            } else {
                CredentialError::Rejected {
                    mode: MODE,
                    status,
                    code: code.to_owned(),
                    aadsts: None,
                }
            }
        }
        SdkError::ResponseError(ctx) if ctx.raw().status().as_u16() >= 500 => {
            unavailable(format!("HTTP {}", ctx.raw().status().as_u16()))
        }
        SdkError::ResponseError(ctx) => CredentialError::Malformed {
            mode: MODE,
            endpoint: STS_OPERATION.into(),
            detail: format!("unreadable answer (HTTP {})", ctx.raw().status().as_u16()),
        },
        SdkError::ConstructionFailure(_) => CredentialError::Setup {
            mode: MODE,
            message: format!(
                "cannot build the STS request ({}); is AWS_REGION (or the credential's region) set?",
                error_chain(err)
            ),
        },
        SdkError::TimeoutError(_) => unavailable("timed out".into()),
        // Not the network: the AWS credential chain found nothing (yet), or signing failed.
        SdkError::DispatchFailure(d) if d.is_other() => unavailable(format!(
            "{}; check the AWS credential chain (AWS_ACCESS_KEY_ID, AWS_ROLE_ARN + \
             AWS_WEB_IDENTITY_TOKEN_FILE, AWS_PROFILE or an instance role)",
            error_chain(err)
        )),
        _ => unavailable(error_chain(err)),
    }
}

/// `outer: inner: …: root`, Display only: the SDK's Debug output would be noise.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        out.push_str(": ");
        out.push_str(&e.to_string());
        next = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sts::config::http::HttpResponse;
    use aws_sdk_sts::error::{ConnectorError, ErrorMetadata};

    type StsErr = SdkError<GetWebIdentityTokenError, HttpResponse>;

    fn service(status: u16, code: &str) -> StsErr {
        let meta = ErrorMetadata::builder().code(code).message("m").build();
        let raw = HttpResponse::new(status.try_into().unwrap(), "".into());
        SdkError::service_error(GetWebIdentityTokenError::generic(meta), raw)
    }

    #[test]
    fn denials_are_rejected_with_the_aws_code() {
        for (status, code) in [(403, "AccessDenied"), (400, "InvalidSignatureException")] {
            match sts_error(&service(status, code)) {
                CredentialError::Rejected {
                    status: s,
                    code: c,
                    mode,
                    ..
                } => {
                    assert_eq!((s, c.as_str(), mode), (status, code, MODE));
                }
                other => panic!("{other:?}"),
            }
        }
        let e = sts_error(&service(
            403,
            "OutboundWebIdentityFederationDisabledException",
        ));
        assert!(!e.is_transient());
    }

    #[test]
    fn throttling_5xx_and_network_are_transient() {
        let network = StsErr::dispatch_failure(ConnectorError::io("connection refused".into()));
        let timeout = StsErr::timeout_error("slow");
        for e in [
            service(400, "Throttling"),
            service(503, "ServiceUnavailable"),
            service(500, "x"),
            network,
            timeout,
        ] {
            assert!(sts_error(&e).is_transient(), "{e:?}");
        }
    }

    #[test]
    fn construction_failure_is_setup() {
        let e = sts_error(&StsErr::construction_failure("no region"));
        assert!(matches!(e, CredentialError::Setup { .. }), "{e}");
    }
}
