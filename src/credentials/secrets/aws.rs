//! `aws_sm`: `GetSecretValue` through `aws-sdk-secretsmanager`, signed with the reference's
//! static keys (`accessKey`), a role assumed through STS from the ambient chain
//! (`assumedRole`), or the ambient chain itself (`serviceRole`). The client is built on first
//! fetch: loading the ambient AWS config may probe the network.

use async_trait::async_trait;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use tokio::sync::OnceCell;

use super::{ManagerType, SecretDoc, SecretError, SecretFetcher};
use crate::credentials::federated::error_chain;
use crate::secret::Secret;

const M: ManagerType = ManagerType::AwsSm;
/// Session name of the assumed role, visible in the account's CloudTrail.
const SESSION_NAME: &str = "keyway-secret-reference";

/// `auth_config.aws_auth_type` and its fields.
#[derive(Debug, Clone)]
pub enum AwsAuth {
    AccessKey {
        access_key_id: Secret,
        secret_access_key: Secret,
    },
    AssumedRole {
        role_arn: Secret,
        external_id: Option<Secret>,
    },
    ServiceRole,
}

#[derive(Debug, Clone)]
pub struct AwsSettings {
    pub auth: AwsAuth,
    /// Required for accessKey and assumedRole; serviceRole falls back to the ambient region.
    pub region: Option<String>,
    /// Secrets Manager endpoint override (`[aws] secretsmanager_endpoint`,
    /// `AWS_ENDPOINT_URL_SECRETSMANAGER`, `AWS_ENDPOINT_URL`).
    pub endpoint: Option<String>,
    /// STS endpoint override for assumedRole (`[aws] sts_endpoint`).
    pub sts_endpoint: Option<String>,
}

#[derive(Debug)]
pub struct AwsSecret {
    pub settings: AwsSettings,
    pub secret_id: String,
    client: OnceCell<aws_sdk_secretsmanager::Client>,
}

impl AwsSecret {
    pub fn new(settings: AwsSettings, secret_id: String) -> Self {
        AwsSecret {
            settings,
            secret_id,
            client: OnceCell::new(),
        }
    }

    async fn client(&self) -> &aws_sdk_secretsmanager::Client {
        self.client
            .get_or_init(|| build_client(&self.settings))
            .await
    }

    pub async fn get(&self) -> Result<SecretDoc, SecretError> {
        let out = self
            .client()
            .await
            .get_secret_value()
            .secret_id(&self.secret_id)
            .send()
            .await
            .map_err(|e| sm_error(&e))?;
        match (out.secret_string(), out.secret_binary()) {
            (Some(s), _) => Ok(SecretDoc::Text(Secret::new(s))),
            (None, Some(_)) => Err(SecretError::Malformed {
                manager: M,
                detail: "the secret is binary (SecretBinary); keyway maps SecretString values"
                    .into(),
            }),
            (None, None) => Err(SecretError::Malformed {
                manager: M,
                detail: "the answer has no SecretString".into(),
            }),
        }
    }
}

#[async_trait]
impl SecretFetcher for AwsSecret {
    async fn fetch(&self) -> Result<SecretDoc, SecretError> {
        self.get().await
    }
}

async fn ambient(region: Option<&str>, endpoint: Option<&str>) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(r) = region {
        loader = loader.region(Region::new(r.to_owned()));
    }
    if let Some(e) = endpoint {
        loader = loader.endpoint_url(e);
    }
    loader.load().await
}

async fn build_client(s: &AwsSettings) -> aws_sdk_secretsmanager::Client {
    use aws_sdk_secretsmanager::config::{Builder, Credentials};
    let region = s.region.as_deref();
    let builder = match &s.auth {
        AwsAuth::AccessKey {
            access_key_id,
            secret_access_key,
        } => Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .credentials_provider(Credentials::new(
                access_key_id.expose(),
                secret_access_key.expose(),
                None,
                None,
                "keyway-secret-reference",
            )),
        AwsAuth::AssumedRole {
            role_arn,
            external_id,
        } => {
            let sts = ambient(region, s.sts_endpoint.as_deref()).await;
            let mut role = aws_config::sts::AssumeRoleProvider::builder(role_arn.expose())
                .session_name(SESSION_NAME)
                .configure(&sts);
            if let Some(r) = region {
                role = role.region(Region::new(r.to_owned()));
            }
            if let Some(x) = external_id {
                role = role.external_id(x.expose());
            }
            Builder::from(&ambient(region, None).await).credentials_provider(role.build().await)
        }
        AwsAuth::ServiceRole => Builder::from(&ambient(region, None).await),
    };
    let mut builder = builder;
    if let Some(r) = region {
        builder = builder.region(Region::new(r.to_owned()));
    }
    if let Some(e) = &s.endpoint {
        builder = builder.endpoint_url(e);
    }
    aws_sdk_secretsmanager::Client::from_conf(builder.build())
}

