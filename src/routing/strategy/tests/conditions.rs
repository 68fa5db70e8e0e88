//! Conditional routing: query operators against metadata, params and the URL path.

use super::*;

/// A conditional root over targets named `free`, `pro`, `big` (paths targets[0..3]) with
/// `conditions`, and `default` when given.
fn conditional(conditions: Value, default: Option<&str>) -> JsonTree {
    let mut strategy = json!({"mode": "conditional", "conditions": conditions});
    if let Some(d) = default {
        strategy["default"] = json!(d);
    }
    tree(json!({
        "strategy": strategy,
        "targets": [{"name": "free"}, {"name": "pro"}, {"name": "big"}]
    }))
}

/// The name of the target chosen for `metadata` and `params`, or the error.
fn choose(t: &JsonTree, metadata: Value, params: Value) -> Result<&'static str, StrategyError> {
    let e = Env {
        metadata: Some(&metadata),
        params: Some(&params),
        pathname: "/v1/embeddings",
    };
    let (_, leaf) = Walk::start(t, &e, Instant::now(), &mut || 0.5)?;
    Ok(["free", "pro", "big"][leaf.0 as usize])
}

#[test]
fn metadata_equality_and_default() {
    let t = conditional(
        json!([
            {"query": {"metadata.tier": "pro"}, "then": "pro"},
            {"query": {"metadata.tier": {"$eq": "big"}}, "then": "big"}
        ]),
        Some("free"),
    );
    assert_eq!(choose(&t, json!({"tier": "pro"}), json!({})), Ok("pro"));
    assert_eq!(choose(&t, json!({"tier": "big"}), json!({})), Ok("big"));
    assert_eq!(choose(&t, json!({"tier": "Pro"}), json!({})), Ok("free"));
    assert_eq!(choose(&t, json!({}), json!({})), Ok("free"));
    assert!(!t.reads_params());
}

#[test]
fn no_match_without_default_is_an_error_at_the_group() {
    let t = conditional(
        json!([{"query": {"metadata.tier": "pro"}, "then": "pro"}]),
        None,
    );
    let err = choose(&t, json!({"tier": "free"}), json!({})).unwrap_err();
    assert_eq!(
        err.to_string(),
        "config: no condition matched and the strategy names no default target"
    );
    let nested = tree(json!({
        "targets": [{
            "strategy": {"mode": "conditional", "conditions": []},
            "targets": [{"name": "a"}]
        }]
    }));
    let err = Walk::start(&nested, &env(), Instant::now(), &mut || 0.5).unwrap_err();
    assert_eq!(err.path, "config.targets[0]");
}

#[test]
fn first_matching_condition_wins() {
    let t = conditional(
        json!([
            {"query": {"metadata.tier": "pro"}, "then": "big"},
            {"query": {"metadata.tier": "pro"}, "then": "pro"}
        ]),
        None,
    );
    assert_eq!(choose(&t, json!({"tier": "pro"}), json!({})), Ok("big"));
}

#[test]
fn and_or_in_nin_regex() {
    let t = conditional(
        json!([
            {"query": {"$and": [
                {"metadata.tier": {"$in": ["pro", "team"]}},
                {"$or": [{"params.model": {"$regex": "^gpt-4"}}, {"params.stream": true}]}
            ]}, "then": "big"},
            {"query": {"metadata.tier": {"$nin": ["free", "trial"]}, "metadata.region": "eu"}, "then": "pro"}
        ]),
        Some("free"),
    );
    let team = json!({"tier": "team"});
    assert_eq!(
        choose(&t, team.clone(), json!({"model": "gpt-4o"})),
        Ok("big")
    );
    assert_eq!(
        choose(
            &t,
            team.clone(),
            json!({"model": "gpt-3.5", "stream": true})
        ),
        Ok("big")
    );
    assert_eq!(
        choose(&t, team.clone(), json!({"model": "my-gpt-4"})),
        Ok("free")
    );
    assert_eq!(
        choose(&t, json!({"tier": "trial"}), json!({"model": "gpt-4"})),
        Ok("free")
    );
    let eu = json!({"tier": "team", "region": "eu"});
    assert_eq!(choose(&t, eu, json!({"model": "x"})), Ok("pro"));
    let missing_tier = json!({"region": "eu"});
    assert_eq!(choose(&t, missing_tier, json!({})), Ok("pro"));
    assert_eq!(
        choose(&t, json!({"tier": "free", "region": "eu"}), json!({})),
        Ok("free")
    );
    assert!(t.reads_params());
}

