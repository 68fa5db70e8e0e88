//! Circuits: when they open and close, and how walks treat open children.

use std::sync::{Arc, Mutex};

use super::*;

const COOLDOWN: Duration = Duration::from_secs(10);

fn cfg(threshold: Option<u32>, percentage: Option<f64>, minimum: u32) -> CbConfig {
    CbConfig {
        failure_threshold: threshold,
        failure_threshold_percentage: percentage,
        minimum_requests: minimum,
        cooldown: COOLDOWN,
        failure_status_codes: RETRY_STATUS_DEFAULT.to_vec(),
    }
}

const S: fn(u64) -> Duration = Duration::from_secs;

#[test]
fn opens_at_the_failure_threshold() {
    let t0 = Instant::now();
    let b = Breaker::new(cfg(Some(3), None, 1));
    assert_eq!(b.record(t0, 500), None);
    assert_eq!(b.record(t0, 200), None);
    assert_eq!(b.record(t0, 400), None, "400 is not a failure");
    assert_eq!(b.record(t0, 408), None, "408 always counts");
    assert_eq!(b.state(t0), CircuitState::Closed);
    assert_eq!(b.record(t0 + S(1), 503), Some(CircuitState::Open));
    assert_eq!(b.state(t0 + S(1)), CircuitState::Open);
    // Outcomes while open are not counted.
    assert_eq!(b.record(t0 + S(2), 500), None);
}

#[test]
fn opens_at_the_percentage_after_minimum_requests() {
    let t0 = Instant::now();
    let b = Breaker::new(cfg(None, Some(50.0), 4));
    assert_eq!(b.record(t0, 200), None);
    assert_eq!(b.record(t0, 500), None);
    assert_eq!(
        b.record(t0, 502),
        None,
        "2 of 3 failed, but fewer than 4 requests"
    );
    assert_eq!(b.record(t0, 200), Some(CircuitState::Open), "2 of 4 = 50%");
    let custom = CbConfig {
        failure_status_codes: vec![418],
        ..cfg(None, Some(100.0), 1)
    };
    let b = Breaker::new(custom);
    assert_eq!(b.record(t0, 500), None, "not a listed failure");
    let b = Breaker::new(CbConfig {
        failure_status_codes: vec![418],
        ..cfg(None, Some(100.0), 1)
    });
    assert_eq!(b.record(t0, 418), Some(CircuitState::Open));
}

#[test]
fn closes_after_cooldown_with_counters_reset() {
    let t0 = Instant::now();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let b = Breaker::with_observer(cfg(Some(2), None, 1), move |s| log.lock().unwrap().push(s));
    b.record(t0, 500);
    assert_eq!(b.record(t0 + S(1), 500), Some(CircuitState::Open));
    let opened = t0 + S(1);
    assert_eq!(
        b.state(opened + COOLDOWN - Duration::from_millis(1)),
        CircuitState::Open
    );
    assert_eq!(b.state(opened + COOLDOWN), CircuitState::Closed);
    assert_eq!(b.state(opened + COOLDOWN), CircuitState::Closed);
    // Fresh counters: one failure does not reach the threshold of 2.
    assert_eq!(b.record(opened + COOLDOWN, 500), None);
    assert_eq!(
        *seen.lock().unwrap(),
        [CircuitState::Open, CircuitState::Closed]
    );
}

#[test]
fn record_after_cooldown_reports_the_close() {
    let t0 = Instant::now();
    let b = Breaker::new(cfg(Some(1), None, 1));
    assert_eq!(b.record(t0, 500), Some(CircuitState::Open));
    assert_eq!(b.record(t0 + COOLDOWN, 200), Some(CircuitState::Closed));
    assert_eq!(b.record(t0 + COOLDOWN, 500), Some(CircuitState::Open));
}

#[test]
fn failures_older_than_a_cooldown_stop_counting() {
    let t0 = Instant::now();
    let b = Breaker::new(cfg(Some(2), None, 1));
    b.record(t0, 500);
    assert_eq!(b.record(t0 + COOLDOWN, 500), None);
    assert_eq!(
        b.record(t0 + COOLDOWN + S(1), 500),
        Some(CircuitState::Open)
    );
}

/// A fallback (or loadbalance) root over `a`, `b` whose circuits open at the first failure.
fn guarded(mode: &str) -> JsonTree {
    let mut t = tree(json!({
        "strategy": {"mode": mode, "cb_config": {"failure_threshold": 1, "cooldown_interval": 10000}},
        "targets": [{"provider": "a"}, {"provider": "b"}]
    }));
    t.attach_breakers(|_, cfg| Arc::new(Breaker::new(cfg.clone())));
    t
}