/// AWS error codes that mean "try again later" even on a 4xx.
const RETRYABLE_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "InternalServiceError",
    "InternalFailure",
    "ServiceUnavailable",
    "RequestTimeout",
];

/// Maps a `GetSecretValue` failure; the message holds the HTTP status and AWS code only.
pub fn sm_error(err: &SdkError<GetSecretValueError>) -> SecretError {
    let unavailable = |reason: String| SecretError::Unavailable { manager: M, reason };
    match err {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let body_code = ctx.raw().body().bytes().and_then(code_in_body);
            let code = ctx
                .err()
                .code()
                .or(body_code.as_deref())
                .unwrap_or("unknown_error");
            let code_text = format!("HTTP {status}, {code}");
            if status == 429 || status >= 500 || RETRYABLE_CODES.contains(&code) {
                unavailable(code_text)
            } else if code == "ResourceNotFoundException" {
                SecretError::NotFound {
                    manager: M,
                    code: code_text,
                }
            } else {
                SecretError::Rejected {
                    manager: M,
                    code: code_text,
                }
            }
        }
        SdkError::ResponseError(ctx) if ctx.raw().status().as_u16() >= 500 => {
            unavailable(format!("HTTP {}", ctx.raw().status().as_u16()))
        }
        SdkError::ResponseError(ctx) => SecretError::Rejected {
            manager: M,
            code: format!(
                "HTTP {}, unreadable error answer",
                ctx.raw().status().as_u16()
            ),
        },
        SdkError::TimeoutError(_) => unavailable("timed out".into()),
        _ => unavailable(error_chain(err)),
    }
}

/// The error code of an answer the SDK could not read (an XML `<Code>` from a proxy or
/// emulator, or a JSON `__type`); only a plain identifier is taken.
fn code_in_body(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let raw = match text.split_once("<Code>") {
        Some((_, rest)) => rest.split('<').next()?,
        None => {
            let t = serde_json::from_str::<serde_json::Value>(text).ok()?;
            let t = t.get("__type")?.as_str()?.rsplit('#').next()?.to_owned();
            return is_code(&t).then_some(t);
        }
    };
    is_code(raw).then(|| raw.to_owned())
}

fn is_code(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_secretsmanager::config::http::HttpResponse;
    use aws_sdk_secretsmanager::error::{ConnectorError, ErrorMetadata};

    type SmErr = SdkError<GetSecretValueError, HttpResponse>;

    fn service(status: u16, code: &str) -> SmErr {
        let meta = ErrorMetadata::builder().code(code).message("m").build();
        let raw = HttpResponse::new(status.try_into().unwrap(), "".into());
        SdkError::service_error(GetSecretValueError::generic(meta), raw)
    }

    #[test]
    fn codes_are_read_from_xml_or_json_bodies() {
        let xml = b"<ErrorResponse><Error><Code>InvalidSignatureException</Code><Message>m</Message></Error></ErrorResponse>";
        assert_eq!(
            code_in_body(xml).as_deref(),
            Some("InvalidSignatureException")
        );
        let json = br#"{"__type":"com.amazonaws#AccessDeniedException","message":"m"}"#;
        assert_eq!(code_in_body(json).as_deref(), Some("AccessDeniedException"));
        assert_eq!(code_in_body(b"<Code>has space</Code>"), None);
        assert_eq!(code_in_body(b"oops"), None);
    }

    #[test]
    fn aws_errors_classify() {
        assert!(matches!(
            sm_error(&service(400, "ResourceNotFoundException")),
            SecretError::NotFound { .. }
        ));
        for code in [
            "UnrecognizedClientException",
            "InvalidSignatureException",
            "AccessDeniedException",
        ] {
            let e = sm_error(&service(400, code));
            assert!(matches!(e, SecretError::Rejected { .. }), "{e:?}");
            assert!(e.to_string().contains(code), "{e}");
        }
        for e in [
            service(400, "ThrottlingException"),
            service(500, "InternalServiceError"),
            SmErr::dispatch_failure(ConnectorError::io("connection refused".into())),
            SmErr::timeout_error("slow"),
        ] {
            assert!(sm_error(&e).is_transient(), "{e:?}");
        }
    }
}
