//! Fallback, load balancing and the attempt budget.

use super::*;

fn fallback(strategy: Value, n: usize) -> JsonTree {
    let targets: Vec<Value> = (0..n)
        .map(|i| json!({"provider": format!("p{i}")}))
        .collect();
    tree(json!({"strategy": strategy, "targets": targets}))
}

#[test]
fn fallback_without_codes_goes_on_after_any_non_2xx() {
    let t = fallback(json!({"mode": "fallback"}), 3);
    let now = Instant::now();
    let tried = run(&t, now, |p| match p {
        "config.targets[0]" => status(400),
        "config.targets[1]" => Outcome::Timeout,
        _ => ok(),
    });
    assert_eq!(
        tried,
        [
            "config.targets[0]",
            "config.targets[1]",
            "config.targets[2]"
        ]
    );
    assert_eq!(run(&t, now, |_| status(204)), ["config.targets[0]"]);
    // The last child's answer stands.
    assert_eq!(run(&t, now, |_| status(500)).len(), 3);
}

#[test]
fn fallback_with_codes_goes_on_only_for_them() {
    let t = fallback(
        json!({"mode": "fallback", "on_status_codes": [429, 503]}),
        3,
    );
    let now = Instant::now();
    assert_eq!(run(&t, now, |_| status(500)), ["config.targets[0]"]);
    let tried = run(&t, now, |p| match p {
        "config.targets[0]" => status(429),
        "config.targets[1]" => Outcome::ConnectError,
        _ => status(400),
    });
    assert_eq!(
        tried,
        [
            "config.targets[0]",
            "config.targets[1]",
            "config.targets[2]"
        ]
    );
    // A listed 2xx goes on too.
    let odd = fallback(json!({"mode": "fallback", "onStatusCodes": [200]}), 2);
    assert_eq!(run(&odd, now, |_| ok()).len(), 2);
}

#[test]
fn fallback_counts_and_resets_retries() {
    let t = tree(json!({
        "strategy": {"mode": "fallback"},
        "retry": {"attempts": 1},
        "targets": [{}, {}]
    }));
    let now = Instant::now();
    let (mut w, _) = Walk::start(&t, &env(), now, &mut || 0.5).unwrap();
    let r = &mut || 0.5;
    let next = w.next(&t, status(500), &env(), now, BASE, 10, r);
    assert!(matches!(
        next,
        Next::Retry {
            leaf: LeafId(0),
            ..
        }
    ));
    assert_eq!((w.retries(), w.fallbacks()), (1, 0));
    let next = w.next(&t, status(500), &env(), now, BASE, 10, r);
    assert_eq!(next, Next::Fallback { leaf: LeafId(1) });
    assert_eq!((w.retries(), w.fallbacks(), w.current()), (0, 1, LeafId(1)));
}

#[test]
fn nested_fallback_inner_codes_stop_it_and_outer_continues() {
    let t = tree(json!({
        "strategy": {"mode": "fallback"},
        "targets": [
            {"strategy": {"mode": "fallback", "on_status_codes": [429]}, "targets": [{}, {}]},
            {}
        ]
    }));
    let now = Instant::now();
    let a = "config.targets[0].targets[0]";
    let b = "config.targets[0].targets[1]";
    let c = "config.targets[1]";
    assert_eq!(
        run(&t, now, |p| if p == c { ok() } else { status(500) }),
        [a, c]
    );
    assert_eq!(
        run(&t, now, |p| if p == a { status(429) } else { ok() }),
        [a, b]
    );
    assert_eq!(
        run(&t, now, |p| if p == a { status(429) } else { status(502) }),
        [a, b, c]
    );
    assert_eq!(run(&t, now, |_| ok()), [a]);
}

#[test]
fn single_and_loadbalance_do_not_fail_over() {
    let single = fallback(json!({"mode": "single"}), 3);
    assert_eq!(
        run(&single, Instant::now(), |_| status(500)),
        ["config.targets[0]"]
    );
    let lb = fallback(json!({"mode": "loadbalance"}), 3);
    assert_eq!(run(&lb, Instant::now(), |_| status(500)).len(), 1);
}