#[test]
fn numeric_comparisons_parse_like_parse_float() {
    let t = conditional(
        json!([
            {"query": {"params.max_tokens": {"$gt": 1000}}, "then": "big"},
            {"query": {"metadata.score": {"$gte": "0.5", "$lt": 0.9}}, "then": "pro"}
        ]),
        Some("free"),
    );
    assert_eq!(
        choose(&t, json!({}), json!({"max_tokens": 1001})),
        Ok("big")
    );
    assert_eq!(
        choose(&t, json!({}), json!({"max_tokens": "2000"})),
        Ok("big")
    );
    assert_eq!(
        choose(&t, json!({}), json!({"max_tokens": 1000})),
        Ok("free")
    );
    assert_eq!(
        choose(&t, json!({}), json!({"max_tokens": "lots"})),
        Ok("free")
    );
    assert_eq!(
        choose(&t, json!({}), json!({"max_tokens": true})),
        Ok("free")
    );
    assert_eq!(choose(&t, json!({"score": "0.5"}), json!({})), Ok("pro"));
    assert_eq!(choose(&t, json!({"score": 0.89}), json!({})), Ok("pro"));
    assert_eq!(choose(&t, json!({"score": 0.9}), json!({})), Ok("free"));
    assert_eq!(choose(&t, json!({}), json!({})), Ok("free"));
    let lte = conditional(
        json!([{"query": {"params.n": {"$lte": 2}}, "then": "pro"}]),
        Some("free"),
    );
    assert_eq!(choose(&lte, json!({}), json!({"n": 2})), Ok("pro"));
    assert_eq!(choose(&lte, json!({}), json!({"n": 3})), Ok("free"));
}

#[test]
fn equality_compares_json_values() {
    let t = conditional(
        json!([
            {"query": {"params.n": 1}, "then": "big"},
            {"query": {"params.tags": ["a", 2.0]}, "then": "pro"}
        ]),
        Some("free"),
    );
    assert_eq!(choose(&t, json!({}), json!({"n": 1.0})), Ok("big"));
    assert_eq!(choose(&t, json!({}), json!({"n": "1"})), Ok("free"));
    assert_eq!(choose(&t, json!({}), json!({"tags": ["a", 2]})), Ok("pro"));
    assert_eq!(
        choose(&t, json!({}), json!({"tags": ["a", 2, 3]})),
        Ok("free")
    );
}

#[test]
fn ne_and_missing_values() {
    let t = conditional(
        json!([
            {"query": {"metadata.env": {"$ne": "prod"}}, "then": "pro"},
            {"query": {"metadata.other": {"$regex": "."}}, "then": "big"}
        ]),
        Some("free"),
    );
    assert_eq!(choose(&t, json!({"env": "prod"}), json!({})), Ok("free"));
    assert_eq!(choose(&t, json!({"env": "dev"}), json!({})), Ok("pro"));
    // Missing is not "prod" (Portkey compares `undefined`).
    assert_eq!(choose(&t, json!({}), json!({})), Ok("pro"));
    // $regex reads strings only.
    let re = conditional(
        json!([{"query": {"metadata.n": {"$regex": "^4"}}, "then": "big"}]),
        Some("free"),
    );
    assert_eq!(choose(&re, json!({"n": 42}), json!({})), Ok("free"));
    assert_eq!(choose(&re, json!({"n": "42"}), json!({})), Ok("big"));
    // Without metadata at all.
    let e = env();
    let (_, leaf) = Walk::start(&re, &e, Instant::now(), &mut || 0.5).unwrap();
    assert_eq!(leaf, LeafId(0));
}

#[test]
fn nested_params_with_array_index_and_pathname() {
    let t = conditional(
        json!([
            {"query": {"params.messages.0.role": "system"}, "then": "big"},
            {"query": {"url.pathname": {"$regex": "/embeddings$"}}, "then": "pro"}
        ]),
        Some("free"),
    );
    let sys = json!({"messages": [{"role": "system"}, {"role": "user"}]});
    assert_eq!(choose(&t, json!({}), sys), Ok("big"));
    let user = json!({"messages": [{"role": "user"}]});
    assert_eq!(choose(&t, json!({}), user), Ok("pro"));
    let deep = conditional(
        json!([{"query": {"params.a.b.c": {"$in": [1, 2]}}, "then": "big"}]),
        Some("free"),
    );
    assert_eq!(
        choose(&deep, json!({}), json!({"a": {"b": {"c": 2}}})),
        Ok("big")
    );
    assert_eq!(choose(&deep, json!({}), json!({"a": {"b": 2}})), Ok("free"));
    assert_eq!(
        choose(&deep, json!({}), json!({"a": [{"c": 2}]})),
        Ok("free")
    );
}

#[test]
fn empty_query_matches() {
    let t = conditional(json!([{"query": {}, "then": "big"}]), None);
    assert_eq!(choose(&t, json!({}), json!({})), Ok("big"));
}
