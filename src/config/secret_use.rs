//! A mapped secret value: which reference, which key of it. A leaf, so the credential
//! validation (`identity`) and the secret validation (`secrets`) can both name it.

/// One mapped value: which reference, which key of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretUse {
    /// Index into `SecretsSettings::references`.
    pub reference: usize,
    pub key: Option<String>,
}
