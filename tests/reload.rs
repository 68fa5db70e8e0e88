//! Hot reload (issue 10), through a real keyway: a gateway key added to the file works without a
//! restart (by SIGHUP and by the file watch) and a removed one is refused right after; a broken
//! file keeps the old configuration serving and is counted; an SSE stream in flight across a
//! reload arrives intact; a reload that keeps an Entra credential makes zero token requests and
//! a new credential is fetched before its runtime goes live; concurrent requests across 20
//! reloads see zero failures.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::identity::FakeEntra;
use common::{secret, FakeUpstream, Keyway, Reply};
use tokio::sync::Notify;

const OK: &str = r#"keyway_config_reloads_total{outcome="ok"}"#;
const INVALID: &str = r#"keyway_config_reloads_total{outcome="invalid"}"#;
const WAIT: Duration = Duration::from_secs(10);

fn hash(key: &str) -> String {
    keyway::auth::keys::hash_line(key)
}

/// The enforced posture with `keys` in workspace team-a and a virtual key on `up`.
fn enforced(up: &FakeUpstream, keys: &[&str], extra: &str) -> String {
    let mut s = format!(
        "{extra}\n[auth]\nmode = \"enforced\"\n[workspaces.team-a]\n[credentials.openai]\ntype = \"api_key\"\nkey = \"sk-upstream\"\n[virtual_keys.vk]\nworkspace = \"team-a\"\nprovider = \"openai\"\ncredential = \"openai\"\n[providers.openai]\nbase_url = \"{}/v1\"\n",
        up.base()
    );
    for (i, k) in keys.iter().enumerate() {
        s.push_str(&format!(
            "[[api_keys]]\nname = \"k{i}\"\nhash = \"{}\"\nworkspace = \"team-a\"\nvirtual_key = \"vk\"\n",
            hash(k)
        ));
    }
    s
}

