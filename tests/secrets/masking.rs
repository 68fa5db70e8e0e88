//! Masking of sensitive auth_config fields in `--check-config`.

use super::*;

// ---------------------------------------------------------------------------------------------
// Masking in `--check-config`: `masked_<field>` = first 4 characters + "****" (12+ characters),
// never the value.

/// A valid reference (slug `masked-ref`) of `manager` whose auth_config is `auth` (raw TOML).
fn masked_config(manager: &str, auth: &str) -> String {
    format!(
        "[[secret_references]]\nname = \"Masked\"\nslug = \"masked-ref\"\nmanager_type = \"{manager}\"\nsecret_path = \"prod/openai\"\n[secret_references.auth_config]\n{auth}\n"
    )
}

const AWS_KEYS: &str = "aws_auth_type = \"accessKey\"\naws_region = \"us-east-1\"\naws_access_key_id = \"AKIAKEYWAYSECRETS001\"\naws_secret_access_key = \"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\"\n";
const AWS_ROLE: &str = "aws_auth_type = \"assumedRole\"\naws_region = \"us-east-1\"\naws_role_arn = \"arn:aws:iam::123456789012:role/keyway-secrets\"\naws_external_id = \"external-id-for-keyway-42\"\n";
const KV_ENTRA: &str = "azure_vault_url = \"https://myvault.vault.azure.net\"\nazure_auth_mode = \"entra\"\nazure_entra_tenant_id = \"t\"\nazure_entra_client_id = \"c\"\nazure_entra_client_secret = \"kv-entra-client-secret-masked\"\n";
const VAULT_TOKEN: &str =
    "vault_addr = \"http://127.0.0.1:1\"\nvault_token = \"hvs.masked-vault-token-value\"\n";
const VAULT_APPROLE: &str = "vault_addr = \"http://127.0.0.1:1\"\nvault_role_id = \"role-masked\"\nvault_secret_id = \"approle-secret-id-masked-value\"\n";

fn assert_masked(manager: &str, auth: &str, field: &str, value: &str, env: &[(&str, &str)]) {
    secret(value);
    let (code, out, err) = check_config(&masked_config(manager, auth), env);
    assert_eq!(code, 0, "{out}{err}");
    let all = format!("{out}{err}");
    assert!(
        !all.contains(value),
        "the whole {field} was printed:\n{all}"
    );
    let shown = shown_reference(&out, "masked-ref");
    let expected = match value.chars().count() {
        n if n >= 12 => format!("{}****", value.chars().take(4).collect::<String>()),
        _ => "****".to_owned(),
    };
    assert_eq!(
        find_key(&shown, &format!("masked_{field}")),
        Some(&json!(expected)),
        "{shown}"
    );
    assert!(
        find_key(&shown, field).is_none(),
        "{field} shown unmasked: {shown}"
    );
    assert_eq!(shown["manager_type"], manager, "{shown}");
    assert_eq!(shown["secret_path"], "prod/openai", "{shown}");
}

#[test]
fn check_config_masks_aws_secret_access_key() {
    assert_masked(
        "aws_sm",
        AWS_KEYS,
        "aws_secret_access_key",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        &[],
    );
}

#[test]
fn check_config_masks_aws_access_key_id() {
    assert_masked(
        "aws_sm",
        AWS_KEYS,
        "aws_access_key_id",
        "AKIAKEYWAYSECRETS001",
        &[],
    );
}

#[test]
fn check_config_masks_aws_role_arn() {
    assert_masked(
        "aws_sm",
        AWS_ROLE,
        "aws_role_arn",
        "arn:aws:iam::123456789012:role/keyway-secrets",
        &[],
    );
}

#[test]
fn check_config_masks_aws_external_id() {
    assert_masked(
        "aws_sm",
        AWS_ROLE,
        "aws_external_id",
        "external-id-for-keyway-42",
        &[],
    );
}

#[test]
fn check_config_masks_azure_entra_client_secret() {
    assert_masked(
        "azure_kv",
        KV_ENTRA,
        "azure_entra_client_secret",
        "kv-entra-client-secret-masked",
        &[],
    );
}

