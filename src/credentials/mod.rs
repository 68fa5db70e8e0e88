//! Where upstream credentials come from: static API keys and the four Azure token flows
//! (Entra client credentials, IMDS / App Service managed identity, AKS workload identity,
//! AWS → Entra federation). Every token source has one shape, `CredentialSource::fetch`, and
//! never sees Pingora: the refresher (`refresh/`) calls it, the caches (`cache/`) hold the
//! result, the request path only reads.

pub mod client_secret;
pub mod entra;
pub mod federated;
pub(crate) mod http;
pub mod imds;
pub mod secrets;
pub mod spec;
pub mod workload;

use std::fmt;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::secret::Secret;

pub use http::IdentityHttp;

/// Entra scope for Azure OpenAI and the Cognitive Services family.
pub const COGNITIVE_SCOPE: &str = "https://cognitiveservices.azure.com/.default";
/// Entra scope for Azure AI Foundry (`*.services.ai.azure.com`).
pub const AI_FOUNDRY_SCOPE: &str = "https://ai.azure.com/.default";
/// Entra scope for Azure Key Vault.
pub const KEY_VAULT_SCOPE: &str = "https://vault.azure.net/.default";
/// Public-cloud Entra authority; sovereign clouds change it (`AZURE_AUTHORITY_HOST`).
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
/// Azure Instance Metadata Service.
pub const DEFAULT_IMDS: &str = "http://169.254.169.254";
/// Audience Entra expects on federated assertions.
pub const FEDERATION_AUDIENCE: &str = "api://AzureADTokenExchange";

/// The `azureAuthMode`s of seed 000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AuthMode {
    ApiKey,
    Entra,
    Managed,
    Workload,
    EntraFederated,
}

impl AuthMode {
    pub const ALL: [AuthMode; 5] = [
        AuthMode::ApiKey,
        AuthMode::Entra,
        AuthMode::Managed,
        AuthMode::Workload,
        AuthMode::EntraFederated,
    ];

    /// Parses the Portkey spelling (`apiKey`, `entra`, `managed`, `workload`, `entraFederated`).
    pub fn parse(s: &str) -> Option<AuthMode> {
        Some(match s {
            "apiKey" => AuthMode::ApiKey,
            "entra" => AuthMode::Entra,
            "managed" => AuthMode::Managed,
            "workload" => AuthMode::Workload,
            "entraFederated" => AuthMode::EntraFederated,
            _ => return None,
        })
    }

    /// The Portkey spelling, used in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::ApiKey => "apiKey",
            AuthMode::Entra => "entra",
            AuthMode::Managed => "managed",
            AuthMode::Workload => "workload",
            AuthMode::EntraFederated => "entraFederated",
        }
    }

    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            AuthMode::ApiKey => "api_key",
            AuthMode::Entra => "entra",
            AuthMode::Managed => "managed",
            AuthMode::Workload => "workload",
            AuthMode::EntraFederated => "entra_federated",
        }
    }
}

impl fmt::Display for AuthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An access token and when it stops working.
#[derive(Debug, Clone)]
pub struct Token {
    pub value: Secret,
    pub expires_at: SystemTime,
}

impl Token {
    pub fn lifetime_left(&self, now: SystemTime) -> Duration {
        self.expires_at.duration_since(now).unwrap_or_default()
    }
}

/// Why a token could not be had. Messages name the mode, the endpoint and the identity
/// provider's error code, never a secret or an assertion.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CredentialError {
    /// The identity provider answered and said no (e.g. `invalid_client`).
    #[error("{mode}: identity provider rejected the request (HTTP {status}, {code}){}", .aadsts.as_deref().map(|c| format!(" {c}")).unwrap_or_default())]
    Rejected {
        mode: AuthMode,
        status: u16,
        /// OAuth error code, e.g. `invalid_client`.
        code: String,
        /// The `AADSTSnnnnnn` code from the description, when there is one.
        aadsts: Option<String>,
    },
    /// Network trouble, throttling (429) or a 5xx: worth retrying.
    #[error("{mode}: {endpoint} unavailable: {reason}")]
    Unavailable {
        mode: AuthMode,
        endpoint: String,
        reason: String,
    },
    /// An answer keyway cannot use (not JSON, no access_token, …).
    #[error("{mode}: unexpected answer from {endpoint}: {detail}")]
    Malformed {
        mode: AuthMode,
        endpoint: String,
        detail: String,
    },
    /// Something keyway needs is not configured (env var, file, field).
    #[error("{mode}: {message}")]
    Setup { mode: AuthMode, message: String },
}

impl CredentialError {
    /// Whether retrying later may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        matches!(self, CredentialError::Unavailable { .. })
    }

    pub fn mode(&self) -> AuthMode {
        match self {
            CredentialError::Rejected { mode, .. }
            | CredentialError::Unavailable { mode, .. }
            | CredentialError::Malformed { mode, .. }
            | CredentialError::Setup { mode, .. } => *mode,
        }
    }
}

/// A place tokens come from. Implementations are cheap to call repeatedly: the refresher calls
/// `fetch` ahead of expiry and after failures.
#[async_trait]
pub trait CredentialSource: Send + Sync + fmt::Debug {
    fn mode(&self) -> AuthMode;
    async fn fetch(&self) -> Result<Token, CredentialError>;
}
