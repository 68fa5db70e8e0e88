//! Static stability: PostgreSQL stops while two instances serve. A bounded loop of requests
//! through both sees no failure; admin writes answer 503 (reads keep working from the
//! snapshot); an instance started meanwhile is not ready and says why; once the database is
//! back, writes work and reach the other instance, and the late instance becomes ready.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::common::admin::{time_until, Admin};
use super::common::postgres::Postgres;
use super::common::{secret, FakeUpstream, Keyway};
use super::fleet::store_key;
use super::{caller_key, chat, fleet_config, owner_key};

async fn ready(kw: &Keyway) -> (u16, String) {
    let r = reqwest::get(format!("http://127.0.0.1:{}/readyz", kw.metrics_port))
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_stopped_mid_run_fails_no_request_and_writes_catch_up() {
    let Some(pg) = Postgres::start().await else {
        return;
    };
    let up = FakeUpstream::start().await;
    let key = store_key();
    let env = [("KEYWAY_STORE_KEY", key.as_str())];
    let cfg = fleet_config(&up, &format!("\n[store]\nurl = \"{}\"\n", pg.url()));
    let a = Arc::new(Keyway::start_with_env(&cfg, &env).await);
    let b = Arc::new(Keyway::start_with_env(&cfg, &env).await);
    let admin = Admin::new(&a, &owner_key());
    let upstream_key = secret("sk-control-outage-upstream");
    let vk = |name: &str| json!({"name": name, "provider": "openai", "key": upstream_key, "workspace_id": "team-a"});
    let made = admin.create("/v1/virtual-keys", vk("before outage")).await;
    let slug = made["slug"].as_str().unwrap().to_owned();
    let caller = caller_key();
    time_until(200, Duration::from_secs(5), || chat(&b, &caller, &slug))
        .await
        .expect("B never served the virtual key");

    // Traffic through both instances for the whole outage (bounded: at most 60 s).
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut workers = Vec::new();
    for i in 0..4 {
        let (kw, stop, caller, slug) = (
            if i % 2 == 0 { a.clone() } else { b.clone() },
            stop.clone(),
            caller.clone(),
            slug.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                statuses.push(chat(&kw, &caller, &slug).await);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            statuses
        }));
    }

    pg.stop().await;
    let (s, v) = admin.post("/v1/virtual-keys", vk("during outage")).await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(v["error"]["code"], "store_unavailable", "{v}");
    let (s, v) = admin.get(&format!("/v1/virtual-keys/{slug}")).await;
    assert_eq!(s, 200, "reads are served from the snapshot: {v}");

    // An instance that starts now is not ready, and says why.
    let late = Keyway::start_opts(&cfg, &env, "/healthz").await;
    let why = "the store's objects (not loaded: cannot connect";
    let mut body = String::new();
    for _ in 0..100 {
        let (s, b) = ready(&late).await;
        assert_eq!(s, 503, "{b}");
        body = b;
        if body.contains(why) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(body.contains(why), "{body}");
    b.wait_metric(
        "keyway_store_errors_total{op=\"poll\"}",
        1.0,
        Duration::from_secs(10),
    )
    .await;

    pg.restart().await;
    // The pool reconnects on its own: the first write that gets through is the proof.
    let admin_c = admin.clone();
    time_until(200, Duration::from_secs(20), || {
        let admin = admin_c.clone();
        let body = vk("after outage");
        async move { admin.post("/v1/virtual-keys", body).await.0 }
    })
    .await
    .expect("writes never worked again");
    time_until(200, Duration::from_secs(5), || {
        chat(&b, &caller, "after-outage")
    })
    .await
    .expect("the write after the outage never reached B");
    time_until(200, Duration::from_secs(20), || async {
        ready(&late).await.0
    })
    .await
    .expect("the late instance never became ready");
    assert_eq!(chat(&late, &caller, &slug).await, 200);

    stop.store(true, Ordering::Relaxed);
    let mut statuses = Vec::new();
    for w in workers {
        statuses.extend(w.await.unwrap());
    }
    let failed = statuses.iter().filter(|s| **s != 200).count();
    assert!(statuses.len() >= 100, "{} requests", statuses.len());
    assert_eq!(failed, 0, "{failed} of {} requests failed", statuses.len());
    eprintln!(
        "{} requests through the outage, none failed",
        statuses.len()
    );
}
