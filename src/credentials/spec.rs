//! What a token credential *is* (mode, tenant, client, scope, secret), whether it was declared
//! in the config or arrived in request headers, and how to turn it into a `CredentialSource`.
//! Two specs with the same `key()` share one cached token; the key holds a digest of any secret,
//! so a wrong secret can never ride on a token another caller fetched with the right one.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

pub use super::client_secret::{ClientSecret, SecretLookup};
use super::{
    entra, federated, imds, workload, AuthMode, CredentialError, CredentialSource, IdentityHttp,
    Token,
};
use crate::secret::Secret;

/// A token credential. `ApiKey` never gets here: static keys need no cache.
#[derive(Debug, Clone)]
pub enum TokenSpec {
    Entra {
        tenant: String,
        client_id: String,
        secret: ClientSecret,
        scope: String,
    },
    Managed {
        client_id: Option<String>,
        scope: String,
    },
    Workload {
        tenant: String,
        client_id: String,
        token_file: PathBuf,
        scope: String,
    },
    Federated {
        tenant: String,
        client_id: String,
        scope: String,
    },
}

/// Cache identity of a credential: SHA-256 over mode, tenant, client, scope and the secret (or
/// token-file path). Fixed-size, so a lookup allocates nothing, and it never holds the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CredentialKey([u8; 32]);

impl CredentialKey {
    /// The digest itself (never the secret it was made from).
    pub fn bytes(&self) -> [u8; 32] {
        self.0
    }

    pub fn of(mode: AuthMode, parts: [&[u8]; 4]) -> CredentialKey {
        let mut h = Sha256::new();
        h.update([mode as u8]);
        for p in parts {
            // Length-prefixed, so ("ab","c") and ("a","bc") differ.
            h.update((p.len() as u64).to_le_bytes());
            h.update(p);
        }
        CredentialKey(h.finalize().into())
    }
}

impl TokenSpec {
    pub fn mode(&self) -> AuthMode {
        match self {
            TokenSpec::Entra { .. } => AuthMode::Entra,
            TokenSpec::Managed { .. } => AuthMode::Managed,
            TokenSpec::Workload { .. } => AuthMode::Workload,
            TokenSpec::Federated { .. } => AuthMode::EntraFederated,
        }
    }

    /// The parts the cache key is made of, borrowed.
    pub fn parts(&self) -> KeyParts<'_> {
        let (tenant, client, scope, extra): (&str, &str, &str, &[u8]) = match self {
            TokenSpec::Entra {
                tenant,
                client_id,
                secret: ClientSecret::Value(secret),
                scope,
            } => (tenant, client_id, scope, secret.expose().as_bytes()),
            // Labels start with NUL, which no header value can hold, so a caller cannot send a
            // label as its client secret and ride on the mapped credential's token.
            TokenSpec::Entra {
                tenant,
                client_id,
                secret: ClientSecret::Lookup(l),
                scope,
            } => (tenant, client_id, scope, l.label().as_bytes()),
            TokenSpec::Managed { client_id, scope } => {
                ("", client_id.as_deref().unwrap_or(""), scope, b"")
            }
            TokenSpec::Workload {
                tenant,
                client_id,
                token_file,
                scope,
            } => (
                tenant,
                client_id,
                scope,
                token_file.as_os_str().as_encoded_bytes(),
            ),
            TokenSpec::Federated {
                tenant,
                client_id,
                scope,
            } => (tenant, client_id, scope, b""),
        };
        KeyParts {
            mode: self.mode(),
            tenant,
            client,
            scope,
            extra,
        }
    }

    pub fn key(&self) -> CredentialKey {
        self.parts().key()
    }
}

/// What identifies a credential, borrowed from wherever it was read (headers on the hot path).
/// `extra` is the secret for `entra`, the token-file path for `workload`, empty otherwise
/// (hence no `Debug`).
#[derive(Clone, Copy)]
pub struct KeyParts<'a> {
    pub mode: AuthMode,
    pub tenant: &'a str,
    pub client: &'a str,
    pub scope: &'a str,
    pub extra: &'a [u8],
}

impl KeyParts<'_> {
    pub fn key(&self) -> CredentialKey {
        let parts = [
            self.tenant.as_bytes(),
            self.client.as_bytes(),
            self.scope.as_bytes(),
            self.extra,
        ];
        CredentialKey::of(self.mode, parts)
    }
}

