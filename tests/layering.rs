//! The arrows point one way: a module imports only the layers below it (STYLE.md: proxy → auth,
//! routing → cache → credentials; the runtime builder above them all; the reloader and the
//! control plane above the runtime; the store and the shared vocabulary at the bottom), and
//! Pingora is used only where requests meet the server. Read from the sources themselves (test
//! code left out), so a change that adds an upward import fails here.

use std::path::{Path, PathBuf};

/// Each layer and the crate modules it must not import.
const FORBIDDEN: &[(&str, &[&str])] = &[
    (
        "vocab",
        &[
            "env",
            "secret",
            "store",
            "credentials",
            "metrics",
            "cache",
            "routing",
            "auth",
            "config",
            "control",
            "runtime",
            "proxy",
            "refresh",
            "reload",
            "app",
            "error",
        ],
    ),
    (
        "store",
        &[
            "env",
            "secret",
            "credentials",
            "metrics",
            "cache",
            "routing",
            "auth",
            "config",
            "control",
            "runtime",
            "proxy",
            "refresh",
            "reload",
            "app",
            "error",
        ],
    ),
    (
        "credentials",
        &[
            "store", "metrics", "cache", "routing", "auth", "config", "control", "runtime",
            "proxy", "refresh", "reload", "app", "error",
        ],
    ),
    (
        "metrics",
        &[
            "store", "cache", "routing", "auth", "config", "control", "runtime", "proxy",
            "refresh", "reload", "app", "error",
        ],
    ),
    (
        "cache",
        &[
            "store", "routing", "auth", "config", "control", "runtime", "proxy", "refresh",
            "reload", "app", "error",
        ],
    ),
    (
        "routing",
        &[
            "store", "auth", "config", "control", "runtime", "proxy", "refresh", "reload", "app",
            "error",
        ],
    ),
    (
        "auth",
        &[
            "store", "routing", "config", "control", "runtime", "proxy", "refresh", "reload",
            "app", "error",
        ],
    ),
    (
        "config",
        &[
            "control", "runtime", "proxy", "refresh", "reload", "app", "error",
        ],
    ),
    (
        "runtime",
        &["store", "control", "proxy", "refresh", "reload", "app"],
    ),
    ("refresh", &["control", "proxy", "reload", "app"]),
    ("reload", &["control", "proxy", "refresh", "app"]),
    ("control", &["proxy", "refresh", "app"]),
];

/// Where Pingora (the server framework) may appear.
const PINGORA_ALLOWED: &[&str] = &[
    "proxy",
    "app.rs",
    "error.rs",
    "refresh/mod.rs",
    "reload/watch.rs",
    "main.rs",
];

fn src() -> PathBuf {
    PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()),
    )
    .join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// A file's code, without its test modules and comments: what the product imports.
fn product_code(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    if name == "tests.rs" || name.ends_with("_tests.rs") {
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    let code: Vec<&str> = text
        .lines()
        .take_while(|l| l.trim() != "#[cfg(test)]")
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect();
    Some(code.join("\n"))
}

/// `crate::m` and `use crate::{m, …}` in `code`.
fn imports_module(code: &str, m: &str) -> bool {
    let direct = [
        format!("crate::{m}::"),
        format!("crate::{m};"),
        format!("crate::{m}}}"),
    ];
    if direct.iter().any(|d| code.contains(d.as_str())) {
        return true;
    }
    code.split("crate::{").skip(1).any(|rest| {
        let group = rest.split('}').next().unwrap_or("");
        group
            .split(',')
            .any(|item| item.trim().split("::").next() == Some(m))
    })
}

fn uses_pingora(code: &str) -> bool {
    code.contains("pingora::") || code.contains("use pingora;") || code.contains("use pingora::")
}

#[test]
fn every_arrow_points_down_and_pingora_stays_at_the_edge() {
    let root = src();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(files.len() > 50, "read {} files", files.len());
    let mut wrong = Vec::new();
    for f in &files {
        let rel = f
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let Some(code) = product_code(f) else {
            continue;
        };
        let module = rel.split(['/', '.']).next().unwrap_or("");
        for (layer, forbidden) in FORBIDDEN {
            if *layer != module {
                continue;
            }
            for m in *forbidden {
                if imports_module(&code, m) {
                    wrong.push(format!("{rel} ({layer}) imports crate::{m}"));
                }
            }
        }
        let pingora_ok = PINGORA_ALLOWED
            .iter()
            .any(|a| rel == *a || rel.starts_with(&format!("{a}/")));
        if !pingora_ok && uses_pingora(&code) {
            wrong.push(format!("{rel} uses Pingora"));
        }
    }
    assert!(
        wrong.is_empty(),
        "arrows that point the wrong way:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_checks_can_fail() {
    assert!(imports_module("use crate::routing::Plan;", "routing"));
    assert!(imports_module(
        "use crate::{auth::Caller, routing};",
        "routing"
    ));
    assert!(imports_module(
        "use crate::{\n    cache::x,\n    routing::Plan,\n};",
        "routing"
    ));
    assert!(!imports_module("use crate::routing_extra::X;", "routing"));
    assert!(uses_pingora("use pingora::proxy::Session;"));
    assert!(!uses_pingora(
        "use pingora_prometheus::prometheus::IntGauge;"
    ));
}