#[test]
fn loadbalance_splits_by_weight() {
    let t = tree(json!({
        "strategy": {"mode": "loadbalance"},
        "targets": [{"weight": 1}, {"weight": 0}, {"weight": 3}, {"weight": 0.0}]
    }));
    let mut rng = seeded(0x5eed);
    let now = Instant::now();
    let mut counts = [0u32; 4];
    for _ in 0..10_000 {
        let (_, leaf) = Walk::start(&t, &env(), now, &mut rng).unwrap();
        counts[leaf.0 as usize] += 1;
    }
    assert_eq!(
        counts[1] + counts[3],
        0,
        "weight 0 is never chosen: {counts:?}"
    );
    // Expected 2500 / 7500; sd ~43, so ±200 is beyond 4.5 sd.
    assert!((2300..=2700).contains(&counts[0]), "{counts:?}");
    assert_eq!(counts[0] + counts[2], 10_000);
}

#[test]
fn loadbalance_pick_edges() {
    let t = tree(json!({
        "strategy": {"mode": "loadbalance"},
        "targets": [{"weight": 1}, {"weight": 1}, {"weight": 0}]
    }));
    let pick = |r: f64| {
        Walk::start(&t, &env(), Instant::now(), &mut || r)
            .unwrap()
            .1
    };
    assert_eq!(pick(0.0), LeafId(0));
    assert_eq!(pick(0.4999), LeafId(0));
    assert_eq!(pick(0.5), LeafId(1));
    assert_eq!(pick(0.999_999), LeafId(1));
    assert_eq!(pick(1.0), LeafId(1));
    assert_eq!(pick(7.0), LeafId(1));
}

#[test]
fn fallback_into_groups_descends_them() {
    let t = tree(json!({
        "strategy": {"mode": "fallback"},
        "targets": [
            {},
            {"strategy": {"mode": "loadbalance"}, "targets": [{"weight": 0}, {"weight": 1}]},
            {}
        ]
    }));
    let tried = run(&t, Instant::now(), |p| {
        if p == "config.targets[0]" {
            status(503)
        } else {
            status(500)
        }
    });
    assert_eq!(
        tried,
        [
            "config.targets[0]",
            "config.targets[1].targets[1]",
            "config.targets[2]"
        ]
    );
}

#[test]
fn conditional_with_no_match_mid_walk_ends_the_walk() {
    let t = tree(json!({
        "strategy": {"mode": "fallback"},
        "targets": [
            {},
            {"strategy": {"mode": "conditional", "conditions": [
                {"query": {"metadata.x": "y"}, "then": "a"}
            ]}, "targets": [{"name": "a"}]},
            {}
        ]
    }));
    assert_eq!(
        run(&t, Instant::now(), |_| status(500)),
        ["config.targets[0]"]
    );
}

#[test]
fn budget_exhaustion_stops_retries_and_fallbacks() {
    let t = tree(json!({
        "strategy": {"mode": "fallback"},
        "retry": {"attempts": 3},
        "targets": [{}, {}]
    }));
    assert_eq!(t.max_attempts(), 8);
    let now = Instant::now();
    let r = &mut || 0.5;
    let (mut w, _) = Walk::start(&t, &env(), now, r).unwrap();
    assert_eq!(w.next(&t, status(500), &env(), now, BASE, 0, r), Next::Done);
    let (mut w, _) = Walk::start(&t, &env(), now, r).unwrap();
    let next = w.next(&t, status(500), &env(), now, BASE, 1, r);
    assert!(matches!(next, Next::Retry { .. }));
    // Retries used up on the first leaf, then the budget allows one fallback.
    let (mut w, _) = Walk::start(&t, &env(), now, r).unwrap();
    for _ in 0..3 {
        let next = w.next(&t, status(500), &env(), now, BASE, 5, r);
        assert!(matches!(
            next,
            Next::Retry {
                leaf: LeafId(0),
                ..
            }
        ));
    }
    assert_eq!(
        w.next(&t, status(500), &env(), now, BASE, 1, r),
        Next::Fallback { leaf: LeafId(1) }
    );
    assert_eq!(w.next(&t, status(500), &env(), now, BASE, 0, r), Next::Done);
}
