//! Config errors name the reference and the field.

use super::*;

// ---------------------------------------------------------------------------------------------
// Config errors name the reference (`secret_references[i] (slug)`) and the field.

const OK_VAULT_AUTH: &str =
    "vault_addr = \"http://127.0.0.1:1\"\nvault_token = \"hvs.config-error-token-1\"\n";

/// A vault reference with `lines` before its auth table.
fn vault_ref(slug_line: &str, lines: &str) -> String {
    format!(
        "\n[[secret_references]]\nname = \"a reference\"\n{slug_line}\nmanager_type = \"hashicorp_vault\"\nsecret_path = \"p\"\n{lines}\n[secret_references.auth_config]\n{OK_VAULT_AUTH}"
    )
}

fn assert_error_names(cfg: &str, needles: &[&str]) {
    let err = config_error(cfg, &["hvs.config-error-token-1"]);
    for n in needles {
        assert!(err.contains(n), "{n:?} missing in:\n{err}");
    }
}

#[test]
fn config_error_bad_slug() {
    let cfg = vault_ref("slug = \"bad slug!\"", "");
    assert_error_names(&cfg, &["secret_references[0]", ".slug", "^[a-zA-Z0-9_-]+$"]);
}

#[test]
fn config_error_allow_all_workspaces_with_allowed_workspaces() {
    let cfg = format!(
        "[workspaces.team-a]\n{}",
        vault_ref(
            "slug = \"both-ref\"",
            "allow_all_workspaces = true\nallowed_workspaces = [\"team-a\"]"
        )
    );
    assert_error_names(&cfg, &["secret_references[0] (both-ref).", "allow"]);
    let err = config_error(&cfg, &[]);
    assert!(
        err.contains("allowed_workspaces") || err.contains("allow_all_workspaces"),
        "{err}"
    );
}

#[test]
fn config_error_restricted_without_workspaces() {
    let cfg = vault_ref("slug = \"closed-ref\"", "allow_all_workspaces = false");
    assert_error_names(
        &cfg,
        &["secret_references[0] (closed-ref).", "allowed_workspaces"],
    );
}

#[test]
fn config_error_unknown_allowed_workspace() {
    let cfg = format!(
        "[workspaces.team-a]\n{}",
        vault_ref(
            "slug = \"ghost-ref\"",
            "allowed_workspaces = [\"ghost-team\"]"
        )
    );
    assert_error_names(
        &cfg,
        &[
            "secret_references[0] (ghost-ref).allowed_workspaces",
            "ghost-team",
        ],
    );
}

#[test]
fn config_error_name_too_long() {
    let cfg = vault_ref("slug = \"long-ref\"", "").replace("a reference", &"n".repeat(256));
    assert_error_names(&cfg, &["secret_references[0] (long-ref).name", "255"]);
    // 255 is fine.
    let ok = vault_ref("slug = \"long-ref\"", "").replace("a reference", &"n".repeat(255));
    let (code, out, err) = check_config(&ok, &[]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn config_error_description_too_long() {
    let cfg = vault_ref(
        "slug = \"desc-ref\"",
        &format!("description = \"{}\"", "d".repeat(1025)),
    );
    assert_error_names(&cfg, &["secret_references[0] (desc-ref).description"]);
}

#[test]
fn config_error_unknown_manager_type() {
    let cfg = vault_ref("slug = \"gcp-ref\"", "").replace("hashicorp_vault", "gcp_sm");
    assert_error_names(
        &cfg,
        &["secret_references[0] (gcp-ref).manager_type", "gcp_sm"],
    );
}

#[test]
fn config_error_missing_aws_region_for_access_key() {
    // The second reference, so the index is checked too.
    let cfg = format!(
        "{}\n[[secret_references]]\nname = \"aws\"\nslug = \"aws-ref\"\nmanager_type = \"aws_sm\"\nsecret_path = \"prod/openai\"\n[secret_references.auth_config]\naws_auth_type = \"accessKey\"\naws_access_key_id = \"AKIAKEYWAYSECRETS001\"\naws_secret_access_key = \"aws-secret-in-config-error-1\"\n",
        vault_ref("slug = \"first-ref\"", "")
    );
    assert_error_names(
        &cfg,
        &["secret_references[1] (aws-ref).auth_config.aws_region"],
    );
    let err = config_error(
        &cfg,
        &["aws-secret-in-config-error-1", "AKIAKEYWAYSECRETS001"],
    );
    assert!(!err.contains("first-ref"), "{err}");
}

#[test]
fn config_error_duplicate_slug() {
    let cfg = format!(
        "{}{}",
        vault_ref("slug = \"dup-ref\"", ""),
        vault_ref("slug = \"dup-ref\"", "")
    );
    assert_error_names(&cfg, &["secret_references[1] (dup-ref).slug"]);
}

#[test]
fn config_error_duplicate_target_field() {
    let cfg = format!(
        "{}\n[credentials.openai]\ntype = \"api_key\"\nsecret_mappings = [{{ target_field = \"key\", secret_reference_id = \"one-ref\" }}, {{ target_field = \"key\", secret_reference_id = \"one-ref\" }}]\n",
        vault_ref("slug = \"one-ref\"", "")
    );
    assert_error_names(
        &cfg,
        &["credentials.openai", "secret_mappings", "target_field"],
    );
}

#[test]
fn config_error_mapping_to_an_unknown_slug() {
    let cfg = format!(
        "{}{}",
        vault_ref("slug = \"one-ref\"", ""),
        key_credential("openai", "nope-slug")
    );
    assert_error_names(
        &cfg,
        &["credentials.openai", "secret_mappings", "nope-slug"],
    );
}

#[test]
fn config_error_auth_field_of_another_manager() {
    let cfg = vault_ref("slug = \"mixed-ref\"", "") + "aws_region = \"us-east-1\"\n";
    assert_error_names(
        &cfg,
        &["secret_references[0] (mixed-ref).auth_config.aws_region"],
    );
}
