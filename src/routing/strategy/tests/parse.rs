//! Inheritance, defaults and limits of parsed configs.

use super::*;

#[test]
fn cb_config_defaults() {
    let t = tree(json!({
        "strategy": {"mode": "fallback", "cb_config": {
            "failure_threshold_percentage": 50, "cooldown_interval": 30000
        }},
        "targets": [{}]
    }));
    let Kind::Group(g) = &t.node(NodeId(0)).kind else {
        panic!("root is a group")
    };
    let want = CbConfig {
        failure_threshold: None,
        failure_threshold_percentage: Some(50.0),
        minimum_requests: 1,
        cooldown: Duration::from_secs(30),
        failure_status_codes: vec![429, 500, 502, 503, 504],
    };
    assert_eq!(g.cb.as_ref(), Some(&want));
}

#[test]
fn limits_depth_and_size() {
    let mut deep = json!({"provider": "a"});
    for _ in 0..8 {
        deep = json!({"targets": [deep]});
    }
    let t = tree(deep.clone());
    assert_eq!(
        &*t.leaves()[0].path,
        "config.targets[0].targets[0].targets[0].targets[0].targets[0].targets[0].targets[0].targets[0]"
    );
    let too_deep = json!({"targets": [deep]});
    let err = try_tree(too_deep).unwrap_err();
    assert_eq!(err.problem, "targets nest more than 8 levels deep");
    assert_eq!(err.path, format!("config{}", ".targets[0]".repeat(9)));

    let wide: Vec<Value> = (0..255).map(|_| json!({})).collect();
    assert_eq!(tree(json!({"targets": wide})).leaves().len(), 255);
    let wider: Vec<Value> = (0..256).map(|_| json!({})).collect();
    assert_eq!(
        invalid(json!({"targets": wider})),
        "config.targets[255]: the config has more than 256 targets"
    );
}

#[test]
fn leaf_errors_are_wrapped_with_the_leaf_path() {
    let v = json!({"targets": [{"provider": "a"}, {"targets": [{"provider": "x"}]}]});
    let err = parse(&v, &opts(), |_, m| match m["provider"].as_str() {
        Some("x") => Err("provider: unknown".to_owned()),
        _ => Ok(()),
    });
    assert_eq!(
        err.unwrap_err().to_string(),
        "config.targets[1].targets[0]: provider: unknown"
    );
    let route = ParseOptions {
        root_path: "route",
        ..opts()
    };
    let err = parse(&json!({"targets": []}), &route, |_, _| Ok(())).unwrap_err();
    assert_eq!(err.path, "route.targets");
}

#[test]
fn children_inherit_all_but_structural_keys() {
    let t = tree(json!({
        "provider": "openai",
        "apiKey": "k-parent",
        "custom_host": "http://h",
        "name": "root",
        "weight": 3,
        "strategy": {"mode": "fallback"},
        "override_params": {"model": "gpt", "temperature": 0},
        "targets": [
            {"name": "first", "api_key": "k-child", "override_params": {"temperature": 1, "top_p": 0.5}},
            {"overrideParams": {"model": "mini"}, "weight": 2, "targets": [
                {"provider": "azure-openai", "override_params": {"n": 2}}
            ]}
        ]
    }));
    let a = &t.leaves()[0];
    let want_a = json!({
        "provider": "openai",
        "api_key": "k-child",
        "custom_host": "http://h",
        "override_params": {"model": "gpt", "temperature": 1, "top_p": 0.5}
    });
    assert_eq!(Value::Object(a.target.clone()), want_a);
    let overrides = json!({"model": "gpt", "temperature": 1, "top_p": 0.5});
    assert_eq!(
        Value::Object((**a.override_params.as_ref().unwrap()).clone()),
        overrides
    );
    let b = &t.leaves()[1];
    assert_eq!(&*b.path, "config.targets[1].targets[0]");
    let want_b = json!({
        "provider": "azure-openai",
        "api_key": "k-parent",
        "custom_host": "http://h",
        "override_params": {"model": "mini", "temperature": 0, "n": 2}
    });
    assert_eq!(Value::Object(b.target.clone()), want_b);
}

#[test]
fn retry_and_timeout_inherit_and_defaults_apply_where_unset() {
    let v = json!({
        "strategy": {"mode": "fallback"},
        "targets": [
            {"retry": {"attempts": 2, "onStatusCodes": [429], "use_retry_after_headers": true},
             "requestTimeout": 1500,
             "targets": [{}, {"retry": {"attempts": 1}, "request_timeout": 700}]},
            {}
        ]
    });
    let opts = ParseOptions {
        root_path: "config",
        default_retry: Some(RetryPolicy::attempts(4)),
        default_timeout: Some(Duration::from_secs(9)),
    };
    let t = parse(&v, &opts, |_, _| Ok(())).unwrap();
    let inherited = RetryPolicy {
        attempts: 2,
        on_status_codes: vec![429],
        use_retry_after: true,
    };
    let own = RetryPolicy {
        attempts: 1,
        on_status_codes: RETRY_STATUS_DEFAULT.to_vec(),
        use_retry_after: false,
    };
    let leaves = t.leaves();
    assert_eq!(leaves[0].retry, inherited);
    assert_eq!(leaves[0].timeout, Some(Duration::from_millis(1500)));
    assert_eq!(leaves[1].retry, own);
    assert_eq!(leaves[1].timeout, Some(Duration::from_millis(700)));
    assert_eq!(leaves[2].retry, RetryPolicy::attempts(4));
    assert_eq!(leaves[2].timeout, Some(Duration::from_secs(9)));
    let plain = parse(&json!({}), &super::opts(), |_, _| Ok(())).unwrap();
    assert_eq!(plain.leaves()[0].retry, RetryPolicy::default());
    assert_eq!(plain.leaves()[0].timeout, None);
}

#[test]
fn snake_case_spelling_wins_within_one_object() {
    let t = tree(json!({"apiKey": "camel", "api_key": "snake", "virtualKey": "vk"}));
    let want = json!({"api_key": "snake", "virtual_key": "vk"});
    assert_eq!(Value::Object(t.leaves()[0].target.clone()), want);
}

#[test]
fn group_without_strategy_is_single() {
    let t = tree(json!({"targets": [{"provider": "a"}, {"provider": "b"}]}));
    assert_eq!(first(&t, Instant::now()), "config.targets[0]");
    let tried = run(&t, Instant::now(), |_| status(500));
    assert_eq!(tried, ["config.targets[0]"]);
}
