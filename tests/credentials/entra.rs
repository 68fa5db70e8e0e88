//! `entra` mode: client secret against the fake Entra token endpoint.

use keyway::credentials::entra::EntraSecret;
use keyway::credentials::spec::ClientSecret;
use keyway::credentials::{CredentialError, IdentityHttp, COGNITIVE_SCOPE};
use keyway::secret::Secret;

use crate::common::identity::entra::FakeEntra;
use crate::{assert_expires_in, TENANT};

fn entra_source(fake: &FakeEntra, secret: &str) -> EntraSecret {
    EntraSecret {
        http: IdentityHttp::new(),
        authority: fake.authority(),
        tenant: TENANT.into(),
        client_id: "app-1".into(),
        secret: ClientSecret::Value(Secret::new(secret)),
        scope: COGNITIVE_SCOPE.into(),
    }
}

#[tokio::test]
async fn entra_secret_sends_client_credentials_and_reads_expiry() {
    let entra = FakeEntra::start(TENANT).await;
    entra.add_secret("app-1", "s3cret");
    entra.set_expires_in(1234);
    let token = entra_source(&entra, "s3cret").get_token().await.unwrap();
    assert_eq!(
        Some(token.value.expose().to_owned()),
        entra.current_token("app-1", COGNITIVE_SCOPE)
    );
    assert_expires_in(&token, 1234);
    let [req] = entra.requests().try_into().unwrap();
    assert_eq!(
        (req.method.as_str(), req.path.as_str()),
        ("POST", "/tenant-1/oauth2/v2.0/token")
    );
    assert_eq!(
        req.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        req.form.keys(),
        ["grant_type", "client_id", "scope", "client_secret"]
    );
    assert_eq!(req.form.get("grant_type"), Some("client_credentials"));
    assert_eq!(req.form.get("client_id"), Some("app-1"));
    assert_eq!(req.form.get("scope"), Some(COGNITIVE_SCOPE));
    assert_eq!(req.form.get("client_secret"), Some("s3cret"));
}

#[tokio::test]
async fn entra_wrong_secret_is_rejected_without_leaking_it() {
    let entra = FakeEntra::start(TENANT).await;
    entra.add_secret("app-1", "right");
    let err = entra_source(&entra, "wrong-hunter2")
        .get_token()
        .await
        .unwrap_err();
    match &err {
        CredentialError::Rejected {
            status,
            code,
            aadsts,
            ..
        } => {
            assert_eq!((*status, code.as_str()), (401, "invalid_client"));
            assert_eq!(aadsts.as_deref(), Some("AADSTS7000215"));
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    assert!(!err.is_transient());
    let shown = format!("{err} {err:?}");
    assert!(
        !shown.contains("wrong-hunter2") && !shown.contains("client_secret="),
        "{shown}"
    );
    assert_eq!(entra.requests().len(), 1);
}

#[tokio::test]
async fn entra_outage_is_transient_and_recovers() {
    let entra = FakeEntra::start(TENANT).await;
    entra.add_secret("app-1", "s");
    entra.set_outage(true);
    let src = entra_source(&entra, "s");
    let err = src.get_token().await.unwrap_err();
    let expected_endpoint = format!("{}/tenant-1/oauth2/v2.0/token", entra.authority());
    match &err {
        CredentialError::Unavailable {
            endpoint, reason, ..
        } => {
            assert_eq!(endpoint, &expected_endpoint);
            assert!(reason.contains("503"), "{reason}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(err.is_transient());
    entra.set_outage(false);
    assert!(src.get_token().await.is_ok());
    assert_eq!(entra.issued(), 1);
}

#[tokio::test]
async fn entra_unknown_tenant_and_trailing_slash_authority() {
    let entra = FakeEntra::start(TENANT).await;
    entra.add_secret("app-1", "s");
    let mut src = entra_source(&entra, "s");
    src.authority.push('/');
    src.get_token().await.unwrap();
    assert_eq!(entra.requests()[0].path, "/tenant-1/oauth2/v2.0/token");
    src.tenant = "other-tenant".into();
    match src.get_token().await.unwrap_err() {
        CredentialError::Rejected {
            status: 400,
            code,
            aadsts,
            ..
        } => {
            assert_eq!(
                (code.as_str(), aadsts.as_deref()),
                ("invalid_request", Some("AADSTS90002"))
            );
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
}
