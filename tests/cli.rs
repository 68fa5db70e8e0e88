//! The command line: `--check-config` validates (exit 0) or names the fault (exit non-zero),
//! the shipped examples in conf/ stay valid, and flags override the file.

mod common;

use std::process::Command;

use common::{free_port, log_dir};

fn keyway(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_keyway"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// The default build's jemalloc runs with keyway's settings (src/main.rs), and the environment
/// can still override each of them.
#[cfg(all(feature = "jemalloc", not(feature = "mimalloc")))]
#[test]
fn jemalloc_runs_with_keyways_settings() {
    // `stats_print` makes jemalloc print its options when the process exits.
    let (code, out) = keyway(&["--version"], &[("_RJEM_MALLOC_CONF", "stats_print:true")]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("opt.tcache_max: 131072\n"), "{out}");
    assert!(out.contains("opt.tcache_gc_incr_bytes: 4194304\n"), "{out}");
    let env = [("_RJEM_MALLOC_CONF", "stats_print:true,tcache_max:32768")];
    let (code, out) = keyway(&["--version"], &env);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("opt.tcache_max: 32768\n"), "{out}");
    assert!(out.contains("opt.tcache_gc_incr_bytes: 4194304\n"), "{out}");
}

#[test]
fn shipped_examples_are_valid() {
    // Read at run time: a test binary built from another checkout sharing the target directory
    // must still read this checkout.
    let dir = format!(
        "{}/conf",
        std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned())
    );
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let env = [
                ("AZURE_OPENAI_KEY", "a"),
                ("ANTHROPIC_KEY", "b"),
                ("OPENAI_API_KEY", "c"),
                ("AZURE_CLIENT_SECRET", "d"),
                ("VAULT_SECRET_ID", "e"),
            ];
            let (code, out) = keyway(
                &["--check-config", "--config", path.to_str().unwrap()],
                &env,
            );
            assert_eq!(code, 0, "{}: {out}", path.display());
            assert!(out.contains("config OK"), "{out}");
            n += 1;
        }
    }
    assert!(n >= 5, "expected the conf/ examples, found {n}");
}

#[test]
fn check_config_names_the_fault_and_fails() {
    let path = log_dir().join(format!("bad-{}.toml", free_port()));
    std::fs::write(
        &path,
        "[providers.openai]\nbase_url = \"https://x\"\napi_kee = \"k\"\n",
    )
    .unwrap();
    let (code, out) = keyway(&["--check-config", "--config", path.to_str().unwrap()], &[]);
    assert_ne!(code, 0);
    assert!(
        out.contains("providers.openai") && out.contains("api_kee"),
        "{out}"
    );

    let (code, out) = keyway(
        &["--check-config", "--config", "/nonexistent/keyway.toml"],
        &[],
    );
    assert_ne!(code, 0);
    assert!(out.contains("/nonexistent/keyway.toml"), "{out}");

    let (code, out) = keyway(&["--check-config", "--listen", "not-an-address"], &[]);
    assert_ne!(code, 0);
    assert!(out.contains("--listen"), "{out}");
    let (code, out) = keyway(&["--check-config", "--threads", "0"], &[]);
    assert_ne!(code, 0);
    assert!(out.contains("--threads"), "{out}");
}

#[test]
fn flags_override_the_file_and_no_config_means_defaults() {
    let (code, out) = keyway(&["--check-config"], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("listen 127.0.0.1:8787, metrics 127.0.0.1:9787"),
        "{out}"
    );
    let path = log_dir().join(format!("ok-{}.toml", free_port()));
    std::fs::write(&path, "listen = \"127.0.0.1:1\"\nthreads = 3\n").unwrap();
    let (code, out) = keyway(
        &[
            "--check-config",
            "--config",
            path.to_str().unwrap(),
            "--listen",
            "127.0.0.1:2",
            "--metrics-listen",
            "127.0.0.1:3",
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("listen 127.0.0.1:2, metrics 127.0.0.1:3, 3 thread(s)"),
        "{out}"
    );
}
