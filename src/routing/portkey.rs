//! The `x-portkey-config` JSON (WIRE.md §1): parsed into a strategy tree (`strategy::parse`),
//! whose leaves are read leniently (Portkey configs carry many keys keyway does not act on) but
//! with both spellings of the Azure fields (snake_case on the wire, camelCase in seed 000).
//! Every leaf has already inherited what its ancestors set.

use serde::Deserialize;

use std::sync::Arc;

use super::strategy::{self, ParseOptions, Tree};
use super::url::BaseUrl;
use super::{FixedHost, RouteError};

#[derive(Debug, Default, Clone, Deserialize)]
pub struct PortkeyConfig {
    pub provider: Option<String>,
    #[serde(alias = "apiKey")]
    pub api_key: Option<String>,
    #[serde(alias = "virtualKey")]
    pub virtual_key: Option<String>,
    #[serde(alias = "resourceName")]
    pub resource_name: Option<String>,
    #[serde(alias = "deploymentId")]
    pub deployment_id: Option<String>,
    #[serde(alias = "apiVersion")]
    pub api_version: Option<String>,
    #[serde(alias = "azureAuthMode")]
    pub azure_auth_mode: Option<String>,
    #[serde(alias = "azureAdToken")]
    pub azure_ad_token: Option<String>,
    #[serde(alias = "customHost")]
    pub custom_host: Option<String>,
    #[serde(alias = "awsRegion")]
    pub aws_region: Option<String>,
    #[serde(alias = "azureEntraTenantId")]
    pub azure_entra_tenant_id: Option<String>,
    #[serde(alias = "azureEntraClientId")]
    pub azure_entra_client_id: Option<String>,
    #[serde(alias = "azureEntraClientSecret")]
    pub azure_entra_client_secret: Option<String>,
    #[serde(alias = "azureEntraScope")]
    pub azure_entra_scope: Option<String>,
    #[serde(alias = "azureManagedClientId")]
    pub azure_managed_client_id: Option<String>,
    #[serde(alias = "azureWorkloadClientId")]
    pub azure_workload_client_id: Option<String>,
    /// `custom_host` parsed and checked, once: a config's targets live as long as the runtime
    /// that parsed them (stored configs, the cache of inline ones).
    #[serde(skip)]
    pub parsed_custom_host: std::sync::OnceLock<Result<Arc<CustomHost>, RouteError>>,
}

/// A custom host: where it is, whether its resolved addresses must be checked (it is not a
/// trusted host), and its `Host` header.
#[derive(Debug)]
pub struct CustomHost {
    pub base: BaseUrl,
    pub check: bool,
    pub fixed: FixedHost,
}

/// Parses the header value (or a stored config's text) into its strategy tree. The error says
/// what is wrong without echoing the value, which may carry keys.
pub fn parse_config(raw: &str, opts: &ParseOptions<'_>) -> Result<Tree<PortkeyConfig>, String> {
    let trimmed = raw.trim_start();
    if !trimmed.starts_with('{') {
        return Err("must be a JSON object or a stored config's slug".into());
    }
    let value: serde_json::Value = serde_json::from_str(trimmed).map_err(|e| {
        format!(
            "is not valid config JSON ({} at line {} column {})",
            classify(&e),
            e.line(),
            e.column()
        )
    })?;
    strategy::parse(&value, opts, |_, merged| {
        PortkeyConfig::deserialize(merged).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => "a field has the wrong type".to_owned(),
            _ => "is not a valid target".to_owned(),
        })
    })
    .map_err(|e| e.to_string())
}

/// `parse_config` with no request headers to apply: stored configs and validation.
pub fn parse_stored(raw: &str) -> Result<Tree<PortkeyConfig>, String> {
    parse_config(
        raw,
        &ParseOptions {
            root_path: "config",
            default_retry: None,
            default_timeout: None,
        },
    )
}

/// Every virtual key a config's targets name.
pub fn virtual_keys(tree: &Tree<PortkeyConfig>) -> Vec<&str> {
    let mut out: Vec<&str> = tree
        .leaves()
        .iter()
        .filter_map(|l| l.target.virtual_key.as_deref())
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// serde_json's messages quote the offending input for some errors; keep only the category.
fn classify(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Eof => "unexpected end of input",
        serde_json::error::Category::Data => "a field has the wrong type",
        serde_json::error::Category::Io => "read error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(raw: &str) -> PortkeyConfig {
        parse_stored(raw).unwrap().leaves()[0].target.clone()
    }

    #[test]
    fn accepts_both_spellings() {
        let c = first(
            r#"{"provider":"azure-openai","resourceName":"r","deployment_id":"d","azureAuthMode":"apiKey","apiKey":"k"}"#,
        );
        assert_eq!(c.resource_name.as_deref(), Some("r"));
        assert_eq!(c.deployment_id.as_deref(), Some("d"));
        assert_eq!(c.azure_auth_mode.as_deref(), Some("apiKey"));
        assert_eq!(c.api_key.as_deref(), Some("k"));
    }

    #[test]
    fn nested_targets_inherit_from_their_parents() {
        let t = parse_stored(
            r#"{"strategy":{"mode":"fallback"},"request_timeout":1000,"targets":[
                 {"provider":"azure-openai","resource_name":"r","targets":[{"deployment_id":"d1"},{"deployment_id":"d2"}]},
                 {"provider":"openai","virtual_key":"vk-b"}]}"#,
        )
        .unwrap();
        let l = &t.leaves()[0];
        assert_eq!(l.target.provider.as_deref(), Some("azure-openai"));
        assert_eq!(l.target.resource_name.as_deref(), Some("r"));
        assert_eq!(l.target.deployment_id.as_deref(), Some("d1"));
        assert_eq!(l.timeout, Some(std::time::Duration::from_millis(1000)));
        assert_eq!(&*l.path, "config.targets[0].targets[0]");
        assert_eq!(virtual_keys(&t), vec!["vk-b"]);
    }

    #[test]
    fn errors_do_not_echo_the_value() {
        let e = parse_stored(r#"{"api_key":"sk-secret-123"#).unwrap_err();
        assert!(!e.contains("sk-secret"), "{e}");
        let e = parse_stored(r#"{"api_key": 12}"#).unwrap_err();
        assert!(e.contains("wrong type"), "{e}");
        assert!(!e.contains("12"), "{e}");
        assert!(parse_stored("pc-stored-123").is_err());
    }
}
