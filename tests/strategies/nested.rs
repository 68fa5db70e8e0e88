//! Nested targets: children inherit what they do not set (provider, key, `override_params`
//! key by key), their own settings win, a group without a strategy is `single`, and
//! `override_params` is merged into the JSON body each target receives.

use serde_json::json;

use super::common::{assert_no_client_credentials, secret, FakeUpstream, Keyway, Reply};
use super::{json_body, send, toml, ERR_503, LAST_USED, OK_B, RETRY_ATTEMPTS};

#[tokio::test(flavor = "multi_thread")]
async fn children_inherit_and_override_params_reach_the_body() {
    let (parent, child) = (secret("sk-strat-parent"), secret("sk-strat-child"));
    let a = FakeUpstream::with(|_| Reply::status(503, ERR_503)).await;
    let b = FakeUpstream::with(|_| Reply::ok_json(OK_B)).await;
    let kw = Keyway::start(&toml("", "")).await;
    let cfg = json!({
        "strategy": {"mode": "fallback"},
        "provider": "openai",
        "api_key": parent,
        "override_params": {"temperature": 0.1, "max_tokens": 5},
        "targets": [
            {"custom_host": format!("{}/v1", a.base())},
            {
                "api_key": child,
                "override_params": {"temperature": 0.9},
                "targets": [{"custom_host": format!("{}/v1", b.base())}],
            },
        ],
    })
    .to_string();
    let body = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"temperature":1,"user":"u-1"}"#;
    let r = send(&kw, &cfg, body, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), OK_B);
    assert_eq!(r.header(LAST_USED), Some("config.targets[1].targets[0]"));
    assert_eq!(r.header(RETRY_ATTEMPTS), Some("0"));

    let ra = a.only();
    assert_eq!(ra.uri, "/v1/chat/completions");
    let bearer = format!("Bearer {parent}");
    assert_eq!(ra.header("authorization"), Some(bearer.as_str()));
    assert_no_client_credentials(&ra, &bearer);
    assert_eq!(
        json_body(&ra),
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}],
               "temperature": 0.1, "max_tokens": 5, "user": "u-1"})
    );

    let rb = b.only();
    assert_eq!(rb.uri, "/v1/chat/completions");
    let bearer = format!("Bearer {child}");
    assert_eq!(rb.header("authorization"), Some(bearer.as_str()));
    assert_no_client_credentials(&rb, &bearer);
    assert_eq!(
        json_body(&rb),
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}],
               "temperature": 0.9, "max_tokens": 5, "user": "u-1"})
    );
}
