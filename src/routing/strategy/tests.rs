//! Unit tests of the strategies, one file per concern; the helpers here build trees whose leaf
//! targets are their merged JSON objects, and drive walks with a fixed clock and a seeded rng.

mod breaker;
mod conditions;
mod invalid;
mod parse;
mod retry;
mod walk;

use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use super::*;

type JsonTree = Tree<Map<String, Value>>;

const BASE: Duration = Duration::from_millis(100);

fn opts() -> ParseOptions<'static> {
    ParseOptions {
        root_path: "config",
        default_retry: None,
        default_timeout: None,
    }
}

fn try_tree(v: Value) -> Result<JsonTree, StrategyError> {
    parse(&v, &opts(), |_, merged| Ok(merged.clone()))
}

fn tree(v: Value) -> JsonTree {
    try_tree(v).unwrap()
}

/// The error text of an invalid config.
fn invalid(v: Value) -> String {
    try_tree(v).unwrap_err().to_string()
}

fn env() -> Env<'static> {
    Env {
        metadata: None,
        params: None,
        pathname: "/v1/chat/completions",
    }
}

fn ok() -> Outcome {
    status(200)
}

fn status(code: u16) -> Outcome {
    Outcome::Status {
        code,
        retry_after: None,
    }
}

fn path(t: &JsonTree, leaf: LeafId) -> &str {
    &t.leaf(leaf).path
}

/// A deterministic uniform [0, 1) source (xorshift64*).
fn seeded(seed: u64) -> impl FnMut() -> f64 {
    let mut x = seed.max(1);
    move || {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (r >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The first leaf's path, for a walk started with the default env at `now`.
fn first(t: &JsonTree, now: Instant) -> String {
    let (_, leaf) = Walk::start(t, &env(), now, &mut || 0.5).unwrap();
    path(t, leaf).to_owned()
}

/// Runs a walk where the leaf at path `p` answers `answers(p)` until it is done; returns the
/// paths attempted, in order.
fn run(t: &JsonTree, now: Instant, answers: impl Fn(&str) -> Outcome) -> Vec<String> {
    let (mut walk, leaf) = Walk::start(t, &env(), now, &mut || 0.5).unwrap();
    let mut tried = vec![path(t, leaf).to_owned()];
    loop {
        let outcome = answers(tried.last().unwrap());
        match walk.next(t, outcome, &env(), now, BASE, 16, &mut || 0.5) {
            Next::Retry { leaf, .. } | Next::Fallback { leaf } => {
                tried.push(path(t, leaf).to_owned())
            }
            Next::Done => return tried,
        }
    }
}

#[test]
fn outcome_codes_of_failures_without_an_answer() {
    assert_eq!(Outcome::Timeout.code(), 408);
    assert_eq!(Outcome::ConnectError.code(), 503);
    assert_eq!(Outcome::Error.code(), 502);
    assert_eq!(status(429).code(), 429);
}

#[test]
fn single_tree_is_its_own_root() {
    let retry = RetryPolicy::attempts(2);
    let t = Tree::single("up", "route", retry.clone(), Some(Duration::from_secs(5)));
    assert_eq!(t.leaves().len(), 1);
    assert_eq!(&*t.leaf(LeafId(0)).path, "route");
    assert_eq!(t.leaf(LeafId(0)).retry, retry);
    assert_eq!(t.max_attempts(), 3);
    assert!(!t.is_plain());
    let (mut walk, leaf) = Walk::start(&t, &env(), Instant::now(), &mut || 0.5).unwrap();
    assert_eq!(leaf, LeafId(0));
    let next = walk.next(&t, ok(), &env(), Instant::now(), BASE, 4, &mut || 0.5);
    assert_eq!(next, Next::Done);
    assert!(Tree::single("up", "route", RetryPolicy::default(), None).is_plain());
}

#[test]
fn tree_accessors() {
    let t = tree(json!({
        "strategy": {"mode": "fallback"},
        "retry": {"attempts": 2},
        "targets": [
            {"provider": "a"},
            {"provider": "b", "retry": {"attempts": 0}, "override_params": {"model": "m"}},
            {"provider": "c"}
        ]
    }));
    assert_eq!(t.max_attempts(), 3 + 1 + 3);
    assert!(t.has_overrides());
    assert!(!t.reads_params());
    assert!(!t.is_plain());
    let mapped = t
        .try_map(|p, m| Ok::<_, ()>(format!("{p}={}", m["provider"])))
        .unwrap();
    let names: Vec<&str> = mapped.leaves().iter().map(|l| l.target.as_str()).collect();
    assert_eq!(
        names,
        [
            "config.targets[0]=\"a\"",
            "config.targets[1]=\"b\"",
            "config.targets[2]=\"c\""
        ]
    );
    let failed = tree(json!({"targets": [{"x": 1}, {"x": 2}]})).try_map(|p, _| {
        if p.ends_with("[1]") {
            Err(p.to_owned())
        } else {
            Ok(1)
        }
    });
    assert_eq!(failed.unwrap_err(), "config.targets[1]");
    let swapped = mapped.with_targets(vec![1, 2, 3]);
    assert_eq!(swapped.leaf(LeafId(2)).target, 3);
    assert_eq!(&*swapped.leaf(LeafId(2)).path, "config.targets[2]");
}

#[test]
fn plain_only_for_one_unconditional_attempt() {
    assert!(tree(json!({"provider": "a"})).is_plain());
    // Any `targets` runs the strategy (its answers carry the strategy headers).
    assert!(!tree(json!({"targets": [{"provider": "a"}]})).is_plain());
    assert!(!tree(json!({"provider": "a", "retry": {"attempts": 1}})).is_plain());
    assert!(!tree(json!({"provider": "a", "override_params": {"x": 1}})).is_plain());
    assert!(!tree(json!({"targets": [{"x": 1}, {"x": 2}]})).is_plain());
    let conditional = tree(json!({
        "strategy": {"mode": "conditional", "conditions": [
            {"query": {"metadata.a": "b"}, "then": "a"}
        ]},
        "targets": [{"name": "a"}]
    }));
    assert!(!conditional.is_plain());
}
