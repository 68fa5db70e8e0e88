//! `keyway keys new` through the real binary: the printed key hashes to the printed line, the
//! block is valid config, bad input exits 2.

use std::process::{Command, Output};

use sha2::{Digest, Sha256};

fn keyway(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keyway"))
        .args(args)
        .output()
        .expect("run keyway")
}

/// The key (the one line starting with `kw-`) and the `[[api_keys]]` block.
fn new_key(args: &[&str]) -> (String, String) {
    let out = keyway(&[&["keys", "new"], args].concat());
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let keys: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("kw-"))
        .collect();
    assert_eq!(keys.len(), 1, "the key is printed exactly once: {text}");
    let block = &text[text.find("[[api_keys]]").expect("a block to paste")..];
    (keys[0].to_owned(), block.to_owned())
}

#[test]
fn printed_key_hashes_to_the_printed_line() {
    let (key, block) = new_key(&["--workspace", "team-a", "--role", "admin", "--name", "ci"]);
    assert_eq!(key.len(), 3 + 43, "{key}");
    let hash = format!("sha256:{}", hex::encode(Sha256::digest(key.as_bytes())));
    let doc: toml::Table = toml::from_str(&block).unwrap();
    let entry = &doc["api_keys"].as_array().unwrap()[0];
    assert_eq!(entry["hash"].as_str(), Some(hash.as_str()));
    assert_eq!(entry["name"].as_str(), Some("ci"));
    assert_eq!(entry["workspace"].as_str(), Some("team-a"));
    assert_eq!(entry["role"].as_str(), Some("admin"));
    assert!(!block.contains(&key), "the block must not carry the key");
}

#[test]
fn two_runs_give_two_keys_and_a_default_name() {
    let (a, block) = new_key(&["--workspace", "w", "--role", "member"]);
    let (b, _) = new_key(&["--workspace", "w", "--role", "member"]);
    assert_ne!(a, b);
    assert!(block.contains("name = \"w-member-"), "{block}");
}

#[test]
fn bad_role_or_workspace_exits_2() {
    let out = keyway(&["keys", "new", "--workspace", "w", "--role", "root"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("owner, admin, member"), "{err}");
    assert!(out.stdout.is_empty());
    let out = keyway(&["keys", "new", "--workspace", "a b", "--role", "member"]);
    assert_eq!(out.status.code(), Some(2));
}

/// Without `--workspace`: an organisation key (the first owner of the admin API), whose block
/// has no workspace and is valid as pasted.
#[test]
fn an_organisation_owner_key_has_no_workspace() {
    let (_, block) = new_key(&["--role", "owner", "--name", "ops"]);
    let doc: toml::Table = toml::from_str(&block).unwrap();
    let entry = &doc["api_keys"].as_array().unwrap()[0];
    assert!(entry.get("workspace").is_none(), "{block}");
    assert_eq!(entry["role"].as_str(), Some("owner"));
    let (_, block) = new_key(&["--role", "admin"]);
    assert!(block.contains("name = \"organisation-admin-"), "{block}");
    let file = std::env::temp_dir().join(format!("keyway-org-key-{}.toml", std::process::id()));
    std::fs::write(&file, format!("[auth]\nmode = \"enforced\"\n{block}")).unwrap();
    let out = keyway(&["--config", file.to_str().unwrap(), "--check-config"]);
    let _ = std::fs::remove_file(&file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_config_accepts_the_pasted_block() {
    let (_, block) = new_key(&["--workspace", "team-a", "--role", "member", "--name", "ci"]);
    let dir = std::env::temp_dir().join(format!("keyway-auth-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("keyway.toml");
    let text = format!("[auth]\nmode = \"enforced\"\n\n[workspaces.team-a]\n\n{block}");
    std::fs::write(&file, text).unwrap();
    let out = keyway(&["--config", file.to_str().unwrap(), "--check-config"]);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