async fn chat(kw: &Keyway, key: &str) -> u16 {
    reqwest::Client::new()
        .post(kw.url("/v1/chat/completions"))
        .header("x-portkey-api-key", key)
        .body(r#"{"model":"gpt-4o","messages":[]}"#)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_added_and_removed_by_sighup_take_effect_without_a_restart() {
    let up = FakeUpstream::start().await;
    let (old, new) = (
        secret("kw-reload-sighup-old-key"),
        secret("kw-reload-sighup-new-key"),
    );
    let kw = Keyway::start(&enforced(&up, &[&old], "watch_config = false")).await;
    assert_eq!(chat(&kw, &old).await, 200);
    assert_eq!(chat(&kw, &new).await, 401);

    kw.write_config(&enforced(&up, &[&new], "watch_config = false"));
    // No watch: nothing changes until the signal.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(kw.metric(OK).await, 0.0);
    assert_eq!(chat(&kw, &old).await, 200);
    kw.signal("HUP");
    kw.wait_metric(OK, 1.0, WAIT).await;
    assert_eq!(chat(&kw, &new).await, 200);
    assert_eq!(
        chat(&kw, &old).await,
        401,
        "the removed key is refused at once"
    );
    assert!(kw.log_text().contains("reload (SIGHUP): configuration"));
    let info = kw.metrics().await;
    assert_eq!(
        info.lines()
            .filter(|l| l.starts_with("keyway_config_info{"))
            .count(),
        1,
        "one info series: {info}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_file_watch_reloads_and_a_broken_file_keeps_the_old_configuration() {
    let up = FakeUpstream::start().await;
    let (old, new) = (
        secret("kw-reload-watch-old-key"),
        secret("kw-reload-watch-new-key"),
    );
    let kw = Keyway::start(&enforced(&up, &[&old], "")).await;
    kw.write_config(&enforced(&up, &[&old, &new], ""));
    kw.wait_metric(OK, 1.0, WAIT).await;
    assert_eq!(chat(&kw, &new).await, 200);
    assert_eq!(chat(&kw, &old).await, 200);

    // A typo: refused with its path in the file, counted; the running configuration stays.
    let broken =
        enforced(&up, &[&old], "").replace("[providers.openai]", "[providers.openai]\nbse_url = 1");
    kw.write_config(&broken);
    kw.wait_metric(INVALID, 1.0, WAIT).await;
    assert_eq!(chat(&kw, &new).await, 200);
    assert!(
        kw.log_text()
            .contains("providers.openai.bse_url: unknown field `bse_url`"),
        "the log names the path: {}",
        kw.log_text()
    );
    // Valid again: live.
    kw.write_config(&enforced(&up, &[&old], ""));
    kw.wait_metric(OK, 2.0, WAIT).await;
    assert_eq!(chat(&kw, &new).await, 401);
    assert_eq!(kw.metric(OK).await, 2.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_sse_stream_in_flight_finishes_on_the_runtime_it_began_with() {
    let gate = Arc::new(Notify::new());
    let g = gate.clone();
    let up = FakeUpstream::with(move |_| Reply::GatedStream {
        first: Bytes::from_static(b"data: {\"n\":1}\n\n"),
        gate: g.clone(),
        rest: vec![
            Bytes::from_static(b"data: {\"n\":2}\n\n"),
            Bytes::from_static(b"data: [DONE]\n\n"),
        ],
    })
    .await;
    let route = |prefix: &str| {
        format!(
            "watch_config = false\n[credentials.c]\ntype = \"api_key\"\nkey = \"sk-route\"\n[[routes]]\nname = \"r\"\npath_prefix = \"/{prefix}\"\nprovider = \"openai\"\nupstream = \"{}/v1\"\nstrip_prefix = true\ncredential = \"c\"\n",
            up.base()
        )
    };
    let kw = Keyway::start(&route("old")).await;
    let mut resp = reqwest::Client::new()
        .post(kw.url("/old/chat/completions"))
        .body(r#"{"stream":true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let first = resp.chunk().await.unwrap().unwrap();
    assert_eq!(&first[..], b"data: {\"n\":1}\n\n");

    // The route the stream uses is renamed away while the stream is open.
    kw.write_config(&route("new"));
    kw.signal("HUP");
    kw.wait_metric(OK, 1.0, WAIT).await;
    let status = reqwest::Client::new()
        .post(kw.url("/old/chat/completions"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 404, "new requests see the new runtime");

    gate.notify_one();
    let mut rest = Vec::new();
    while let Some(c) = resp.chunk().await.unwrap() {
        rest.extend_from_slice(&c);
    }
    assert_eq!(rest, b"data: {\"n\":2}\n\ndata: [DONE]\n\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kept_entra_credential_keeps_its_token_and_a_new_one_is_fetched_before_going_live() {
    let entra = FakeEntra::start("tenant-reload").await;
    let (s1, s2) = (
        secret("entra-secret-reload-kept"),
        secret("entra-secret-reload-new"),
    );
    entra.add_secret("app-kept", &s1);
    entra.add_secret("app-new", &s2);
    let up = FakeUpstream::start().await;
    let cred = |name: &str, client: &str, secret: &str| {
        format!("[credentials.{name}]\ntype = \"entra\"\ntenant_id = \"tenant-reload\"\nclient_id = \"{client}\"\nclient_secret = \"{secret}\"\n")
    };
    let route = |name: &str, cred: &str| {
        format!(
            "[[routes]]\nname = \"{name}\"\npath_prefix = \"/{name}\"\nprovider = \"azure-openai\"\nupstream = \"{}\"\nstrip_prefix = true\ncredential = \"{cred}\"\n",
            up.base()
        )
    };
    let base = format!(
        "watch_config = false\n[azure]\nauthority_host = \"{}\"\n{}{}",
        entra.authority(),
        cred("kept", "app-kept", &s1),
        route("a", "kept")
    );
    let kw = Keyway::start(&base).await;
    assert_eq!(entra.requests().len(), 1);
    let send = |path: &'static str| {
        let kw = &kw;
        async move {
            reqwest::Client::new()
                .post(kw.url(path))
                .body("{}")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(send("/a/chat/completions").await, 200);
    let token = entra.current_token("app-kept", "https://cognitiveservices.azure.com/.default");

    // Renamed credential, same identity; plus a new route with a new credential.
    let next = format!(
        "watch_config = false\n[azure]\nauthority_host = \"{}\"\n{}{}{}{}",
        entra.authority(),
        cred("renamed", "app-kept", &s1),
        cred("fresh", "app-new", &s2),
        route("a", "renamed"),
        route("b", "fresh"),
    );
    kw.write_config(&next);
    kw.signal("HUP");
    kw.wait_metric(OK, 1.0, WAIT).await;
    // The new credential's token came before the runtime went live; the kept one's did not
    // change.
    let reqs = entra.requests();
    assert_eq!(
        reqs.len(),
        2,
        "one token request, for the new credential only"
    );
    assert_eq!(reqs[1].form.get("client_id"), Some("app-new"));
    assert_eq!(send("/b/chat/completions").await, 200);
    assert_eq!(send("/a/chat/completions").await, 200);
    let got = up.requests();
    assert_eq!(
        got[got.len() - 1]
            .header("authorization")
            .map(str::to_owned),
        token.map(|t| format!("Bearer {t}")),
        "the kept credential's token is the one from before the reload"
    );
    assert_eq!(entra.requests().len(), 2);
    // The expiry gauge follows the new names (the refresher publishes it every tick).
    kw.wait_metric(
        r#"keyway_token_expiry_seconds{credential="renamed"}"#,
        60.0,
        WAIT,
    )
    .await;
    assert!(!kw
        .metrics()
        .await
        .contains(r#"keyway_token_expiry_seconds{credential="kept"}"#));
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_reloads_under_load_fail_no_request() {
    let up = FakeUpstream::start().await;
    let key = secret("kw-reload-under-load-key");
    let spare = secret("kw-reload-under-load-spare");
    let kw = Arc::new(Keyway::start(&enforced(&up, &[&key], "watch_config = false")).await);
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (kw, stop, key) = (kw.clone(), stop.clone(), key.clone());
        workers.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                statuses.push(chat(&kw, &key).await);
            }
            statuses
        }));
    }
    for i in 1..=20 {
        // Alternate between two configurations that both keep `key`.
        let keys: Vec<&str> = match i % 2 {
            0 => vec![&key],
            _ => vec![&key, &spare],
        };
        kw.write_config(&enforced(&up, &keys, "watch_config = false"));
        kw.signal("HUP");
        kw.wait_metric(OK, i as f64, WAIT).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut statuses = Vec::new();
    for w in workers {
        statuses.extend(w.await.unwrap());
    }
    let failed = statuses.iter().filter(|s| **s != 200).count();
    assert!(statuses.len() >= 40, "{} requests", statuses.len());
    assert_eq!(failed, 0, "{failed} of {} failed", statuses.len());
    assert_eq!(kw.metric(OK).await, 20.0);
}
