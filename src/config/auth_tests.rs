use std::time::{Duration, SystemTime};

use serde::Deserialize;

use super::*;
use crate::auth::keys::hash_line;

/// The four sections as `FileConfig` will hold them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    #[serde(default)]
    auth: AuthSection,
    #[serde(default)]
    workspaces: BTreeMap<String, WorkspaceSection>,
    #[serde(default)]
    api_keys: Vec<ApiKeySection>,
    #[serde(default)]
    virtual_keys: BTreeMap<String, VirtualKeySection>,
}

fn parse(text: &str) -> Result<Doc, String> {
    let de = toml::Deserializer::parse(text).map_err(|e| e.to_string())?;
    serde_path_to_error::deserialize(de)
        .map_err(|e| format!("{}: {}", e.path(), e.inner().message()))
}

fn load(text: &str) -> Result<AuthSettings, String> {
    let d = parse(text)?;
    let mut creds: BTreeMap<String, Credential> = ["az", "oa"]
        .into_iter()
        .map(|n| {
            (
                n.to_owned(),
                Credential::ApiKey(crate::secret::Secret::new("k")),
            )
        })
        .collect();
    let secrets = crate::config::secrets::SecretsSettings::empty();
    validate(
        &d.auth,
        d.workspaces,
        d.api_keys,
        d.virtual_keys,
        &mut creds,
        &secrets,
    )
    .map_err(|e| e.to_string())
}

fn base(extra: &str) -> String {
    format!(
        r#"
        [auth]
        mode = "enforced"
        [workspaces.team-a]
        allowed_providers = ["openai", "azure-openai", "mistral"]
        [workspaces.team-b]
        [virtual_keys.vk-a]
        workspace = "team-a"
        provider = "azure-openai"
        credential = "az"
        resource_name = "res"
        deployment_id = "gpt4o"
        api_version = "2024-10-21"
        allowed_models = ["gpt-4o"]
        [[api_keys]]
        name = "ci"
        hash = "{}"
        workspace = "team-a"
        role = "admin"
        expires_at = "2030-01-01T00:00:00+01:00"
        virtual_key = "vk-a"
        {extra}
        "#,
        hash_line("kw-ci")
    )
}

#[test]
fn a_full_example_validates() {
    let s = load(&base("")).unwrap();
    assert_eq!(s.mode, AuthMode::Enforced);
    let m = s.keys.authenticate("kw-ci", SystemTime::now()).unwrap();
    assert_eq!((&*m.name, m.caller.role), ("ci", Role::Admin));
    let exp = SystemTime::UNIX_EPOCH + Duration::from_secs(1_893_452_400);
    assert!(s.keys.authenticate("kw-ci", exp).is_err());
    assert!(s
        .keys
        .authenticate("kw-ci", exp - Duration::from_secs(1))
        .is_ok());
    let ws = s.workspaces.get("team-a").unwrap();
    assert!(ws
        .allowed_providers
        .as_ref()
        .unwrap()
        .contains(&"mistral-ai".to_owned()));
    assert_eq!(s.virtual_keys.get("vk-a").unwrap().credential, "az");
}

#[test]
fn defaults_are_open_and_empty() {
    let s = load("").unwrap();
    assert_eq!(s.mode, AuthMode::Open);
    assert!(s.keys.is_empty());
}

fn err(text: &str) -> String {
    load(text).unwrap_err()
}

/// A second key in team-a unless `fields` names another workspace.
fn key(fields: &str) -> String {
    let ws = match fields.contains("workspace =") {
        true => "",
        false => "workspace = \"team-a\"",
    };
    format!(
        "[[api_keys]]\nname = \"k2\"\nhash = \"{}\"\n{ws}\n{fields}\n",
        hash_line("kw-2")
    )
}

#[test]
fn unknown_fields_name_their_path() {
    assert!(err("[auth]\nmod = \"open\"\n").contains("auth.mod"));
    let e = err(&base("scope = \"x\""));
    assert!(e.contains("api_keys[0]") && e.contains("scope"), "{e}");
    assert!(err("[workspaces.a]\nmodels = []\n").contains("workspaces.a"));
}