#[test]
fn check_config_masks_vault_token() {
    assert_masked(
        "hashicorp_vault",
        VAULT_TOKEN,
        "vault_token",
        "hvs.masked-vault-token-value",
        &[],
    );
}

#[test]
fn check_config_masks_vault_secret_id() {
    assert_masked(
        "hashicorp_vault",
        VAULT_APPROLE,
        "vault_secret_id",
        "approle-secret-id-masked-value",
        &[],
    );
}

#[test]
fn check_config_masks_short_values_entirely() {
    let auth = "vault_addr = \"http://127.0.0.1:1\"\nvault_token = \"hvs.short\"\n";
    assert_masked("hashicorp_vault", auth, "vault_token", "hvs.short", &[]);
}

#[test]
fn check_config_masks_values_read_from_the_environment() {
    let auth =
        "vault_addr = \"http://127.0.0.1:1\"\nvault_token_env = \"KW_TEST_SECRETS_VAULT_TOKEN\"\n";
    let value = "hvs.vault-token-from-the-env";
    assert_masked(
        "hashicorp_vault",
        auth,
        "vault_token",
        value,
        &[("KW_TEST_SECRETS_VAULT_TOKEN", value)],
    );
}

#[test]
fn check_config_shows_every_reference_and_makes_slugs_from_names() {
    let cfg = format!(
        "[workspaces.team-a]\n[[secret_references]]\nname = \"OpenAI Production Key\"\ndescription = \"the prod key\"\nmanager_type = \"hashicorp_vault\"\nsecret_path = \"prod/openai\"\nsecret_key = \"api_key\"\nallowed_workspaces = [\"team-a\"]\ntags = {{ team = \"ml\" }}\n[secret_references.auth_config]\n{VAULT_TOKEN}\n{}{}",
        masked_config("azure_kv", KV_ENTRA),
        key_credential("openai", "openai-production-key")
    );
    secret("hvs.masked-vault-token-value");
    secret("kv-entra-client-secret-masked");
    let (code, out, err) = check_config(&cfg, &[]);
    assert_eq!(code, 0, "{out}{err}");
    let shown = shown_reference(&out, "openai-production-key");
    assert_eq!(shown["name"], "OpenAI Production Key", "{shown}");
    assert_eq!(shown["secret_key"], "api_key", "{shown}");
    assert_eq!(
        find_key(&shown, "allowed_workspaces"),
        Some(&json!(["team-a"])),
        "{shown}"
    );
    assert_eq!(
        find_key(&shown, "masked_vault_token"),
        Some(&json!("hvs.****")),
        "{shown}"
    );
    assert_eq!(
        find_key(&shown, "vault_addr"),
        Some(&json!("http://127.0.0.1:1")),
        "{shown}"
    );
    let kv = shown_reference(&out, "masked-ref");
    assert_eq!(
        find_key(&kv, "azure_entra_client_id"),
        Some(&json!("c")),
        "{kv}"
    );
    assert!(
        !out.contains("hvs.masked-vault-token-value")
            && !out.contains("kv-entra-client-secret-masked")
    );
}

#[test]
fn check_config_accepts_every_spelling_of_the_entra_secret_target() {
    let vault = "vault_addr = \"http://127.0.0.1:1\"\nvault_token = \"hvs.spelling-token-12345\"\n";
    let mut cfg = masked_config("hashicorp_vault", vault);
    for (name, target) in [
        ("a", "azure_entra_client_secret"),
        ("b", "configurations.azure_entra_client_secret"),
        ("c", "client_secret"),
    ] {
        cfg.push_str(&format!(
            "\n[credentials.{name}]\ntype = \"entra\"\ntenant_id = \"t\"\nclient_id = \"c\"\nsecret_mappings = [{{ target_field = \"{target}\", secret_reference_id = \"masked-ref\" }}]\n"
        ));
    }
    let (code, out, err) = check_config(&cfg, &[]);
    assert_eq!(code, 0, "{out}{err}");
}
