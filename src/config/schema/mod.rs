//! The file schema: what a TOML config may say, strictly. Every struct denies unknown keys so a
//! typo fails start-up with its path instead of being silently ignored. Nothing here leaves
//! `config/`, and nothing here imports the rest of `config/`: the validation modules turn it
//! into validated types.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub mod auth;
pub mod limits;
pub mod observe;
pub mod secrets;
pub mod tls;
pub mod tracing;

use auth::{ApiKeySection, AuthSection, VirtualKeySection, WorkspaceSection};
use secrets::{SecretMappingSection, SecretReferenceSection, SecretsSection};

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Proxy listener. Default `127.0.0.1:8787`.
    pub listen: Option<String>,
    /// Metrics, `/healthz` and `/readyz` listener. Default `127.0.0.1:9787`.
    pub metrics_listen: Option<String>,
    /// Proxy worker threads. Default: the number of CPUs.
    pub threads: Option<usize>,
    /// Tokio work stealing between proxy threads. Default false: one runtime per thread, which
    /// measured 15-30% more requests per CPU-second here (README, Performance).
    pub work_stealing: Option<bool>,
    /// Seconds to keep serving in-flight requests after SIGTERM. Default 30.
    pub grace_period_seconds: Option<u64>,
    /// Reload when the config file changes (its directory is watched). Default true; SIGHUP
    /// reloads either way.
    pub watch_config: Option<bool>,
    /// Hosts that `x-portkey-custom-host` may name even though they are private or loopback.
    #[serde(default)]
    pub trusted_custom_hosts: Vec<String>,
    /// PEM file of extra CA certificates trusted for upstream TLS (beside the system roots).
    pub ca_file: Option<String>,
    #[serde(default)]
    pub listener: ListenerSection,
    /// The TLS listener (none by default).
    #[serde(default)]
    pub tls: tls::TlsSection,
    #[serde(default)]
    pub limits: limits::LimitsSection,
    #[serde(default)]
    pub upstream: UpstreamSection,
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderSection>,
    #[serde(default)]
    pub credentials: BTreeMap<String, CredentialSection>,
    #[serde(default)]
    pub routes: Vec<RouteSection>,
    #[serde(default)]
    pub azure: AzureSection,
    #[serde(default)]
    pub aws: AwsSection,
    #[serde(default)]
    pub tokens: TokensSection,
    #[serde(default)]
    pub auth: AuthSection,
    #[serde(default)]
    pub workspaces: BTreeMap<String, WorkspaceSection>,
    #[serde(default)]
    pub api_keys: Vec<ApiKeySection>,
    #[serde(default)]
    pub virtual_keys: BTreeMap<String, VirtualKeySection>,
    #[serde(default)]
    pub secrets: SecretsSection,
    #[serde(default)]
    pub secret_references: Vec<SecretReferenceSection>,
    /// Routing configs requests may name by slug in `x-portkey-config`.
    #[serde(default)]
    pub configs: BTreeMap<String, ConfigSection>,
    /// The control plane's store (admin API objects).
    #[serde(default)]
    pub store: StoreSection,
    /// The admin API's listener.
    #[serde(default)]
    pub admin: AdminSection,
    #[serde(default)]
    pub access_log: observe::AccessLogSection,
    #[serde(default)]
    pub usage: observe::UsageSection,
    /// OpenTelemetry trace export; absent: off.
    pub tracing: Option<tracing::TracingSection>,
}

