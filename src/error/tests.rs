use super::*;
use crate::auth::INVALID_API_KEY;
use crate::credentials::AuthMode;

fn json(r: &ErrorResponse) -> serde_json::Value {
    serde_json::from_slice(&r.body()).unwrap()
}

#[test]
fn keyway_errors_are_portkey_shaped() {
    let r = ErrorResponse::from(&RouteError::MissingProvider);
    assert_eq!(r.status, 400);
    let v = json(&r);
    assert_eq!(v["status"], "failure");
    assert_eq!(
        v["message"],
        "Either x-portkey-config or x-portkey-provider header is required"
    );
    assert_eq!(ErrorResponse::from(&RouteError::NoRoute).status, 404);
}

#[test]
fn upstream_errors_map_to_502_and_504() {
    let e = Error::explain(ErrorType::ConnectRefused, "x").into_up();
    assert_eq!(for_proxy_error(&e).unwrap().status, 502);
    let e = Error::explain(ErrorType::ReadTimedout, "x").into_up();
    assert_eq!(for_proxy_error(&e).unwrap().status, 504);
    let e = Error::explain(ErrorType::ConnectionClosed, "x").into_down();
    assert!(for_proxy_error(&e).is_none());
}

#[test]
fn authentication_errors_are_openai_shaped_with_www_authenticate() {
    let r = ErrorResponse::from(&AuthError::Missing);
    let v = json(&r);
    assert_eq!(
        (r.status, v["error"]["code"].as_str()),
        (401, Some("missing_credentials"))
    );
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(r.www_authenticate, Some("Bearer realm=\"keyway\""));
    let e = AuthError::Invalid {
        reason: INVALID_API_KEY,
    };
    let r = ErrorResponse::from(&e);
    assert_eq!(json(&r)["error"]["message"], INVALID_API_KEY);
    assert!(r.www_authenticate.unwrap().contains("invalid_token"));
    let r = ErrorResponse::from(&AuthError::Forbidden {
        what: "model gpt-4o is not allowed in workspace team-a".into(),
    });
    assert_eq!(
        (r.status, json(&r)["error"]["type"].as_str()),
        (403, Some("permission_error"))
    );
    assert!(r.www_authenticate.is_none());
    let r = ErrorResponse::from(&AuthError::Expired);
    assert_eq!(json(&r)["error"]["code"], "expired_api_key");
    let r = ErrorResponse::from(&AuthError::VirtualKeyNeedsCredential);
    assert_eq!(
        (r.status, json(&r)["status"].as_str()),
        (400, Some("failure"))
    );
}

#[test]
fn jwt_refusals_keep_the_validators_status_and_message() {
    let r = ErrorResponse::from(&AuthError::Jwt {
        status: 403,
        message: "JWT not present or invalid.".into(),
        outcome: Outcome::Invalid,
    });
    let v = json(&r);
    assert_eq!(r.status, 403);
    assert_eq!(v["error"]["message"], "JWT not present or invalid.");
    assert_eq!(v["error"]["code"], "invalid_token");
    assert!(r.www_authenticate.is_none());
}

#[test]
fn gateway_errors_have_their_statuses() {
    let cases: [(GatewayError, u16); 6] = [
        (GatewayError::UnresolvableHost("x.example".into()), 502),
        (GatewayError::BodyUnreadable, 400),
        (GatewayError::BodyTooLarge, 413),
        (GatewayError::BodyNotJson, 400),
        (GatewayError::SecretNotHeaderSafe("s".into()), 503),
        (
            GatewayError::SecretForbidden {
                slug: "s".into(),
                workspace: None,
            },
            403,
        ),
    ];
    for (e, status) in cases {
        assert_eq!(ErrorResponse::from(&e).status, status, "{e}");
    }
    let rejected = CredentialError::Rejected {
        mode: AuthMode::Entra,
        status: 401,
        code: "invalid_client".into(),
        aadsts: None,
    };
    let caller = GatewayError::Credential {
        error: rejected.clone(),
        configured: false,
    };
    let own = GatewayError::Credential {
        error: rejected,
        configured: true,
    };
    assert_eq!(ErrorResponse::from(&caller).status, 401);
    assert_eq!(ErrorResponse::from(&own).status, 502);
    let f = ErrorResponse::from(&GatewayError::SecretForbidden {
        slug: "kv".into(),
        workspace: Some("team-b".into()),
    });
    assert_eq!(
        json(&f)["error"]["message"],
        "secret reference 'kv' is not available to workspace 'team-b'"
    );
}
