//! `workload` mode: the projected token file as the Entra client assertion.

use std::path::PathBuf;

use keyway::credentials::entra::JWT_BEARER;
use keyway::credentials::workload::{Workload, WorkloadEnv};
use keyway::credentials::{CredentialError, IdentityHttp, COGNITIVE_SCOPE};
use keyway::env::Env;

use crate::common::identity::entra::FakeEntra;
use crate::TENANT;

fn token_file(name: &str, content: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("credentials-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}-{}", std::process::id()));
    std::fs::write(&path, content).unwrap();
    path
}

fn workload(entra: &FakeEntra, client_id: &str, file: PathBuf) -> Workload {
    Workload {
        http: IdentityHttp::new(),
        authority: entra.authority(),
        tenant: TENANT.into(),
        client_id: client_id.into(),
        token_file: file,
        scope: COGNITIVE_SCOPE.into(),
    }
}

#[tokio::test]
async fn workload_reads_the_token_file_afresh_at_every_fetch() {
    let entra = FakeEntra::start(TENANT).await;
    entra.add_assertion("wl-1", |a| a.starts_with("k8s-jwt-"));
    let file = token_file("rotate", "k8s-jwt-one\n");
    let src = workload(&entra, "wl-1", file.clone());
    src.get_token().await.unwrap();
    std::fs::write(&file, "  k8s-jwt-two\n").unwrap();
    let token = src.get_token().await.unwrap();
    assert_eq!(
        Some(token.value.expose().to_owned()),
        entra.current_token("wl-1", COGNITIVE_SCOPE)
    );
    let reqs = entra.requests();
    let assertions: Vec<_> = reqs
        .iter()
        .map(|r| r.form.get("client_assertion").unwrap())
        .collect();
    assert_eq!(assertions, ["k8s-jwt-one", "k8s-jwt-two"]);
    for r in &reqs {
        assert_eq!(
            r.form.keys(),
            [
                "grant_type",
                "client_id",
                "scope",
                "client_assertion",
                "client_assertion_type"
            ]
        );
        assert_eq!(r.form.get("client_assertion_type"), Some(JWT_BEARER));
    }
}

#[tokio::test]
async fn workload_two_client_ids_share_one_token_file() {
    let entra = FakeEntra::start(TENANT).await;
    entra.add_assertion("wl-a", |a| a == "shared-jwt");
    entra.add_assertion("wl-b", |a| a == "shared-jwt");
    let file = token_file("shared", "shared-jwt");
    let (a, b) = (
        workload(&entra, "wl-a", file.clone()),
        workload(&entra, "wl-b", file),
    );
    let (ta, tb) = tokio::join!(a.get_token(), b.get_token());
    let (ta, tb) = (ta.unwrap(), tb.unwrap());
    assert_ne!(ta.value, tb.value);
    assert_eq!(
        Some(ta.value.expose().to_owned()),
        entra.current_token("wl-a", COGNITIVE_SCOPE)
    );
    assert_eq!(
        Some(tb.value.expose().to_owned()),
        entra.current_token("wl-b", COGNITIVE_SCOPE)
    );
    let mut ids: Vec<_> = entra
        .requests()
        .iter()
        .map(|r| r.form.get("client_id").unwrap().to_owned())
        .collect();
    ids.sort();
    assert_eq!(ids, ["wl-a", "wl-b"]);
}

#[tokio::test]
async fn workload_missing_or_empty_file_is_a_setup_error() {
    let entra = FakeEntra::start(TENANT).await;
    entra.add_assertion("wl-1", |_| true);
    let missing = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("no-such-token-file");
    let empty = token_file("empty", " \n");
    for (path, what) in [(missing, "does not exist"), (empty, "is empty")] {
        let err = workload(&entra, "wl-1", path.clone())
            .get_token()
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, CredentialError::Setup { .. }), "{err:?}");
        assert!(
            msg.contains(&path.display().to_string()) && msg.contains(what),
            "{msg}"
        );
        assert!(
            msg.contains("azure.workload.identity/use"),
            "the message names the fix: {msg}"
        );
    }
    assert!(entra.requests().is_empty());
}

#[tokio::test]
async fn workload_from_webhook_env_with_trailing_slash_authority() {
    let entra = FakeEntra::start(TENANT).await;
    entra.add_assertion("wl-env", |a| a == "env-jwt");
    let file = token_file("env", "env-jwt");
    let host = format!("{}/", entra.authority());
    let file_str = file.display().to_string();
    let env = Env::from_pairs([
        ("AZURE_AUTHORITY_HOST", host.as_str()),
        ("AZURE_TENANT_ID", TENANT),
        ("AZURE_CLIENT_ID", "wl-env"),
        ("AZURE_FEDERATED_TOKEN_FILE", file_str.as_str()),
    ]);
    let w = WorkloadEnv::from_env(&env).unwrap();
    let src = Workload {
        authority: host,
        ..workload(&entra, &w.client_id, w.token_file)
    };
    src.get_token().await.unwrap();
    assert_eq!(entra.requests()[0].path, "/tenant-1/oauth2/v2.0/token");
}