/// `[configs.<slug>]`: a stored Portkey routing config.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigSection {
    /// The config as JSON text (what `x-portkey-config` would carry).
    pub config: String,
    /// Only callers of this workspace may name it; absent: every caller.
    pub workspace: Option<String>,
    /// Display name.
    pub name: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// Default true: keep admin-API objects in a store and serve the admin API.
    pub enabled: Option<bool>,
    /// `sqlite://PATH` or `postgres://USER[:PASSWORD]@HOST[:PORT]/DB`. Default: SQLite in
    /// `data_dir`.
    pub url: Option<String>,
    /// Read the URL from this environment variable instead (it may hold a password).
    pub url_env: Option<String>,
    /// Where the SQLite file (and a generated key) live. Default: `KEYWAY_DATA_DIR`, else
    /// `keyway-data` in the working directory.
    pub data_dir: Option<String>,
    /// Environment variable with the 32-byte sealing key (base64 or hex). Default
    /// `KEYWAY_STORE_KEY`.
    pub key_env: Option<String>,
    /// File with the sealing key.
    pub key_file: Option<String>,
    /// How often the store's version is read (the backstop for PostgreSQL notifications).
    /// Default 500.
    pub poll_interval_ms: Option<u64>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// The admin API's own listener. Default `127.0.0.1:8788`.
    pub listen: Option<String>,
    /// Also serve the admin API on the proxy listener, under the same paths (as Portkey's
    /// public endpoint does). Default false.
    pub on_proxy_listener: Option<bool>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AzureSection {
    /// Entra authority. Default: `AZURE_AUTHORITY_HOST`, else https://login.microsoftonline.com.
    pub authority_host: Option<String>,
    /// IMDS base URL. Default: `AZURE_POD_IDENTITY_AUTHORITY_HOST`, else http://169.254.169.254.
    pub imds_endpoint: Option<String>,
    /// Whether request headers may select the gateway's own identities (managed, workload,
    /// entraFederated). Default true (Portkey behaviour).
    pub ambient_identity_from_headers: Option<bool>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSection {
    /// Default: `AWS_REGION` / `AWS_DEFAULT_REGION` (the AWS SDK's own chain).
    pub region: Option<String>,
    /// STS endpoint for `GetWebIdentityToken`. Default: `AWS_ENDPOINT_URL_STS` / `AWS_ENDPOINT_URL`, else regional.
    pub sts_endpoint: Option<String>,
    /// Secrets Manager endpoint for `aws_sm` references. Default:
    /// `AWS_ENDPOINT_URL_SECRETSMANAGER` / `AWS_ENDPOINT_URL`, else regional.
    pub secretsmanager_endpoint: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokensSection {
    /// Header-selected credentials unused this long are dropped. Default 3600.
    pub idle_timeout_seconds: Option<u64>,
    /// Upper bound on cached credentials. Default 1024.
    pub max_cached: Option<usize>,
}

/// The proxy listener's client connections.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerSection {
    /// Read buffer in front of each client connection's socket; 0: none. Default 0.
    pub read_buffer_bytes: Option<usize>,
    /// Write buffer in front of each client connection's socket; 0: none. Default 8192.
    pub write_buffer_bytes: Option<usize>,
    /// Accept HTTP/2 with prior knowledge (h2c) on the clear listener. Default false.
    pub h2c: Option<bool>,
    /// Concurrent streams per HTTP/2 client connection. Default 100.
    pub h2_max_concurrent_streams: Option<u32>,
    /// Largest decoded header list of an HTTP/2 request. Default 65536.
    pub h2_max_header_list_bytes: Option<u32>,
    /// Close an HTTP/2 client connection idle (no open stream) this long; 0: never. Default 60.
    pub h2_idle_timeout_seconds: Option<u64>,
    /// Unix socket the listeners are handed over on during an upgrade (`keyway --upgrade`).
    /// Default `/tmp/keyway_upgrade.sock`.
    pub upgrade_socket: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    /// TCP connect timeout. Default 5000.
    pub connect_timeout_ms: Option<u64>,
    /// Connect plus TLS handshake. Default 10000.
    pub total_connect_timeout_ms: Option<u64>,
    /// Longest silence allowed between two reads from the upstream. Default 300000.
    pub read_timeout_ms: Option<u64>,
    /// How long an idle pooled upstream connection is kept. Default 60000.
    pub idle_timeout_ms: Option<u64>,
    /// Request bodies up to this size are kept for replay on a strategy's later attempts.
    pub replay_body_limit_bytes: Option<u64>,
    /// Base of the exponential back-off between retries (Portkey's: 1000).
    pub retry_backoff_ms: Option<u64>,
    /// Attempts per request, all targets and retries together (1..=16).
    pub max_attempts: Option<u32>,
    /// Idle upstream connections kept for reuse, per proxy thread. Default 128.
    pub keepalive_pool_size: Option<usize>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSection {
    /// Replaces the provider's default base URL (private endpoints, tests).
    pub base_url: Option<String>,
    /// Key used when the client brings none.
    pub api_key: Option<String>,
    /// Environment variable holding that key.
    pub api_key_env: Option<String>,
    /// Default `api-version` (Azure providers only).
    pub api_version: Option<String>,
    /// `key` from a secret reference instead of `api_key`.
    #[serde(default)]
    pub secret_mappings: Vec<SecretMappingSection>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialSection {
    #[serde(rename = "type")]
    pub kind: String,
    pub key: Option<String>,
    pub key_env: Option<String>,
    pub tenant_id: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_secret_env: Option<String>,
    pub scope: Option<String>,
    pub token_file: Option<String>,
    /// `key` (api_key) or `configurations.azure_entra_client_secret` (entra) from a secret
    /// reference.
    #[serde(default)]
    pub secret_mappings: Vec<SecretMappingSection>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    pub name: String,
    pub path_prefix: String,
    pub host: Option<String>,
    /// The provider of every target that names none.
    pub provider: String,
    /// Required unless every target sets its own.
    pub upstream: Option<String>,
    #[serde(default)]
    pub strip_prefix: bool,
    /// Required unless every target sets its own.
    pub credential: Option<String>,
    /// Portkey's `strategy` object (mode, on_status_codes, conditions, default, cb_config).
    pub strategy: Option<toml::Table>,
    /// Portkey's `retry` object (attempts, on_status_codes, use_retry_after_header).
    pub retry: Option<toml::Table>,
    /// Milliseconds per attempt.
    pub request_timeout: Option<u64>,
    #[serde(default)]
    pub targets: Vec<RouteTargetSection>,
}

/// One target of a route (or of a group of targets): it takes from its parents what it does
/// not set.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTargetSection {
    pub name: Option<String>,
    pub provider: Option<String>,
    pub upstream: Option<String>,
    pub credential: Option<String>,
    pub weight: Option<toml::Value>,
    pub strategy: Option<toml::Table>,
    pub retry: Option<toml::Table>,
    pub request_timeout: Option<u64>,
    pub override_params: Option<toml::Table>,
    #[serde(default)]
    pub targets: Vec<RouteTargetSection>,
}
