use super::*;
use crate::config::{from_str, ClientSecretConfig, Credential};
use crate::credentials::secrets::aws::AwsAuth;
use crate::credentials::secrets::vault::VaultAuth;

fn env() -> Env {
    Env::from_pairs([("VT", "hvs.from-the-environment-1234")])
}

fn load(text: &str) -> Result<crate::config::Config, String> {
    from_str(text, &env()).map_err(|e| e.to_string())
}

const AWS: &str = r#"
[workspaces.team-a]
[workspaces.team-b]
[[secret_references]]
name = "OpenAI production key"
manager_type = "aws_sm"
secret_path = "prod/openai"
secret_key = "api_key"
allowed_workspaces = ["team-a"]
tags = { team = "ml" }
[secret_references.auth_config]
aws_auth_type = "accessKey"
aws_access_key_id = "AKIAIOSFODNN7EXAMPLE"
aws_secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
aws_region = "eu-west-1"
"#;

#[test]
fn a_reference_validates_with_a_generated_slug() {
    let c = load(AWS).unwrap();
    let r = &c.secrets.references[0];
    assert_eq!(&*r.slug, "openai-production-key");
    assert_eq!(r.manager, ManagerType::AwsSm);
    assert_eq!(r.key.as_deref(), Some("api_key"));
    assert!(r.allows("team-a") && !r.allows("team-b"));
    assert_eq!(c.secrets.ttl, Duration::from_secs(300));
    match &r.source {
        SourceConfig::Aws(s) => {
            assert_eq!(s.region.as_deref(), Some("eu-west-1"));
            assert!(matches!(s.auth, AwsAuth::AccessKey { .. }));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn slugs_come_from_names() {
    assert_eq!(
        slug_from_name("OpenAI production key"),
        "openai-production-key"
    );
    assert_eq!(slug_from_name("  Key Vault: SP #2 "), "key-vault-sp-2");
    assert_eq!(slug_from_name("a_b-C"), "a_b-c");
    assert_eq!(slug_from_name("***"), "");
}

#[test]
fn masking_shows_a_truncated_value_per_sensitive_field() {
    assert_eq!(mask("AKIAIOSFODNN7EXAMPLE"), "AKIA****");
    assert_eq!(mask("short"), "****");
    let c = load(AWS).unwrap();
    let shown = c.secrets.references[0].shown.to_string();
    assert!(
        shown.contains(r#""masked_aws_access_key_id":"AKIA****""#),
        "{shown}"
    );
    assert!(
        shown.contains(r#""masked_aws_secret_access_key":"wJal****""#),
        "{shown}"
    );
    assert!(!shown.contains("AKIAIOSFODNN7EXAMPLE") && !shown.contains("EXAMPLEKEY"));
    assert!(shown.contains(r#""aws_region":"eu-west-1""#), "{shown}");
    assert!(!format!("{c:?}").contains("EXAMPLEKEY"));
}

#[test]
fn env_backed_secrets_are_masked_too() {
    let c = load(
        r#"
        [[secret_references]]
        name = "v"
        manager_type = "hashicorp_vault"
        secret_path = "apps/openai"
        auth_config = { vault_addr = "http://127.0.0.1:8200", vault_token_env = "VT", vault_kv_version = 1 }
        "#,
    )
    .unwrap();
    let shown = c.secrets.references[0].shown.to_string();
    assert!(
        shown.contains(r#""masked_vault_token":"hvs.****""#),
        "{shown}"
    );
    assert!(shown.contains(r#""vault_kv_version":1"#), "{shown}");
    assert!(!shown.contains("from-the-environment"));
}

fn err(text: &str) -> String {
    load(text).unwrap_err()
}

fn with(auth: &str, extra: &str) -> String {
    format!(
        "[workspaces.team-a]\n[[secret_references]]\nname = \"r\"\nmanager_type = \"aws_sm\"\nsecret_path = \"p\"\n{extra}\nauth_config = {{ {auth} }}\n"
    )
}

const KEYS: &str = r#"aws_auth_type = "accessKey", aws_access_key_id = "a", aws_secret_access_key = "b", aws_region = "us-east-1""#;

#[test]
fn errors_name_the_reference_and_field() {
    let cases: &[(String, &str)] = &[
        (
            with(KEYS, "slug = \"bad slug\""),
            "secret_references[0] (bad slug).slug",
        ),
        (
            with(
                KEYS,
                "allow_all_workspaces = true\nallowed_workspaces = [\"team-a\"]",
            ),
            "(r).allowed_workspaces",
        ),
        (
            with(KEYS, "allow_all_workspaces = false"),
            "(r).allow_all_workspaces",
        ),
        (
            with(KEYS, "allowed_workspaces = [\"nope\"]"),
            "no [workspaces.nope]",
        ),
        (
            with(KEYS, &format!("description = \"{}\"", "d".repeat(1025))),
            "(r).description",
        ),
        (
            with(
                r#"aws_auth_type = "accessKey", aws_access_key_id = "a", aws_secret_access_key = "b""#,
                "",
            ),
            "(r).auth_config.aws_region",
        ),
        (
            with(r#"aws_auth_type = "assumedRole", aws_region = "x""#, ""),
            "(r).auth_config.aws_role_arn",
        ),
        (
            with(r#"aws_auth_type = "magic""#, ""),
            "unknown aws_auth_type",
        ),
        (
            with(&format!("{KEYS}, vault_token = \"t\""), ""),
            "(r).auth_config.vault_token",
        ),
        (
            with(KEYS, "").replace("aws_sm", "gcp_sm"),
            "unknown manager_type 'gcp_sm'",
        ),
        (
            with(KEYS, "").replace("name = \"r\"", &format!("name = \"{}\"", "n".repeat(256))),
            ".name",
        ),
        (
            with(KEYS, "").replace("name = \"r\"", "name = \"r\"\nslug = \"r\"")
                + &with(KEYS, "").replace("[workspaces.team-a]\n", ""),
            "slugs must be unique",
        ),
    ];
    for (text, needle) in cases {
        let e = err(text);
        assert!(e.contains(needle), "expected '{needle}' in: {e}");
    }
}

#[test]
fn vault_and_key_vault_auth_configs_are_checked() {
    let vault = |a: &str| {
        format!("[[secret_references]]\nname = \"v\"\nmanager_type = \"hashicorp_vault\"\nsecret_path = \"p\"\nauth_config = {{ {a} }}\n")
    };
    assert!(err(&vault(r#"vault_addr = "http://v:8200""#)).contains("needs vault_token"));
    assert!(err(&vault(
        r#"vault_addr = "http://v", vault_token = "t", vault_role_id = "r", vault_secret_id = "s""#
    ))
    .contains("not both"));
    assert!(err(&vault(r#"vault_addr = "v", vault_token = "t""#)).contains("vault_addr"));
    assert!(err(&vault(
        r#"vault_addr = "http://v", vault_token = "t", vault_kv_version = 3"#
    ))
    .contains("1 or 2"));
    let c = load(&vault(r#"vault_addr = "http://v:8200/", vault_role_id = "r", vault_secret_id = "s", vault_namespace = "ns""#)).unwrap();
    match &c.secrets.references[0].source {
        SourceConfig::Vault(s) => {
            assert_eq!(
                (s.mount.as_str(), s.kv_version, s.namespace.as_deref()),
                ("secret", 2, Some("ns"))
            );
            assert!(matches!(&s.auth, VaultAuth::AppRole { mount, .. } if mount == "approle"));
        }
        other => panic!("{other:?}"),
    }
    let kv = |a: &str, path: &str| {
        format!("[[secret_references]]\nname = \"k\"\nmanager_type = \"azure_kv\"\nsecret_path = \"{path}\"\nauth_config = {{ {a} }}\n")
    };
    let entra = r#"azure_vault_url = "https://kv1.vault.azure.net", azure_entra_tenant_id = "t", azure_entra_client_id = "c", azure_entra_client_secret = "s""#;
    assert!(load(&kv(entra, "name/0123")).is_ok());
    assert!(err(&kv(entra, "a/b/c")).contains("(k).secret_path"));
    assert!(err(&kv(
        r#"azure_vault_url = "https://kv1.vault.azure.net""#,
        "n"
    ))
    .contains("azure_entra_tenant_id"));
    assert!(err(&kv(
        r#"azure_vault_url = "https://kv1.vault.azure.net", azure_auth_mode = "psychic""#,
        "n"
    ))
    .contains("unknown azure_auth_mode"));
    let managed = load(&kv(
        r#"azure_vault_url = "https://kv1.vault.azure.net", azure_auth_mode = "managed""#,
        "n",
    ))
    .unwrap();
    match &managed.secrets.references[0].source {
        SourceConfig::KeyVault {
            credential: TokenCredential::Managed { scope, .. },
            ..
        } => {
            assert_eq!(scope.as_deref(), Some(crate::credentials::KEY_VAULT_SCOPE))
        }
        other => panic!("{other:?}"),
    }
}

const VAULT_REF: &str = r#"
[workspaces.team-a]
[workspaces.team-b]
[[secret_references]]
name = "anthropic"
manager_type = "hashicorp_vault"
secret_path = "apps/anthropic"
secret_key = "key"
allowed_workspaces = ["team-a"]
auth_config = { vault_addr = "http://127.0.0.1:8200", vault_token = "t" }
[[secret_references]]
name = "sp"
manager_type = "hashicorp_vault"
secret_path = "apps/sp"
auth_config = { vault_addr = "http://127.0.0.1:8200", vault_token = "t" }
"#;

#[test]
fn mappings_fill_credentials_providers_and_virtual_keys() {
    let c = load(&format!(
        r#"{VAULT_REF}
        [providers.openai]
        secret_mappings = [{{ target_field = "key", secret_reference_id = "sp", secret_key = "openai" }}]
        [credentials.oa]
        type = "api_key"
        secret_mappings = [{{ target_field = "key", secret_reference_id = "anthropic" }}]
        [credentials.az]
        type = "entra"
        tenant_id = "t"
        client_id = "c"
        secret_mappings = [{{ target_field = "azure_entra_client_secret", secret_reference_id = "sp" }}]
        [virtual_keys.vk1]
        workspace = "team-a"
        provider = "anthropic"
        secret_mappings = [{{ target_field = "key", secret_reference_id = "anthropic", secret_key = "other" }}]
        "#
    ))
    .unwrap();
    let use_of = |r: usize, k: Option<&str>| SecretUse {
        reference: r,
        key: k.map(str::to_owned),
    };
    assert_eq!(
        c.providers[&crate::vocab::Provider::OpenAi].key_mapping,
        Some(use_of(1, Some("openai")))
    );
    assert!(
        matches!(&c.credentials["oa"], Credential::MappedKey(u) if *u == use_of(0, Some("key")))
    );
    assert!(matches!(
        &c.credentials["az"],
        Credential::Token(TokenCredential::Entra { secret: ClientSecretConfig::Mapped(u), .. }) if *u == use_of(1, None)
    ));
    assert!(
        matches!(&c.credentials["virtual_keys.vk1"], Credential::MappedKey(u) if *u == use_of(0, Some("other")))
    );
    assert_eq!(
        c.auth.virtual_keys.get("vk1").unwrap().credential,
        "virtual_keys.vk1"
    );
}

#[test]
fn mapping_rules_of_seed_003() {
    let cases = [
        (r#"[credentials.oa]
type = "api_key"
secret_mappings = [{ target_field = "key", secret_reference_id = "sp" }, { target_field = "key", secret_reference_id = "anthropic" }]"#, "mapped twice"),
        (r#"[credentials.oa]
type = "api_key"
secret_mappings = [{ target_field = "key", secret_reference_id = "nope" }]"#, "credentials.oa.secret_mappings[0].secret_reference_id"),
        (r#"[credentials.oa]
type = "api_key"
key = "sk"
secret_mappings = [{ target_field = "key", secret_reference_id = "sp" }]"#, "not both"),
        (r#"[credentials.oa]
type = "api_key"
secret_mappings = [{ target_field = "model_config.x", secret_reference_id = "sp" }]"#, "model_config field"),
        (r#"[credentials.oa]
type = "managed"
secret_mappings = [{ target_field = "client_secret", secret_reference_id = "sp" }]"#, "type managed has no client secret to map"),
        (r#"[virtual_keys.vk2]
workspace = "team-b"
provider = "anthropic"
secret_mappings = [{ target_field = "key", secret_reference_id = "anthropic" }]"#, "not available to workspace 'team-b'"),
        (r#"[credentials.oa]
type = "api_key"
secret_mappings = [{ target_field = "key", secret_reference_id = "anthropic" }]
[virtual_keys.vk2]
workspace = "team-b"
provider = "anthropic"
credential = "oa""#, "[credentials.oa] reads secret reference 'anthropic', which is not available to workspace 'team-b'"),
        (r#"[virtual_keys.vk2]
workspace = "team-a"
provider = "anthropic""#, "virtual_keys.vk2.credential"),
        (r#"[virtual_keys.vk2]
workspace = "team-a"
provider = "anthropic"
secret_mappings = [{ target_field = "model_config.awsSecretAccessKey", secret_reference_id = "sp" }]"#, "cannot be mapped on a virtual key"),
    ];
    for (extra, needle) in cases {
        let e = err(&format!("{VAULT_REF}\n{extra}\n"));
        assert!(e.contains(needle), "expected '{needle}' in: {e}");
    }
}
