//! Invalid configs: every error names the JSON path of the offending value.

use super::*;

#[test]
fn invalid_structure_names_the_path() {
    let cases = [
        (json!([]), "config: must be a JSON object"),
        (
            json!({"targets": []}),
            "config.targets: must be a non-empty array of target objects",
        ),
        (
            json!({"targets": {"provider": "a"}}),
            "config.targets: must be a non-empty array of target objects",
        ),
        (
            json!({"targets": [{"provider": "a"}, "b"]}),
            "config.targets[1]: must be a JSON object",
        ),
        (
            json!({"strategy": "fallback", "targets": [{}]}),
            "config.strategy: must be an object {\"mode\": ...}",
        ),
        (
            json!({"strategy": {"mode": "roundrobin"}, "targets": [{}]}),
            "config.strategy.mode: must be one of single, fallback, loadbalance, conditional",
        ),
        (
            json!({"strategy": {}, "targets": [{}]}),
            "config.strategy.mode: must be one of single, fallback, loadbalance, conditional",
        ),
        (
            json!({"targets": [{"targets": [{"name": 3}]}]}),
            "config.targets[0].targets[0].name: must be a string",
        ),
    ];
    for (config, want) in cases {
        assert_eq!(invalid(config), want);
    }
}

#[test]
fn invalid_weights() {
    let lb = |weights: Value| {
        let targets: Vec<Value> = weights
            .as_array()
            .unwrap()
            .iter()
            .map(|w| json!({"weight": w}))
            .collect();
        json!({"strategy": {"mode": "loadbalance"}, "targets": targets})
    };
    let bad = "config.targets[2].weight: must be a number >= 0";
    assert_eq!(invalid(lb(json!([1, 1, -1]))), bad);
    assert_eq!(invalid(lb(json!([1, 1, "2"]))), bad);
    assert_eq!(invalid(lb(json!([1, 1, null]))), bad);
    assert_eq!(
        invalid(lb(json!([0, 0.0]))),
        "config.targets: every weight is 0; give at least one target a weight above 0"
    );
    assert!(try_tree(lb(json!([0, 0.5]))).is_ok());
}

#[test]
fn invalid_retry_timeout_and_overrides() {
    let attempts = "must be an integer from 0 to 5";
    let codes = "must be an array of HTTP status codes (integers 100 to 599)";
    let cases = [
        (
            json!({"retry": {"attempts": 6}}),
            format!("config.retry.attempts: {attempts}"),
        ),
        (
            json!({"retry": {"attempts": 1.5}}),
            format!("config.retry.attempts: {attempts}"),
        ),
        (
            json!({"retry": {"attempts": "2"}}),
            format!("config.retry.attempts: {attempts}"),
        ),
        (
            json!({"retry": {}}),
            format!("config.retry.attempts: {attempts}"),
        ),
        (
            json!({"retry": 3}),
            "config.retry: must be an object {attempts, on_status_codes}".to_owned(),
        ),
        (
            json!({"targets": [{"retry": {"attempts": 1, "on_status_codes": 500}}]}),
            format!("config.targets[0].retry.on_status_codes: {codes}"),
        ),
        (
            json!({"retry": {"attempts": 1, "onStatusCodes": [500, 600]}}),
            format!("config.retry.onStatusCodes: {codes}"),
        ),
        (
            json!({"retry": {"attempts": 1, "use_retry_after_header": "yes"}}),
            "config.retry.use_retry_after_header: must be true or false".to_owned(),
        ),
        (
            json!({"strategy": {"mode": "fallback", "on_status_codes": [99]}, "targets": [{}]}),
            format!("config.strategy.on_status_codes: {codes}"),
        ),
        (
            json!({"request_timeout": 0}),
            "config.request_timeout: must be a positive integer (milliseconds)".to_owned(),
        ),
        (
            json!({"targets": [{"requestTimeout": -5}]}),
            "config.targets[0].requestTimeout: must be a positive integer (milliseconds)"
                .to_owned(),
        ),
        (
            json!({"targets": [{}, {"override_params": [1]}]}),
            "config.targets[1].override_params: must be a JSON object".to_owned(),
        ),
    ];
    for (config, want) in cases {
        assert_eq!(invalid(config), want);
    }
}

