//! `strategy.mode = "conditional"`: queries over `metadata.*` (the `x-portkey-metadata` header)
//! and `params.*` (the JSON body), operators, `default`, and a 400 with nothing sent when no
//! condition matches and there is no default.

use serde_json::{json, Value};

use super::common::{assert_failure, secret, FakeUpstream, Keyway};
use super::{assert_attempt, openai, send, toml, with, LAST_USED};

#[tokio::test(flavor = "multi_thread")]
async fn conditions_pick_the_named_target() {
    let key = secret("sk-strat-cond");
    let names = ["std", "mini", "big", "pro"];
    let mut fakes = Vec::new();
    for _ in names {
        fakes.push(FakeUpstream::start().await);
    }
    let targets: Vec<Value> = names
        .iter()
        .zip(&fakes)
        .map(|(n, f)| with(openai(f, &key), json!({"name": n})))
        .collect();
    let conditions = json!([
        {"query": {"metadata.tier": "pro"}, "then": "pro"},
        {"query": {"params.model": {"$in": ["gpt-4o", "gpt-4.1"]}}, "then": "big"},
        {"query": {"params.model": {"$regex": "^mini-"}}, "then": "mini"},
        {"query": {"$and": [
            {"params.max_tokens": {"$gt": 1000}},
            {"metadata.tier": {"$ne": "free"}},
        ]}, "then": "mini"},
    ]);
    let cfg = json!({
        "strategy": {"mode": "conditional", "conditions": conditions, "default": "std"},
        "targets": targets,
    })
    .to_string();
    let kw = Keyway::start(&toml("", "")).await;

    // (metadata header, body, chosen target index)
    let cases: [(Option<&str>, &str, usize); 6] = [
        (
            Some(r#"{"tier":"pro"}"#),
            r#"{"model":"gpt-4o","messages":[]}"#,
            3,
        ),
        (
            Some(r#"{"tier":"free"}"#),
            r#"{"model":"gpt-4o","messages":[]}"#,
            2,
        ),
        (None, r#"{"model":"mini-2024","messages":[]}"#, 1),
        (None, r#"{"model":"o1","messages":[]}"#, 0),
        (
            Some(r#"{"tier":"gold"}"#),
            r#"{"model":"o1","max_tokens":2000,"messages":[]}"#,
            1,
        ),
        (
            Some(r#"{"tier":"free"}"#),
            r#"{"model":"o1","max_tokens":2000,"messages":[]}"#,
            0,
        ),
    ];
    for (metadata, body, want) in cases {
        let headers: Vec<(&str, &str)> = metadata
            .map(|m| ("x-portkey-metadata", m))
            .into_iter()
            .collect();
        let r = send(&kw, &cfg, body, &headers).await;
        assert_eq!(r.status, 200, "{metadata:?} {body}: {}", r.text());
        let path = format!("config.targets[{want}]");
        assert_eq!(
            r.header(LAST_USED),
            Some(path.as_str()),
            "{metadata:?} {body}"
        );
        for (i, f) in fakes.iter().enumerate() {
            if i == want {
                assert_attempt(&f.only(), &key, body.as_bytes());
            } else {
                assert!(
                    f.requests().is_empty(),
                    "{metadata:?} {body} reached {}",
                    names[i]
                );
            }
        }
    }

    // No match and no default: refused before anything is sent.
    let cfg = json!({
        "strategy": {"mode": "conditional", "conditions": conditions},
        "targets": names.iter().zip(&fakes)
            .map(|(n, f)| with(openai(f, &key), json!({"name": n})))
            .collect::<Vec<_>>(),
    })
    .to_string();
    let resp = reqwest::Client::new()
        .post(kw.url("/v1/chat/completions"))
        .header("x-portkey-config", cfg)
        .body(r#"{"model":"o1","messages":[]}"#)
        .send()
        .await
        .unwrap();
    assert_failure(resp, 400, "").await;
    for f in &fakes {
        assert!(f.requests().is_empty(), "an unmatched request was sent");
    }
}
