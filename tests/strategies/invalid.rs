//! Every invalid config is refused with 400 naming its JSON path, and nothing is sent.

use serde_json::{json, Value};

use super::common::{FakeUpstream, Keyway};
use super::{openai, send, toml, with, BODY};

#[tokio::test(flavor = "multi_thread")]
async fn invalid_configs_are_400_with_the_path_and_send_nothing() {
    let up = FakeUpstream::start().await;
    let kw = Keyway::start(&toml("", "")).await;
    let t = openai(&up, "sk-strat-invalid");
    let named = |n: &str| with(t.clone(), json!({"name": n}));
    let conditional = |conditions: Value| {
        json!({
            "strategy": {"mode": "conditional", "conditions": conditions, "default": "a"},
            "targets": [named("a"), named("b")],
        })
    };
    // (config, the path the message starts with)
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"strategy": {"mode": "roundrobin"}, "targets": [t, t]}),
            "config.strategy.mode",
        ),
        (
            json!({"strategy": "fallback", "targets": [t, t]}),
            "config.strategy",
        ),
        (
            json!({"strategy": {"mode": "fallback"}, "targets": []}),
            "config.targets",
        ),
        (
            json!({"strategy": {"mode": "fallback"}, "targets": t}),
            "config.targets",
        ),
        (
            json!({"strategy": {"mode": "loadbalance"}, "targets": [t, with(t.clone(), json!({"weight": "heavy"}))]}),
            "config.targets[1].weight",
        ),
        (
            json!({"strategy": {"mode": "loadbalance"}, "targets": [with(t.clone(), json!({"weight": -1})), t]}),
            "config.targets[0].weight",
        ),
        (
            json!({"strategy": {"mode": "fallback"}, "targets": [t, {"strategy": {"mode": "nope"}, "targets": [t]}]}),
            "config.targets[1].strategy.mode",
        ),
        (
            conditional(json!([{"query": {"params.model": {"$foo": "x"}}, "then": "a"}])),
            "config.strategy.conditions[0]",
        ),
        (
            conditional(json!([{"query": {"params.model": {"$regex": "("}}, "then": "a"}])),
            "config.strategy.conditions[0]",
        ),
        (
            conditional(json!([{"query": "tier", "then": "a"}])),
            "config.strategy.conditions[0]",
        ),
        (
            conditional(json!({"query": {"metadata.tier": "pro"}, "then": "a"})),
            "config.strategy.conditions",
        ),
        (
            conditional(json!([{"query": {"metadata.tier": "pro"}, "then": "nobody"}])),
            "config.strategy.conditions[0].then",
        ),
        (
            json!({
                "strategy": {"mode": "conditional", "conditions": [], "default": "nobody"},
                "targets": [named("a")],
            }),
            "config.strategy.default",
        ),
        (
            with(t.clone(), json!({"retry": {"attempts": 9}})),
            "config.retry.attempts",
        ),
        (
            with(
                t.clone(),
                json!({"retry": {"attempts": 2, "on_status_codes": [700]}}),
            ),
            "config.retry.on_status_codes",
        ),
        (
            with(t.clone(), json!({"request_timeout": 0})),
            "config.request_timeout",
        ),
        (
            with(t.clone(), json!({"override_params": "temperature=0"})),
            "config.override_params",
        ),
    ];
    for (cfg, path) in cases {
        let r = send(&kw, &cfg.to_string(), BODY, &[]).await;
        assert_eq!(r.status, 400, "{cfg}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"), "{cfg}");
        let v = r.json();
        assert_eq!(v["status"], "failure", "{cfg}: {v}");
        let msg = v["message"].as_str().unwrap();
        let want = format!("x-portkey-config: {path}");
        assert!(
            msg.starts_with(&want),
            "{cfg}: message {msg:?} does not start with {want:?}"
        );
        assert!(up.requests().is_empty(), "{cfg} was sent upstream");
    }
}
