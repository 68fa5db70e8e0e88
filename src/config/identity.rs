//! The identity side of the config: where Entra, IMDS and STS are (file, then the standard
//! environment variables, then the public defaults), and token credentials declared by name.

use std::path::PathBuf;
use std::time::Duration;

use super::schema::{AwsSection, AzureSection, CredentialSection, TokensSection};
use super::secret_use::SecretUse;
use super::{invalid, secret_from, ConfigError};
use crate::credentials::spec::{ClientSecret, TokenSpec};
pub use crate::credentials::workload::WorkloadDefaults;
use crate::credentials::{DEFAULT_AUTHORITY, DEFAULT_IMDS};
use crate::env::Env;
use crate::secret::Secret;

#[derive(Debug, Clone)]
pub struct Identity {
    pub authority: String,
    pub imds_endpoint: String,
    pub app_service: Option<(String, Secret)>,
    pub aws_region: Option<String>,
    pub sts_endpoint: Option<String>,
    /// AWS Secrets Manager endpoint override (`aws_sm` secret references).
    pub secretsmanager_endpoint: Option<String>,
    pub workload: WorkloadDefaults,
    pub ambient_from_headers: bool,
    pub token_idle: Duration,
    pub token_max: usize,
}

/// An Entra client secret: in the config (or its environment), or mapped from a secret
/// reference and read at each token fetch.
#[derive(Debug, Clone)]
pub enum ClientSecretConfig {
    Inline(Secret),
    Mapped(SecretUse),
}

/// A named token credential; the scope may stay open until the route's host is known.
#[derive(Debug, Clone)]
pub enum TokenCredential {
    Entra {
        tenant: String,
        client_id: String,
        secret: ClientSecretConfig,
        scope: Option<String>,
    },
    Managed {
        client_id: Option<String>,
        scope: Option<String>,
    },
    Workload {
        tenant: String,
        client_id: String,
        token_file: PathBuf,
        scope: Option<String>,
    },
    Federated {
        tenant: String,
        client_id: String,
        scope: Option<String>,
    },
}

impl TokenCredential {
    /// The spec to cache tokens under; `mapped` turns a secret mapping into its lookup.
    pub fn spec(
        &self,
        default_scope: &str,
        mapped: &dyn Fn(&SecretUse) -> ClientSecret,
    ) -> TokenSpec {
        let scope = |s: &Option<String>| s.clone().unwrap_or_else(|| default_scope.to_owned());
        match self {
            TokenCredential::Entra {
                tenant,
                client_id,
                secret,
                scope: s,
            } => TokenSpec::Entra {
                tenant: tenant.clone(),
                client_id: client_id.clone(),
                secret: match secret {
                    ClientSecretConfig::Inline(v) => ClientSecret::Value(v.clone()),
                    ClientSecretConfig::Mapped(u) => mapped(u),
                },
                scope: scope(s),
            },
            TokenCredential::Managed {
                client_id,
                scope: s,
            } => TokenSpec::Managed {
                client_id: client_id.clone(),
                scope: scope(s),
            },
            TokenCredential::Workload {
                tenant,
                client_id,
                token_file,
                scope: s,
            } => TokenSpec::Workload {
                tenant: tenant.clone(),
                client_id: client_id.clone(),
                token_file: token_file.clone(),
                scope: scope(s),
            },
            TokenCredential::Federated {
                tenant,
                client_id,
                scope: s,
            } => TokenSpec::Federated {
                tenant: tenant.clone(),
                client_id: client_id.clone(),
                scope: scope(s),
            },
        }
    }
}

fn url_setting(path: &str, v: Option<String>) -> Result<Option<String>, ConfigError> {
    match v {
        Some(u) if !(u.starts_with("http://") || u.starts_with("https://")) => {
            Err(invalid(path, format!("'{u}' must be an http(s) URL")))
        }
        other => Ok(other.map(|u| u.trim_end_matches('/').to_owned())),
    }
}

