//! The `x-portkey-config` JSON (WIRE.md §1): parsed leniently (Portkey configs carry many keys
//! keyway does not act on) but with both spellings of the Azure fields (snake_case on the wire,
//! camelCase in seed 000). Nested `targets` resolve to the first leaf, inheriting unset fields
//! from their parents.

use serde::Deserialize;

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
    #[serde(alias = "requestTimeout")]
    pub request_timeout: Option<u64>,
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
    #[serde(default)]
    pub targets: Vec<PortkeyConfig>,
}

impl PortkeyConfig {
    /// Parses the header value. The error says what is wrong without echoing the value, which
    /// may carry keys.
    pub fn parse(raw: &str) -> Result<PortkeyConfig, String> {
        let trimmed = raw.trim_start();
        if !trimmed.starts_with('{') {
            return Err("must be a JSON object or a stored config's slug".into());
        }
        serde_json::from_str(trimmed).map_err(|e| {
            format!(
                "is not valid config JSON ({} at line {} column {})",
                classify(&e),
                e.line(),
                e.column()
            )
        })
    }

    /// Every virtual key the config names, at any depth.
    pub fn virtual_keys(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self.virtual_key.as_deref().into_iter().collect();
        for t in &self.targets {
            out.extend(t.virtual_keys());
        }
        out
    }

    /// The first leaf target, with unset fields inherited from its ancestors.
    pub fn first_target(mut self) -> PortkeyConfig {
        while !self.targets.is_empty() {
            let mut child = self.targets.swap_remove(0);
            child.inherit(&self);
            self = child;
        }
        self
    }

    fn inherit(&mut self, parent: &PortkeyConfig) {
        macro_rules! take {
            ($($f:ident),*) => { $( if self.$f.is_none() { self.$f = parent.$f.clone(); } )* };
        }
        take!(
            provider,
            api_key,
            virtual_key,
            resource_name,
            deployment_id,
            api_version,
            azure_auth_mode,
            azure_ad_token,
            custom_host,
            request_timeout,
            aws_region,
            azure_entra_tenant_id,
            azure_entra_client_id,
            azure_entra_client_secret,
            azure_entra_scope,
            azure_managed_client_id,
            azure_workload_client_id
        );
    }
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

    #[test]
    fn accepts_both_spellings() {
        let c = PortkeyConfig::parse(
            r#"{"provider":"azure-openai","resourceName":"r","deployment_id":"d","azureAuthMode":"apiKey","apiKey":"k"}"#,
        )
        .unwrap();
        assert_eq!(c.resource_name.as_deref(), Some("r"));
        assert_eq!(c.deployment_id.as_deref(), Some("d"));
        assert_eq!(c.azure_auth_mode.as_deref(), Some("apiKey"));
        assert_eq!(c.api_key.as_deref(), Some("k"));
    }

    #[test]
    fn nested_targets_resolve_to_first_leaf_with_inheritance() {
        let c = PortkeyConfig::parse(
            r#"{"strategy":{"mode":"fallback"},"request_timeout":1000,"targets":[
                 {"provider":"azure-openai","resource_name":"r","targets":[{"deployment_id":"d1"},{"deployment_id":"d2"}]},
                 {"provider":"openai"}]}"#,
        )
        .unwrap()
        .first_target();
        assert_eq!(c.provider.as_deref(), Some("azure-openai"));
        assert_eq!(c.resource_name.as_deref(), Some("r"));
        assert_eq!(c.deployment_id.as_deref(), Some("d1"));
        assert_eq!(c.request_timeout, Some(1000));
    }

    #[test]
    fn errors_do_not_echo_the_value() {
        let e = PortkeyConfig::parse(r#"{"api_key":"sk-secret-123"#).unwrap_err();
        assert!(!e.contains("sk-secret"), "{e}");
        let e = PortkeyConfig::parse(r#"{"api_key": 12}"#).unwrap_err();
        assert!(e.contains("wrong type"), "{e}");
        assert!(PortkeyConfig::parse("pc-stored-123").is_err());
    }
}