#[test]
fn mode_role_and_slug_errors_name_their_path() {
    let cases = [
        ("[auth]\nmode = \"strict\"\n", "auth.mode"),
        ("[auth]\nmode = \"enforced\"\n", "auth.mode"),
        ("[workspaces.\"team a\"]\n", "workspaces.team a"),
        (&base(&key("role = \"root\"")), "api_keys[1].role"),
        (
            &base(&key("expires_at = \"tomorrow\"")),
            "api_keys[1].expires_at",
        ),
        (
            &base(&key("allowed_models = []")),
            "api_keys[1].allowed_models",
        ),
        (
            &base(&key("allowed_providers = [\"nope\"]")),
            "api_keys[1].allowed_providers",
        ),
        (
            &base(&key("allowed_providers = []")),
            "api_keys[1].allowed_providers",
        ),
    ];
    for (text, path) in cases {
        let e = err(text);
        assert!(e.contains(path), "{path}: {e}");
    }
}

#[test]
fn hashes_names_and_references_are_checked() {
    let h = hash_line("kw-2");
    let e = err(&base(&format!(
        "[[api_keys]]\nname = \"ci\"\nhash = \"{h}\"\nworkspace = \"team-a\""
    )));
    assert!(
        e.contains("api_keys[1].name") && e.contains("api_keys[0]"),
        "{e}"
    );
    let dup = hash_line("kw-ci");
    let e = err(&base(&format!(
        "[[api_keys]]\nname = \"x\"\nhash = \"{dup}\"\nworkspace = \"team-a\""
    )));
    assert!(
        e.contains("api_keys[1].hash") && !e.contains(&dup[7..]),
        "{e}"
    );
    let e = err(&base(&format!(
        "[[api_keys]]\nname = \"x\"\nhash = \"{}\"\nworkspace = \"team-a\"",
        h.to_uppercase()
    )));
    assert!(
        e.contains("api_keys[1].hash") && e.contains("lowercase"),
        "{e}"
    );
    assert!(err(&base(&key("workspace = \"nope\""))).contains("no [workspaces.nope]"));
    let e = err(&base(&key("virtual_key = \"vk-zz\"")));
    assert!(
        e.contains("api_keys[1].virtual_key") && e.contains("vk-zz"),
        "{e}"
    );
}

#[test]
fn key_workspace_must_match_its_virtual_key() {
    let other = format!(
        "[[api_keys]]\nname = \"b\"\nhash = \"{}\"\nworkspace = \"team-b\"\nvirtual_key = \"vk-a\"\n",
        hash_line("kw-b")
    );
    let e = err(&base(&other));
    assert!(
        e.contains("api_keys[1].virtual_key") && e.contains("team-a"),
        "{e}"
    );
    let e = err(&base(&key(
        "virtual_key = \"vk-a\"\nallowed_providers = [\"openai\"]",
    )));
    assert!(e.contains("allowed_providers excludes"), "{e}");
}

#[test]
fn virtual_keys_are_checked() {
    let vk = |fields: &str| {
        format!("[workspaces.w]\n[virtual_keys.v]\nworkspace = \"w\"\nprovider = \"openai\"\ncredential = \"oa\"\n{fields}\n")
    };
    assert!(load(&vk("")).is_ok());
    let cases = [
        (
            vk("").replace("credential = \"oa\"", "credential = \"gone\""),
            "virtual_keys.v.credential",
        ),
        (
            vk("").replace("provider = \"openai\"", "provider = \"nope\""),
            "virtual_keys.v.provider",
        ),
        (
            vk("").replace("workspace = \"w\"\nprovider", "workspace = \"x\"\nprovider"),
            "virtual_keys.v.workspace",
        ),
        (vk("deployment_id = \"d\""), "virtual_keys.v.deployment_id"),
        (vk("allowed_models = []"), "virtual_keys.v.allowed_models"),
        (
            vk("").replace("[virtual_keys.v]", "[virtual_keys.\"v.1\"]"),
            "virtual_keys.v.1",
        ),
    ];
    for (text, path) in cases {
        let e = err(&text);
        assert!(e.contains(path), "{path}: {e}");
    }
}

#[test]
fn enforced_mode_may_rely_on_jwt_alone() {
    let s =
        load("[auth]\nmode = \"enforced\"\n[[auth.jwt]]\nheader = \"Authorization\"\n").unwrap();
    assert_eq!(s.mode, AuthMode::Enforced);
    let e = err("[[auth.jwt]]\nheadr = \"x\"\n");
    assert!(e.contains("auth.jwt[0]") && e.contains("headr"), "{e}");
}