#[test]
fn attach_breakers_gives_each_child_of_a_cb_group_one() {
    let mut t = tree(json!({
        "strategy": {"mode": "fallback"},
        "targets": [
            {"strategy": {"mode": "loadbalance", "cb_config": {"failure_threshold": 2, "cooldown_interval": 1000}},
             "targets": [{}, {"targets": [{}]}]},
            {}
        ]
    }));
    let mut made = Vec::new();
    t.attach_breakers(|path, cfg| {
        made.push(path.to_owned());
        Arc::new(Breaker::new(cfg.clone()))
    });
    assert_eq!(
        made,
        [
            "config.targets[0].targets[0]",
            "config.targets[0].targets[1]"
        ]
    );
    let listed: Vec<String> = t.breakers().iter().map(|(p, _)| p.to_string()).collect();
    assert_eq!(listed, made);
    assert_eq!(t.breakers()[0].1.config().failure_threshold, Some(2));
    assert!(!t.is_plain());
}

#[test]
fn fallback_skips_open_children_and_resumes_after_cooldown() {
    let t = guarded("fallback");
    let t0 = Instant::now();
    assert_eq!(
        run(&t, t0, |_| status(500)),
        ["config.targets[0]", "config.targets[1]"]
    );
    // Both circuits are open now: the first is tried anyway.
    assert_eq!(first(&t, t0), "config.targets[0]");
    let t = guarded("fallback");
    run(&t, t0, |p| {
        if p == "config.targets[0]" {
            status(500)
        } else {
            ok()
        }
    });
    assert_eq!(first(&t, t0 + S(1)), "config.targets[1]");
    assert_eq!(first(&t, t0 + COOLDOWN), "config.targets[0]");
}

#[test]
fn fallback_moves_past_open_later_children() {
    let mut t = tree(json!({
        "strategy": {"mode": "fallback", "cb_config": {"failure_threshold": 1, "cooldown_interval": 10000}},
        "targets": [{}, {}, {}]
    }));
    t.attach_breakers(|_, cfg| Arc::new(Breaker::new(cfg.clone())));
    let t0 = Instant::now();
    t.breakers()[1].1.record(t0, 500);
    assert_eq!(
        run(&t, t0, |_| status(500)),
        ["config.targets[0]", "config.targets[2]"]
    );
    // Every later child open: the next one is tried anyway.
    let (mut w, _) = Walk::start(&t, &env(), t0, &mut || 0.5).unwrap();
    assert_eq!(
        w.next(&t, status(500), &env(), t0, BASE, 9, &mut || 0.5),
        Next::Fallback { leaf: LeafId(1) }
    );
}

#[test]
fn loadbalance_skips_open_children_unless_all_are_open() {
    let t = guarded("loadbalance");
    let t0 = Instant::now();
    t.breakers()[0].1.record(t0, 500);
    let mut rng = seeded(7);
    for _ in 0..100 {
        let (_, leaf) = Walk::start(&t, &env(), t0, &mut rng).unwrap();
        assert_eq!(leaf, LeafId(1));
    }
    t.breakers()[1].1.record(t0, 500);
    let pick = |r: f64| Walk::start(&t, &env(), t0, &mut || r).unwrap().1;
    assert_eq!((pick(0.1), pick(0.9)), (LeafId(0), LeafId(1)));
}

#[test]
fn circuits_count_the_chain_after_retries_and_in_ancestors() {
    let mut t = tree(json!({
        "strategy": {"mode": "fallback", "cb_config": {"failure_threshold": 1, "cooldown_interval": 10000}},
        "retry": {"attempts": 1},
        "targets": [{"targets": [{}]}, {}]
    }));
    t.attach_breakers(|_, cfg| Arc::new(Breaker::new(cfg.clone())));
    let group = t.breakers()[0].1.clone();
    let t0 = Instant::now();
    let r = &mut || 0.5;
    let (mut w, _) = Walk::start(&t, &env(), t0, r).unwrap();
    assert!(matches!(
        w.next(&t, status(500), &env(), t0, BASE, 9, r),
        Next::Retry { .. }
    ));
    assert_eq!(
        group.state(t0),
        CircuitState::Closed,
        "retried, not yet final"
    );
    assert_eq!(w.next(&t, ok(), &env(), t0, BASE, 9, r), Next::Done);
    assert_eq!(group.state(t0), CircuitState::Closed);
    let (mut w, _) = Walk::start(&t, &env(), t0, r).unwrap();
    w.next(&t, status(500), &env(), t0, BASE, 9, r);
    assert_eq!(
        w.next(&t, status(500), &env(), t0, BASE, 9, r),
        Next::Fallback { leaf: LeafId(1) }
    );
    assert_eq!(
        group.state(t0),
        CircuitState::Open,
        "the group's leaf failed for good"
    );
    // A budget of 0 ends the chain too: it is recorded.
    let t = guarded("fallback");
    let (mut w, _) = Walk::start(&t, &env(), t0, r).unwrap();
    assert_eq!(w.next(&t, status(500), &env(), t0, BASE, 0, r), Next::Done);
    assert_eq!(t.breakers()[0].1.state(t0), CircuitState::Open);
}
