//! logrotate: the access-log file renamed, then `SIGHUP`; lines before the signal stay in the
//! renamed file, lines after it land in a new file at the configured path, none is lost.

use std::time::Duration;

use super::common::{FakeUpstream, Keyway, Reply};
use super::{lines, log_path, BODY, OPENAI_JSON};

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reopens_a_renamed_access_log() {
    let up = FakeUpstream::with(|_| Reply::ok_json(OPENAI_JSON)).await;
    let path = log_path("rotate");
    let rotated = path.with_extension("log.1");
    let _ = std::fs::remove_file(&rotated);
    let kw = Keyway::start(&format!(
        "[providers.openai]\nbase_url = \"{}/v1\"\napi_key = \"k\"\n\
         [access_log]\nenabled = true\npath = \"{}\"\n",
        up.base(),
        path.display()
    ))
    .await;
    let client = reqwest::Client::new();
    let send = |id: String| {
        let req = client
            .post(kw.url("/v1/chat/completions"))
            .header("x-portkey-provider", "openai")
            .header("x-request-id", id)
            .body(BODY)
            .send();
        async move { assert_eq!(req.await.unwrap().status(), 200) }
    };
    let ids = |v: &[serde_json::Value]| -> Vec<String> {
        v.iter()
            .map(|l| l["request_id"].as_str().unwrap().to_owned())
            .collect()
    };
    for i in 0..3 {
        send(format!("rot-{i}")).await;
    }
    assert_eq!(ids(&lines(&path, 3).await), ["rot-0", "rot-1", "rot-2"]);

    // logrotate renames the file: until the signal keyway writes on to it.
    std::fs::rename(&path, &rotated).unwrap();
    send("rot-3".into()).await;
    lines(&rotated, 4).await;
    assert!(!path.exists());

    // postrotate: kill -HUP. The config is unchanged; the reload counts as such once the log
    // has been asked to reopen (the hook runs first).
    kw.signal("HUP");
    let unchanged = r#"keyway_config_reloads_total{outcome="unchanged"}"#;
    kw.wait_metric(unchanged, 1.0, Duration::from_secs(10))
        .await;
    for i in 4..6 {
        send(format!("rot-{i}")).await;
    }
    assert_eq!(ids(&lines(&path, 2).await), ["rot-4", "rot-5"]);
    let old = lines(&rotated, 4).await;
    assert_eq!(ids(&old), ["rot-0", "rot-1", "rot-2", "rot-3"]);
    assert_eq!(kw.metric("keyway_access_log_dropped_total").await, 0.0);
    assert!(kw.log_text().contains("access log: reopened"));
    let _ = std::fs::remove_file(&rotated);
}