/// Endpoints and shared clients every token source needs; built once from config + env.
#[derive(Debug, Clone)]
pub struct IdentityContext {
    pub http: IdentityHttp,
    /// Entra authority host without a trailing `/`.
    pub authority: String,
    pub imds_endpoint: String,
    /// App Service / Container Apps identity endpoint and header (`IDENTITY_ENDPOINT`/`_HEADER`).
    pub app_service: Option<(String, Secret)>,
    pub aws_region: Option<String>,
    pub sts_endpoint: Option<String>,
    /// Built on first use: loading the AWS config may probe the network.
    sts: Arc<OnceCell<aws_sdk_sts::Client>>,
}

impl IdentityContext {
    pub fn new(
        authority: String,
        imds_endpoint: String,
        app_service: Option<(String, Secret)>,
        aws_region: Option<String>,
        sts_endpoint: Option<String>,
    ) -> Self {
        IdentityContext {
            http: IdentityHttp::new(),
            authority: authority.trim_end_matches('/').to_owned(),
            imds_endpoint: imds_endpoint.trim_end_matches('/').to_owned(),
            app_service,
            aws_region,
            sts_endpoint,
            sts: Arc::new(OnceCell::new()),
        }
    }

    /// The source that fetches tokens for `spec`.
    pub fn source(&self, spec: &TokenSpec) -> Arc<dyn CredentialSource> {
        let http = self.http.clone();
        match spec.clone() {
            TokenSpec::Entra {
                tenant,
                client_id,
                secret,
                scope,
            } => Arc::new(entra::EntraSecret {
                http,
                authority: self.authority.clone(),
                tenant,
                client_id,
                secret,
                scope,
            }),
            TokenSpec::Managed { client_id, scope } => {
                let resource = imds::resource_from_scope(&scope);
                match &self.app_service {
                    Some((endpoint, header)) => Arc::new(imds::AppService {
                        http,
                        endpoint: endpoint.clone(),
                        header: header.clone(),
                        resource,
                        client_id,
                    }),
                    None => Arc::new(imds::Imds {
                        http,
                        endpoint: self.imds_endpoint.clone(),
                        resource,
                        client_id,
                    }),
                }
            }
            TokenSpec::Workload {
                tenant,
                client_id,
                token_file,
                scope,
            } => Arc::new(workload::Workload {
                http,
                authority: self.authority.clone(),
                tenant,
                client_id,
                token_file,
                scope,
            }),
            TokenSpec::Federated {
                tenant,
                client_id,
                scope,
            } => Arc::new(LazyFederated {
                ctx: self.clone(),
                tenant,
                client_id,
                scope,
            }),
        }
    }
}

/// `federated::Federated` with its STS client created on first fetch.
#[derive(Debug)]
struct LazyFederated {
    ctx: IdentityContext,
    tenant: String,
    client_id: String,
    scope: String,
}

#[async_trait]
impl CredentialSource for LazyFederated {
    fn mode(&self) -> AuthMode {
        AuthMode::EntraFederated
    }

    async fn fetch(&self) -> Result<Token, CredentialError> {
        let ctx = &self.ctx;
        let sts = ctx
            .sts
            .get_or_init(|| federated::sts_client(ctx.aws_region.clone(), ctx.sts_endpoint.clone()))
            .await
            .clone();
        federated::Federated {
            http: ctx.http.clone(),
            sts,
            authority: ctx.authority.clone(),
            tenant: self.tenant.clone(),
            client_id: self.client_id.clone(),
            scope: self.scope.clone(),
            duration_seconds: None,
        }
        .fetch()
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_separate_secrets_and_hide_them() {
        let spec = |s: &str| TokenSpec::Entra {
            tenant: "t".into(),
            client_id: "c".into(),
            secret: ClientSecret::Value(Secret::new(s)),
            scope: "x/.default".into(),
        };
        assert_eq!(spec("a").key(), spec("a").key());
        assert_ne!(spec("a").key(), spec("b").key());
        assert!(!format!("{:?}", spec("hunter2").key()).contains("hunter2"));
        let m = |c: Option<&str>| TokenSpec::Managed {
            client_id: c.map(Into::into),
            scope: "s".into(),
        };
        assert_ne!(m(None).key(), m(Some("u1")).key());
    }
}
