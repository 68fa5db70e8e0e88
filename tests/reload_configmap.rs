//! A Kubernetes ConfigMap mounted as a directory, updated the way the kubelet updates it: the
//! file keyway is given (`keyway.toml`) is a symlink to `..data/keyway.toml`, `..data` a symlink
//! to a timestamped directory; an update writes a new timestamped directory, points a
//! `..data_tmp` symlink at it, renames that over `..data` (one atomic step) and deletes the old
//! directory. Neither `keyway.toml` nor its inode ever changes. keyway must see each swap: a
//! gateway key added by a swap works, a broken swap is refused (the old configuration keeps
//! serving, `keyway_config_last_reload_successful` drops to 0), a fixed one is live again; a
//! renamed Entra credential keeps its token and moves its token gauges to the new name.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::identity::FakeEntra;
use common::{free_port, log_dir, secret, FakeUpstream, Keyway};

const OK: &str = r#"keyway_config_reloads_total{outcome="ok"}"#;
const INVALID: &str = r#"keyway_config_reloads_total{outcome="invalid"}"#;
const GOOD: &str = "keyway_config_last_reload_successful";
const WAIT: Duration = Duration::from_secs(10);

/// A ConfigMap volume as the kubelet lays it out.
struct ConfigMapDir {
    dir: PathBuf,
    generation: u32,
}

impl ConfigMapDir {
    fn new(text: &str) -> ConfigMapDir {
        let dir = log_dir().join(format!("configmap-{}", free_port()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cm = ConfigMapDir { dir, generation: 0 };
        let first = cm.write_generation(text);
        std::os::unix::fs::symlink(&first, cm.dir.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/keyway.toml", cm.dir.join("keyway.toml")).unwrap();
        cm
    }

    /// The path keyway is started with.
    fn file(&self) -> PathBuf {
        self.dir.join("keyway.toml")
    }

    /// A new timestamped directory holding `text`; returns its name.
    fn write_generation(&mut self, text: &str) -> String {
        self.generation += 1;
        let name = format!("..2026_11_30_09_00_00.{:09}", self.generation);
        std::fs::create_dir(self.dir.join(&name)).unwrap();
        std::fs::write(self.dir.join(&name).join("keyway.toml"), text).unwrap();
        name
    }

    /// The kubelet's update: new directory, `..data_tmp` → it, renamed over `..data`, old
    /// directory removed.
    fn update(&mut self, text: &str) {
        let old = std::fs::read_link(self.dir.join("..data")).unwrap();
        let new = self.write_generation(text);
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&new, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
        std::fs::remove_dir_all(self.dir.join(old)).unwrap();
        let file = std::fs::symlink_metadata(self.file()).unwrap();
        assert!(
            file.file_type().is_symlink(),
            "keyway.toml itself is never replaced"
        );
    }
}

/// Waits (bounded) until `series` is exactly `want` (a gauge may have to fall).
async fn wait_for(kw: &Keyway, series: &str, want: f64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = kw.metric(series).await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} is {got}, wanted {want}; log:\n{}",
            kw.log_text()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A chat request through the route with gateway key `key`: the status.
async fn chat(kw: &Keyway, key: &str) -> u16 {
    reqwest::Client::new()
        .post(kw.url("/azure/chat/completions"))
        .header("x-portkey-api-key", key)
        .body("{}")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Enforced posture; `keys` in workspace team-a; one route through the Entra credential `cred`.
fn config(entra: &FakeEntra, up: &FakeUpstream, cred: &str, keys: &[&str], sp: &str) -> String {
    let mut s = format!(
        "[auth]\nmode = \"enforced\"\n[workspaces.team-a]\n[azure]\nauthority_host = \"{}\"\n\
         [credentials.{cred}]\ntype = \"entra\"\ntenant_id = \"tenant-cm\"\nclient_id = \"app-cm\"\nclient_secret = \"{sp}\"\n\
         [[routes]]\nname = \"azure\"\npath_prefix = \"/azure\"\nstrip_prefix = true\nprovider = \"azure-openai\"\nupstream = \"{}\"\ncredential = \"{cred}\"\n",
        entra.authority(),
        up.base()
    );
    for (i, k) in keys.iter().enumerate() {
        s.push_str(&format!(
            "[[api_keys]]\nname = \"k{i}\"\nhash = \"{}\"\nworkspace = \"team-a\"\n",
            keyway::auth::keys::hash_line(k)
        ));
    }
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configmap_symlink_swap_reloads_and_a_broken_one_keeps_the_running_configuration() {
    let entra = FakeEntra::start("tenant-cm").await;
    let sp = secret("entra-secret-configmap-swap");
    entra.add_secret("app-cm", &sp);
    let up = FakeUpstream::start().await;
    let (old, new) = (
        secret("kw-configmap-old-key"),
        secret("kw-configmap-new-key"),
    );
    let mut cm = ConfigMapDir::new(&config(&entra, &up, "aoai", &[&old], &sp));
    let kw = Keyway::start_file(&cm.file()).await;
    assert_eq!(kw.metric("keyway_ready").await, 1.0);
    assert_eq!(kw.metric(GOOD).await, 1.0);
    let lifetime = r#"keyway_token_lifetime_seconds{credential="aoai"}"#;
    let life = kw.metric(lifetime).await;
    assert!((3500.0..=3600.0).contains(&life), "{lifetime} = {life}");
    assert_eq!(chat(&kw, &old).await, 200);
    assert_eq!(chat(&kw, &new).await, 401);

    // A swap adding a key and renaming the credential (same identity).
    cm.update(&config(&entra, &up, "aoai-eu", &[&old, &new], &sp));
    wait_for(&kw, OK, 1.0).await;
    assert_eq!(
        chat(&kw, &new).await,
        200,
        "the key added by the swap works"
    );
    assert!(kw
        .log_text()
        .contains("reload (file changed): configuration"));
    assert_eq!(
        entra.requests().len(),
        1,
        "the renamed credential kept its token"
    );
    wait_for(
        &kw,
        r#"keyway_token_lifetime_seconds{credential="aoai-eu"}"#,
        life,
    )
    .await;
    let text = kw.metrics().await;
    assert!(
        !text.contains(r#"credential="aoai""#),
        "old series gone: {text}"
    );

    // A broken swap: refused, counted, the gauge drops; the running configuration serves.
    let broken = config(&entra, &up, "aoai-eu", &[&old], &sp).replace("[auth]", "[auth]\nmoed = 1");
    cm.update(&broken);
    wait_for(&kw, INVALID, 1.0).await;
    wait_for(&kw, GOOD, 0.0).await;
    assert_eq!(
        chat(&kw, &new).await,
        200,
        "still the previous configuration"
    );
    assert!(kw.log_text().contains("auth.moed"), "{}", kw.log_text());

    // Fixed: live again, the gauge back to 1.
    cm.update(&config(&entra, &up, "aoai-eu", &[&new], &sp));
    wait_for(&kw, OK, 2.0).await;
    wait_for(&kw, GOOD, 1.0).await;
    assert_eq!(chat(&kw, &old).await, 401);
    assert_eq!(chat(&kw, &new).await, 200);
    assert_eq!(up.requests().len(), 4);
}
