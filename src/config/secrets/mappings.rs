//! Secret mappings (seed 003): which field of a credential (`configurations.<field>`), a
//! virtual key (`model_config.<field>`) or either (`key`) is filled from which reference. Checks
//! the seed's rules: known targets, no duplicates, an existing reference, workspace access.

use std::collections::BTreeMap;

use super::SecretsSettings;
use crate::config::schema::secrets::SecretMappingSection;
use crate::config::{invalid, ConfigError};

pub use crate::config::secret_use::SecretUse;

/// Who carries the mappings; picks the field prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    /// `[credentials.*]` and `[providers.*]` (Portkey's integrations).
    Integration,
    VirtualKey,
}

impl Entity {
    fn prefix(self) -> &'static str {
        match self {
            Entity::Integration => "configurations.",
            Entity::VirtualKey => "model_config.",
        }
    }
}

/// Validates `raw` for an entity at `path`; `workspace` is the entity's workspace when it has
/// one. Returns the mappings by normalized target field.
pub fn mappings(
    path: &str,
    entity: Entity,
    raw: Vec<SecretMappingSection>,
    secrets: &SecretsSettings,
    workspace: Option<&str>,
) -> Result<BTreeMap<String, SecretUse>, ConfigError> {
    let mut out = BTreeMap::new();
    for (j, m) in raw.into_iter().enumerate() {
        let at = |f: &str| format!("{path}.secret_mappings[{j}].{f}");
        let target =
            normalize(entity, m.target_field.trim()).map_err(|e| invalid(at("target_field"), e))?;
        let reference = secrets.by_slug(&m.secret_reference_id).ok_or_else(|| {
            invalid(
                at("secret_reference_id"),
                format!(
                    "no [[secret_references]] with slug '{}'",
                    m.secret_reference_id
                ),
            )
        })?;
        let r = &secrets.references[reference];
        if let Some(w) = workspace {
            if !r.allows(w) {
                return Err(invalid(
                    at("secret_reference_id"),
                    format!(
                        "secret reference '{}' is not available to workspace '{w}'; add it to allowed_workspaces",
                        r.slug
                    ),
                ));
            }
        }
        let key = match m.secret_key {
            Some(k) if k.is_empty() => return Err(invalid(at("secret_key"), "is empty")),
            Some(k) => Some(k),
            None => r.key.clone(),
        };
        if out.contains_key(&target) {
            return Err(invalid(
                at("target_field"),
                format!("'{target}' is mapped twice; target fields must be unique"),
            ));
        }
        out.insert(target, SecretUse { reference, key });
    }
    Ok(out)
}

fn normalize(entity: Entity, target: &str) -> Result<String, String> {
    let other = match entity {
        Entity::Integration => Entity::VirtualKey,
        Entity::VirtualKey => Entity::Integration,
    };
    if target.is_empty() {
        return Err("is empty".into());
    }
    if target == "key" {
        return Ok(target.into());
    }
    if target.starts_with(other.prefix()) {
        return Err(format!(
            "'{target}' is a {} field; use '{}<field>' or 'key' here",
            other.prefix().trim_end_matches('.'),
            entity.prefix()
        ));
    }
    let field = target.strip_prefix(entity.prefix()).unwrap_or(target);
    if field.is_empty()
        || !field
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(format!("'{target}' does not name a field"));
    }
    Ok(format!("{}{field}", entity.prefix()))
}

/// Takes the mapping of one of `names` out of `map`.
pub fn take(map: &mut BTreeMap<String, SecretUse>, names: &[&str]) -> Option<SecretUse> {
    names.iter().find_map(|n| map.remove(*n))
}

/// Fails on whatever mapping is left: its target is not a field this entity can take.
pub fn none_left(
    path: &str,
    map: &BTreeMap<String, SecretUse>,
    what: &str,
    allowed: &str,
) -> Result<(), ConfigError> {
    match map.keys().next() {
        Some(t) => Err(invalid(
            format!("{path}.secret_mappings"),
            format!("target_field '{t}' cannot be mapped on {what} (mappable: {allowed})"),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_added_and_checked() {
        assert_eq!(normalize(Entity::Integration, "key").unwrap(), "key");
        assert_eq!(
            normalize(Entity::Integration, "azure_entra_client_secret").unwrap(),
            "configurations.azure_entra_client_secret"
        );
        assert_eq!(
            normalize(Entity::Integration, "configurations.x").unwrap(),
            "configurations.x"
        );
        assert_eq!(
            normalize(Entity::VirtualKey, "awsSecretAccessKey").unwrap(),
            "model_config.awsSecretAccessKey"
        );
        assert!(normalize(Entity::Integration, "model_config.x").is_err());
        assert!(normalize(Entity::VirtualKey, "configurations.x").is_err());
        assert!(normalize(Entity::Integration, "configurations.").is_err());
        assert!(normalize(Entity::Integration, "a.b").is_err());
        assert!(normalize(Entity::Integration, "").is_err());
    }
}