pub fn validate_identity(
    azure: AzureSection,
    aws: AwsSection,
    tokens: TokensSection,
    env: &Env,
) -> Result<Identity, ConfigError> {
    let authority = url_setting("azure.authority_host", azure.authority_host)?
        .or_else(|| {
            env.get("AZURE_AUTHORITY_HOST")
                .map(|s| s.trim_end_matches('/').to_owned())
        })
        .unwrap_or_else(|| DEFAULT_AUTHORITY.to_owned());
    let imds_endpoint = url_setting("azure.imds_endpoint", azure.imds_endpoint)?
        .or_else(|| {
            env.get("AZURE_POD_IDENTITY_AUTHORITY_HOST")
                .map(|s| s.trim_end_matches('/').to_owned())
        })
        .unwrap_or_else(|| DEFAULT_IMDS.to_owned());
    let app_service = match (env.get("IDENTITY_ENDPOINT"), env.get("IDENTITY_HEADER")) {
        (Some(e), Some(h)) => Some((e.to_owned(), Secret::new(h))),
        _ => None,
    };
    let max = tokens.max_cached.unwrap_or(1024);
    if max == 0 {
        return Err(invalid("tokens.max_cached", "must be at least 1"));
    }
    Ok(Identity {
        authority,
        imds_endpoint,
        app_service,
        aws_region: aws.region.or_else(|| {
            env.get("AWS_REGION")
                .or(env.get("AWS_DEFAULT_REGION"))
                .map(str::to_owned)
        }),
        sts_endpoint: url_setting("aws.sts_endpoint", aws.sts_endpoint)?,
        secretsmanager_endpoint: url_setting(
            "aws.secretsmanager_endpoint",
            aws.secretsmanager_endpoint,
        )?
        .or_else(|| {
            env.get("AWS_ENDPOINT_URL_SECRETSMANAGER")
                .or(env.get("AWS_ENDPOINT_URL"))
                .map(str::to_owned)
        }),
        workload: WorkloadDefaults {
            tenant: env.get("AZURE_TENANT_ID").map(str::to_owned),
            client_id: env.get("AZURE_CLIENT_ID").map(str::to_owned),
            token_file: env.get("AZURE_FEDERATED_TOKEN_FILE").map(PathBuf::from),
        },
        ambient_from_headers: azure.ambient_identity_from_headers.unwrap_or(true),
        token_idle: Duration::from_secs(tokens.idle_timeout_seconds.unwrap_or(3600).max(1)),
        token_max: max,
    })
}

/// A `[credentials.<name>]` of a token type; `mapped_secret` is the client secret's mapping.
pub fn token_credential(
    path: &str,
    c: CredentialSection,
    mapped_secret: Option<SecretUse>,
    identity: &Identity,
    env: &Env,
) -> Result<TokenCredential, ConfigError> {
    let need = |field: &str, v: Option<String>| {
        v.filter(|s| !s.is_empty()).ok_or_else(|| {
            invalid(
                format!("{path}.{field}"),
                format!("is required for type {}", c.kind),
            )
        })
    };
    let w = &identity.workload;
    Ok(match c.kind.as_str() {
        "entra" => TokenCredential::Entra {
            tenant: need("tenant_id", c.tenant_id.clone())?,
            client_id: need("client_id", c.client_id.clone())?,
            secret: match (secret_from(&format!("{path}.client_secret"), c.client_secret, c.client_secret_env, env)?, mapped_secret) {
                (Some(_), Some(_)) => return Err(invalid(format!("{path}.client_secret"), "give client_secret or a secret mapping for it, not both")),
                (Some(s), None) => ClientSecretConfig::Inline(s),
                (None, Some(u)) => ClientSecretConfig::Mapped(u),
                (None, None) => return Err(invalid(format!("{path}.client_secret"), "is required for type entra (or client_secret_env, or a secret mapping)")),
            },
            scope: c.scope,
        },
        "managed" => TokenCredential::Managed { client_id: c.client_id, scope: c.scope },
        "workload" => TokenCredential::Workload {
            tenant: c.tenant_id.or_else(|| w.tenant.clone()).ok_or_else(|| {
                invalid(format!("{path}.tenant_id"), "workload identity: AZURE_TENANT_ID is not set; set it or give tenant_id")
            })?,
            client_id: c.client_id.or_else(|| w.client_id.clone()).ok_or_else(|| {
                invalid(format!("{path}.client_id"), "workload identity: AZURE_CLIENT_ID is not set; set it or give client_id")
            })?,
            token_file: c.token_file.map(PathBuf::from).or_else(|| w.token_file.clone()).ok_or_else(|| {
                invalid(format!("{path}.token_file"), "workload identity: AZURE_FEDERATED_TOKEN_FILE is not set; set it or give token_file")
            })?,
            scope: c.scope,
        },
        "entra_federated" => TokenCredential::Federated {
            tenant: need("tenant_id", c.tenant_id)?,
            client_id: need("client_id", c.client_id)?,
            scope: c.scope,
        },
        other => {
            return Err(invalid(
                format!("{path}.type"),
                format!("unknown credential type '{other}' (known: api_key, entra, managed, workload, entra_federated)"),
            ))
        }
    })
}