#[test]
fn invalid_conditions() {
    let cond = |strategy: Value| {
        let mut s = json!({"mode": "conditional"});
        s.as_object_mut()
            .unwrap()
            .extend(strategy.as_object().unwrap().clone());
        json!({"strategy": s, "targets": [{"name": "a"}, {"name": "b"}]})
    };
    let q = |query: Value| cond(json!({"conditions": [{"query": query, "then": "a"}]}));
    let at = "config.strategy.conditions[0]";
    let cases = [
        (
            cond(json!({})),
            "config.strategy.conditions: must be an array of {\"query\": {...}, \"then\": \"<name>\"}"
                .to_owned(),
        ),
        (
            cond(json!({"conditions": {"query": {}}})),
            "config.strategy.conditions: must be an array of {\"query\": {...}, \"then\": \"<name>\"}"
                .to_owned(),
        ),
        (
            cond(json!({"conditions": ["a"]})),
            format!("{at}: must be an object {{query, then}}"),
        ),
        (
            cond(json!({"conditions": [{"then": "a"}]})),
            format!("{at}.query: must be a query object"),
        ),
        (
            cond(json!({"conditions": [{"query": {"metadata.x": 1}, "then": "c"}]})),
            format!("{at}.then: no target of this group is named \"c\""),
        ),
        (
            cond(json!({"conditions": [{"query": {"metadata.x": 1}, "then": 1}]})),
            format!("{at}.then: must be a target's name (a string)"),
        ),
        (
            cond(json!({"conditions": [], "default": "z"})),
            "config.strategy.default: no target of this group is named \"z\"".to_owned(),
        ),
        (
            q(json!({"metadata.tier": {"$like": "x"}})),
            format!(
                "{at}.query.metadata.tier.$like: unknown operator; use one of \
                 $eq, $ne, $gt, $gte, $lt, $lte, $in, $nin, $regex"
            ),
        ),
        (
            q(json!({"metadata.tier": {"$regex": "(unclosed"}})),
            format!(
                "{at}.query.metadata.tier.$regex: is not a valid regular expression \
                 (Rust regex syntax: no look-around or backreferences)"
            ),
        ),
        (
            q(json!({"metadata.tier": {"$regex": "(?:a{1000}){1000}"}})),
            format!("{at}.query.metadata.tier.$regex: is too large once compiled; simplify it"),
        ),
        (
            q(json!({"metadata.tier": {"$regex": 5}})),
            format!("{at}.query.metadata.tier.$regex: must be a string pattern"),
        ),
        (
            q(json!({"metadata.tier": {"$in": "pro"}})),
            format!("{at}.query.metadata.tier.$in: must be an array of values"),
        ),
        (
            q(json!({"params.n": {"$gt": "many"}})),
            format!("{at}.query.params.n.$gt: must be a number (or a numeric string)"),
        ),
        (
            q(json!({"$or": {"metadata.a": 1}})),
            format!("{at}.query.$or: must be an array of query objects"),
        ),
        (
            q(json!({"$and": [{"metadata.a": 1}, 2]})),
            format!("{at}.query.$and[1]: must be a query object"),
        ),
        (
            q(json!({"$xor": []})),
            format!(
                "{at}.query.$xor: unknown logical operator; use $and or $or, or a key such as \
                 metadata.<name>"
            ),
        ),
        (
            q(json!({"headers.x": "y"})),
            format!(
                "{at}.query.headers.x: a query key is metadata.<name>, params.<name>[.<name>...] \
                 or url.pathname"
            ),
        ),
        (
            q(json!({"params.a..b": 1})),
            format!("{at}.query.params.a..b: has an empty segment in the key"),
        ),
    ];
    for (config, want) in cases {
        assert_eq!(invalid(config), want);
    }
    let dup = json!({
        "strategy": {"mode": "conditional", "conditions": [], "default": "a"},
        "targets": [{"name": "a"}, {"name": "a"}]
    });
    assert_eq!(
        invalid(dup),
        "config.targets[1].name: \"a\" is taken by an earlier target; names must be unique"
    );
}

#[test]
fn invalid_cb_config() {
    let cb = |c: Value| json!({"strategy": {"mode": "fallback", "cb_config": c}, "targets": [{}]});
    let at = "config.strategy.cb_config";
    let cases = [
        (cb(json!(5)), format!("{at}: must be an object")),
        (
            cb(json!({"cooldown_interval": 5000})),
            format!("{at}: give failure_threshold or failure_threshold_percentage (or both)"),
        ),
        (
            cb(json!({"failure_threshold": 3})),
            format!(
                "{at}.cooldown_interval: is required: milliseconds a tripped circuit stays \
                 open, at least 1000"
            ),
        ),
        (
            cb(json!({"failure_threshold": 3, "cooldown_interval": 999})),
            format!("{at}.cooldown_interval: must be an integer >= 1000"),
        ),
        (
            cb(json!({"failure_threshold": 0, "cooldown_interval": 5000})),
            format!("{at}.failure_threshold: must be an integer >= 1"),
        ),
        (
            cb(json!({"failure_threshold_percentage": 0, "cooldown_interval": 5000})),
            format!("{at}.failure_threshold_percentage: must be a number above 0 and at most 100"),
        ),
        (
            cb(json!({"failure_threshold_percentage": 100.5, "cooldown_interval": 5000})),
            format!("{at}.failure_threshold_percentage: must be a number above 0 and at most 100"),
        ),
        (
            cb(json!({"failure_threshold": 1, "cooldown_interval": 5000, "minimum_requests": 0})),
            format!("{at}.minimum_requests: must be an integer >= 1"),
        ),
        (
            cb(
                json!({"failure_threshold": 1, "cooldown_interval": 5000, "failure_status_codes": [1]}),
            ),
            format!(
                "{at}.failure_status_codes: must be an array of HTTP status codes (integers 100 \
                 to 599)"
            ),
        ),
    ];
    for (config, want) in cases {
        assert_eq!(invalid(config), want);
    }
}

#[test]
fn errors_never_echo_values() {
    let secret = "sk-live-secret";
    let configs = [
        json!({"api_key": secret, "strategy": {"mode": secret}, "targets": [{}]}),
        json!({"api_key": secret, "request_timeout": secret}),
        json!({"retry": {"attempts": secret}}),
        json!({"override_params": secret}),
        json!({"strategy": {"mode": "loadbalance"}, "targets": [{"weight": secret}]}),
        json!({"strategy": {"mode": "conditional", "conditions": [
            {"query": {"metadata.k": {"$regex": format!("{secret}(")}}, "then": "a"}
        ]}, "targets": [{"name": "a"}]}),
        json!({"strategy": {"mode": "conditional", "conditions": [
            {"query": {"params.n": {"$gt": secret}}, "then": "a"}
        ]}, "targets": [{"name": "a"}]}),
    ];
    for c in configs {
        let e = invalid(c);
        assert!(!e.contains(secret), "{e}");
    }
}
