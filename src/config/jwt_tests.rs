use super::*;

const AUTHORITY: &str = "https://login.microsoftonline.com";

fn parse(toml_text: &str) -> Result<JwtSettings, String> {
    let section: JwtSection = toml::from_str(toml_text).map_err(|e| e.to_string())?;
    validate(section, "auth.jwt[0]", AUTHORITY)
}

fn base(extra: &str) -> String {
    format!(
        "openid_config = \"https://idp.example/.well-known/openid-configuration\"\n\
             issuers = [\"https://idp.example\"]\naudiences = [\"api://keyway\"]\n{extra}"
    )
}

#[test]
fn defaults_follow_apim() {
    let s = parse(&base("")).unwrap();
    assert_eq!(s.header, http::header::AUTHORIZATION);
    assert_eq!(s.scheme.as_deref(), Some("Bearer"));
    assert_eq!(s.clock_skew, Duration::from_secs(300));
    assert!(s.require_expiration_time);
    assert_eq!(s.failed_status, 401);
    assert_eq!(s.failed_message, DEFAULT_FAILED_MESSAGE);
    assert_eq!(s.refresh_interval, Duration::from_secs(300));
    assert!(matches!(s.source, JwksSource::OpenIdConfig(_)));
    let s = parse(&base("header = \"x-portkey-api-key\"")).unwrap();
    assert_eq!(s.scheme, None);
    let s = parse(&base("scheme = \"\"")).unwrap();
    assert_eq!(s.scheme, None);
}

#[test]
fn tenant_id_adds_v1_and_v2_issuers_and_discovery() {
    const T: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    let s = parse(&format!("tenant_id = \"{T}\"\naudiences = [\"api://k\"]")).unwrap();
    assert_eq!(
        s.issuers,
        vec![
            format!("https://sts.windows.net/{T}/"),
            format!("{AUTHORITY}/{T}/v2.0")
        ]
    );
    let JwksSource::OpenIdConfig(u) = &s.source else {
        panic!("{:?}", s.source)
    };
    assert_eq!(
        u.as_str(),
        format!("https://login.microsoftonline.com/{T}/v2.0/.well-known/openid-configuration")
    );
    assert_eq!(
        s.issuer_document.as_ref(),
        Some(u),
        "the tenant's issuer is discovered"
    );
    let s = parse("tenant_id = \"contoso.onmicrosoft.com\"\naudiences = [\"a\"]").unwrap();
    assert!(
        s.issuers.is_empty(),
        "a domain's issuers come from discovery only"
    );
    let s = parse(&base("tenant_id = \"contoso.onmicrosoft.com\"")).unwrap();
    assert!(
        matches!(s.source, JwksSource::OpenIdConfig(ref u) if u.host_str() == Some("idp.example"))
    );
    assert_eq!(
            s.issuer_document.unwrap().as_str(),
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0/.well-known/openid-configuration"
        );
    assert_eq!(parse(&base("")).unwrap().issuer_document, None);
    let section: JwtSection =
        toml::from_str(&format!("tenant_id = \"{T}\"\naudiences = [\"a\"]")).unwrap();
    let s = validate(section, "auth.jwt[0]", "http://127.0.0.1:5000/").unwrap();
    assert_eq!(s.issuers[1], format!("http://127.0.0.1:5000/{T}/v2.0"));
    assert!(is_guid(T) && !is_guid("contoso.onmicrosoft.com") && !is_guid("t1"));
}

#[test]
fn errors_name_the_field() {
    let cases = [
        (
            "audiences = [\"a\"]\nissuers = [\"i\"]",
            "auth.jwt[0]: set one of",
        ),
        (&base("jwks_uri = \"https://x/keys\""), "set only one"),
        (&base("bogus = 1"), "unknown field"),
        (
            &base("clock_skew_seconds = 99999"),
            "auth.jwt[0].clock_skew_seconds",
        ),
        (
            &base("failed_validation_httpcode = 200"),
            "failed_validation_httpcode",
        ),
        (&base("tenant_id = \"a/b\""), "auth.jwt[0].tenant_id"),
        (&base("header = \"bad header\""), "auth.jwt[0].header"),
        (&base("scheme = \"Bearer x\""), "auth.jwt[0].scheme"),
        (
            &base("refresh_interval_seconds = 0"),
            "refresh_interval_seconds",
        ),
        (
            &base("workspace_claim = \"\""),
            "auth.jwt[0].workspace_claim",
        ),
        (
            &base("required_claims = [{ name = \"r\", match = \"some\" }]"),
            "auth.jwt[0].required_claims[0].match",
        ),
        (
            "openid_config = \"ftp://x\"\nissuers = [\"i\"]\naudiences = [\"a\"]",
            "auth.jwt[0].openid_config",
        ),
        (
            "jwks_uri = \"https://x/k\"\naudiences = [\"a\"]",
            "set issuers or tenant_id",
        ),
        (
            "jwks_uri = \"https://x/k\"\nissuers = [\"i\"]",
            "auth.jwt[0].audiences",
        ),
        (
            "keys = [{ kty = \"oct\", kid = \"h\" }]\nissuers = [\"i\"]\naudiences = [\"a\"]",
            "auth.jwt[0].keys[0]: symmetric",
        ),
        (
            "keys = []\nissuers = [\"i\"]\naudiences = [\"a\"]",
            "auth.jwt[0].keys",
        ),
    ];
    for (text, needle) in cases {
        let e = parse(text).unwrap_err();
        assert!(e.contains(needle), "{text:?}: {e:?} lacks {needle:?}");
    }
}

#[test]
fn required_claims_and_inline_keys() {
    let n = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        [0xc5u8; 256],
    );
    let s = parse(&format!(
            "keys = [{{ kty = \"RSA\", kid = \"k1\", n = \"{n}\", e = \"AQAB\", alg = \"RS256\" }}]\n\
             issuers = [\"i\"]\naudiences = [\"a\"]\n\
             required_claims = [{{ name = \"roles\", match = \"any\", values = [\"x\", \"y\"] }}, {{ name = \"tid\" }}]"
        ))
        .unwrap();
    assert!(matches!(&s.source, JwksSource::Inline(k) if k.len() == 1));
    assert_eq!(s.required_claims[0].match_, ClaimMatch::Any);
    assert_eq!(s.required_claims[1].match_, ClaimMatch::All);
    assert!(s.required_claims[1].values.is_empty());
}
