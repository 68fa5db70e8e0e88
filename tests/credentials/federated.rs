//! `entraFederated` mode: AWS STS `GetWebIdentityToken` (a fake, or an emulator when present)
//! feeding the Entra exchange.

use keyway::credentials::entra::JWT_BEARER;
use keyway::credentials::federated::Federated;
use keyway::credentials::{CredentialError, IdentityHttp, COGNITIVE_SCOPE};

use crate::common::identity::entra::FakeEntra;
use crate::common::identity::sts::FakeSts;
use crate::common::identity::Params;
use crate::TENANT;

fn fake_sts_client(sts: &FakeSts) -> aws_sdk_sts::Client {
    use aws_sdk_sts::config::{retry::RetryConfig, BehaviorVersion, Credentials, Region};
    let conf = aws_sdk_sts::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .endpoint_url(sts.endpoint())
        .credentials_provider(Credentials::new(
            "AKIDFAKE",
            "aws-secret-key",
            None,
            None,
            "test",
        ))
        .retry_config(RetryConfig::disabled())
        .build();
    aws_sdk_sts::Client::from_conf(conf)
}

fn federated(entra: &FakeEntra, sts: &FakeSts) -> Federated {
    Federated {
        http: IdentityHttp::new(),
        sts: fake_sts_client(sts),
        authority: entra.authority(),
        tenant: TENANT.into(),
        client_id: "fed-1".into(),
        scope: COGNITIVE_SCOPE.into(),
        duration_seconds: Some(900),
    }
}

#[tokio::test]
async fn federated_uses_the_sts_jwt_as_entra_assertion() {
    let (entra, sts) = (FakeEntra::start(TENANT).await, FakeSts::start().await);
    entra.add_assertion("fed-1", |a| a.starts_with("eyJhbGciOiJSUzI1NiJ9.aws-"));
    federated(&entra, &sts).get_token().await.unwrap();
    let req = sts.server.only();
    assert!(req
        .header("authorization")
        .unwrap()
        .contains("Credential=AKIDFAKE/"));
    let form = Params::parse(&req.body);
    assert_eq!(form.get("Action"), Some("GetWebIdentityToken"));
    assert_eq!(form.get("Version"), Some("2011-06-15"));
    assert_eq!(
        form.get("Audience.member.1"),
        Some("api://AzureADTokenExchange")
    );
    assert_eq!(form.get("Audience.member.2"), None);
    assert_eq!(form.get("SigningAlgorithm"), Some("RS256"));
    assert_eq!(form.get("DurationSeconds"), Some("900"));
    let [entra_req] = entra.requests().try_into().unwrap();
    assert_eq!(
        entra_req.form.get("client_assertion"),
        Some(sts.issued()[0].as_str())
    );
    assert_eq!(
        entra_req.form.get("client_assertion_type"),
        Some(JWT_BEARER)
    );
}

#[tokio::test]
async fn federated_sts_errors_map_to_rejected_or_unavailable() {
    let (entra, sts) = (FakeEntra::start(TENANT).await, FakeSts::start().await);
    let src = federated(&entra, &sts);
    for (status, code) in [(403, "AccessDenied"), (400, "InvalidSignatureException")] {
        sts.fail_with(status, code);
        match src.get_token().await.unwrap_err() {
            CredentialError::Rejected {
                status: s, code: c, ..
            } => assert_eq!((s, c.as_str()), (status, code)),
            other => panic!("{code}: expected Rejected, got {other:?}"),
        }
    }
    for (status, code) in [(400, "Throttling"), (503, "ServiceUnavailable")] {
        sts.fail_with(status, code);
        let err = src.get_token().await.unwrap_err();
        assert!(err.is_transient(), "{code}: {err:?}");
        assert!(!format!("{err} {err:?}").contains("aws-secret-key"));
    }
    assert!(
        entra.requests().is_empty(),
        "no Entra call without an STS token"
    );
}

/// The real AWS credential chain against an STS emulator, when the interop layer provides one
/// (`KEYWAY_STS_EMULATOR=http://host:port`, AWS keys in the environment).
#[tokio::test]
async fn federated_against_sts_emulator_when_present() {
    let Ok(endpoint) = std::env::var("KEYWAY_STS_EMULATOR") else {
        eprintln!("skipped: KEYWAY_STS_EMULATOR is not set");
        return;
    };
    let sts =
        keyway::credentials::federated::sts_client(Some("us-east-1".into()), Some(endpoint)).await;
    let entra = FakeEntra::start(TENANT).await;
    let src = Federated {
        sts,
        ..federated(&entra, &FakeSts::start().await)
    };
    let jwt = src.web_identity_token().await.unwrap();
    assert!(!jwt.expose().is_empty());
}
