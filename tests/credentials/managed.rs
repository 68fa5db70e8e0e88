//! `managed` mode: IMDS (system- and user-assigned) and App Service against their fakes.

use std::time::{Duration, Instant};

use keyway::credentials::imds::{resource_from_scope, AppService, Imds};
use keyway::credentials::{CredentialError, IdentityHttp, COGNITIVE_SCOPE};
use keyway::secret::Secret;

use crate::common::identity::{
    path_of, FakeAppService, FakeImds, Params, IMDS_PATH, MANAGED_EXPIRES_IN,
};
use crate::common::{free_port, FakeUpstream, Reply};
use crate::{assert_expires_in, COGNITIVE_RESOURCE};

fn imds(fake: &FakeImds, client_id: Option<&str>) -> Imds {
    Imds {
        endpoint: fake.endpoint(),
        ..Imds::new(
            IdentityHttp::new(),
            resource_from_scope(COGNITIVE_SCOPE),
            client_id.map(Into::into),
        )
    }
}

#[tokio::test]
async fn imds_system_assigned_sends_metadata_header_and_exact_resource() {
    let fake = FakeImds::start(&["ua-1"]).await;
    let token = imds(&fake, None).get_token().await.unwrap();
    assert!(token.value.expose().starts_with("imds-tok-"));
    assert_expires_in(&token, MANAGED_EXPIRES_IN);
    let req = fake.server.only();
    assert_eq!(req.method, "GET");
    assert_eq!(req.header("metadata"), Some("true"));
    assert_eq!(
        req.uri,
        format!("{IMDS_PATH}?api-version=2018-02-01&resource=https%3A%2F%2Fcognitiveservices.azure.com%2F")
    );
    let q = Params::query(&req.uri);
    assert_eq!(q.keys(), ["api-version", "resource"]);
    assert_eq!(q.get("resource"), Some(COGNITIVE_RESOURCE));
}

#[tokio::test]
async fn imds_user_assigned_sends_client_id_and_unknown_is_rejected() {
    let fake = FakeImds::start(&["ua-1"]).await;
    imds(&fake, Some("ua-1")).get_token().await.unwrap();
    let q = Params::query(&fake.server.only().uri);
    assert_eq!(q.keys(), ["api-version", "resource", "client_id"]);
    assert_eq!(q.get("client_id"), Some("ua-1"));
    let err = imds(&fake, Some("ua-unknown"))
        .get_token()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CredentialError::Rejected { status: 400, code, .. } if code == "identity_not_found"),
        "{err:?}"
    );
    assert!(!err.is_transient());
}

#[tokio::test]
async fn imds_throttling_is_transient() {
    let fake = FakeUpstream::with(|_| Reply::Json {
        status: 429,
        body: "{}".into(),
        headers: vec![],
    })
    .await;
    let src = Imds {
        endpoint: fake.base(),
        ..Imds::new(IdentityHttp::new(), COGNITIVE_RESOURCE, None)
    };
    let err = src.get_token().await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(
        !err.to_string().contains('?'),
        "endpoint must not carry the query: {err}"
    );
}

#[tokio::test]
async fn imds_unreachable_fails_fast() {
    // A closed port refuses at once; a black-holed address hits the 1 s connect timeout.
    for endpoint in [
        format!("http://127.0.0.1:{}", free_port()),
        "http://10.255.255.1".to_owned(),
    ] {
        let src = Imds {
            endpoint,
            ..Imds::new(IdentityHttp::new(), COGNITIVE_RESOURCE, None)
        };
        let start = Instant::now();
        let err = src.get_token().await.unwrap_err();
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "took {:?}",
            start.elapsed()
        );
        assert!(err.is_transient(), "{err:?}");
    }
}

#[tokio::test]
async fn app_service_sends_identity_header_and_api_version() {
    let fake = FakeAppService::start("/msi/token", "hdr-s3cret").await;
    let mut src = AppService {
        http: IdentityHttp::new(),
        endpoint: fake.endpoint(),
        header: Secret::new("hdr-s3cret"),
        resource: COGNITIVE_RESOURCE.into(),
        client_id: None,
    };
    let token = src.get_token().await.unwrap();
    assert_expires_in(&token, MANAGED_EXPIRES_IN);
    let req = fake.server.only();
    assert_eq!(
        (req.method.as_str(), path_of(&req.uri)),
        ("GET", "/msi/token")
    );
    assert_eq!(req.header("x-identity-header"), Some("hdr-s3cret"));
    let q = Params::query(&req.uri);
    assert_eq!(q.keys(), ["api-version", "resource"]);
    assert_eq!(
        (q.get("api-version"), q.get("resource")),
        (Some("2019-08-01"), Some(COGNITIVE_RESOURCE))
    );
    src.header = Secret::new("stale-header");
    let err = src.get_token().await.unwrap_err();
    assert!(
        matches!(err, CredentialError::Rejected { status: 401, .. }),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains("stale-header"));
}
