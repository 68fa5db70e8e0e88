//! `workload` mode (AKS workload identity): the pod's projected service-account token, read
//! afresh from `AZURE_FEDERATED_TOKEN_FILE` at every fetch because the kubelet rotates it, is
//! the client assertion of an Entra exchange. `WorkloadEnv` reads the variables the AKS webhook
//! injects. Nothing is global: several client ids may share one token file.

use std::path::PathBuf;

use async_trait::async_trait;

use super::entra::{exchange, ClientAuth};
use super::{AuthMode, CredentialError, CredentialSource, IdentityHttp, Token, DEFAULT_AUTHORITY};
use crate::env::Env;

const MODE: AuthMode = AuthMode::Workload;

/// What the AKS workload-identity webhook injects (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
/// `AZURE_FEDERATED_TOKEN_FILE`): the defaults of `workload` credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkloadDefaults {
    pub tenant: Option<String>,
    pub client_id: Option<String>,
    pub token_file: Option<PathBuf>,
}

/// One workload identity: a client id federated with the pod's service account.
#[derive(Debug, Clone)]
pub struct Workload {
    pub http: IdentityHttp,
    /// Default [`DEFAULT_AUTHORITY`]; a trailing `/` is fine.
    pub authority: String,
    pub tenant: String,
    pub client_id: String,
    pub token_file: PathBuf,
    pub scope: String,
}

impl Workload {
    /// Reads the token file, then exchanges it. A missing, unreadable or empty file is `Setup`.
    pub async fn get_token(&self) -> Result<Token, CredentialError> {
        let assertion = read_assertion(&self.token_file).await?;
        exchange(
            &self.http,
            MODE,
            &self.authority,
            &self.tenant,
            &self.client_id,
            &self.scope,
            ClientAuth::Assertion(&assertion),
        )
        .await
    }
}

#[async_trait]
impl CredentialSource for Workload {
    fn mode(&self) -> AuthMode {
        MODE
    }

    async fn fetch(&self) -> Result<Token, CredentialError> {
        self.get_token().await
    }
}

const FIX: &str = "is the pod labelled azure.workload.identity/use=true and its service account annotated with azure.workload.identity/client-id?";

async fn read_assertion(path: &std::path::Path) -> Result<String, CredentialError> {
    let setup = |what: String| CredentialError::Setup {
        mode: MODE,
        message: format!("token file {} {what}; {FIX}", path.display()),
    };
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => setup("does not exist".into()),
            kind => setup(format!("cannot be read ({kind})")),
        })?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(setup("is empty".into()));
    }
    Ok(trimmed.to_owned())
}

/// What the AKS workload-identity webhook injects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadEnv {
    /// `AZURE_AUTHORITY_HOST` without its trailing `/`; default [`DEFAULT_AUTHORITY`].
    pub authority_host: String,
    pub tenant_id: String,
    pub client_id: String,
    pub token_file: PathBuf,
}

impl WorkloadEnv {
    /// Reads `AZURE_AUTHORITY_HOST`, `AZURE_TENANT_ID`, `AZURE_CLIENT_ID` and
    /// `AZURE_FEDERATED_TOKEN_FILE`; each missing one is a `Setup` error naming the variable and
    /// the config field that replaces it.
    pub fn from_env(env: &Env) -> Result<WorkloadEnv, CredentialError> {
        let need = |var: &str, field: &str| {
            env.get(var)
                .map(str::to_owned)
                .ok_or_else(|| CredentialError::Setup {
                    mode: MODE,
                    message: format!("{var} is not set; set it or give credentials.<name>.{field}"),
                })
        };
        let authority_host = env
            .get("AZURE_AUTHORITY_HOST")
            .unwrap_or(DEFAULT_AUTHORITY)
            .trim_end_matches('/')
            .to_owned();
        Ok(WorkloadEnv {
            authority_host,
            tenant_id: need("AZURE_TENANT_ID", "tenant_id")?,
            client_id: need("AZURE_CLIENT_ID", "client_id")?,
            token_file: need("AZURE_FEDERATED_TOKEN_FILE", "token_file")?.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_webhook_variables() {
        let env = Env::from_pairs([
            ("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.us/"),
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "c"),
            (
                "AZURE_FEDERATED_TOKEN_FILE",
                "/var/run/secrets/azure/tokens/azure-identity-token",
            ),
        ]);
        let w = WorkloadEnv::from_env(&env).unwrap();
        assert_eq!(w.authority_host, "https://login.microsoftonline.us");
        assert_eq!(
            w.token_file,
            PathBuf::from("/var/run/secrets/azure/tokens/azure-identity-token")
        );
        let env = Env::from_pairs([("AZURE_TENANT_ID", "t"), ("AZURE_CLIENT_ID", "c")]);
        assert_eq!(
            WorkloadEnv::from_env(&env).unwrap_err().to_string(),
            "workload: AZURE_FEDERATED_TOKEN_FILE is not set; set it or give credentials.<name>.token_file"
        );
    }

    #[test]
    fn authority_defaults_to_public_cloud() {
        let env = Env::from_pairs([
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_FEDERATED_TOKEN_FILE", "/f"),
        ]);
        assert_eq!(
            WorkloadEnv::from_env(&env).unwrap().authority_host,
            DEFAULT_AUTHORITY
        );
    }
}
