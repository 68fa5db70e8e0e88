//! A fake of AWS STS `GetWebIdentityToken` (query protocol, XML answers), enough for the
//! `entraFederated` flow: checks the action, version, audience, signing algorithm and that the
//! request is SigV4-signed; issues distinct JWT-shaped tokens; can be told to fail with an AWS
//! error code.

use std::sync::{Arc, Mutex};

use super::super::{FakeUpstream, Recorded, Reply};
use super::{path_of, Params};

#[derive(Default)]
struct StsState {
    failure: Option<(u16, &'static str)>,
    issued: Vec<String>,
}

pub struct FakeSts {
    pub server: FakeUpstream,
    state: Arc<Mutex<StsState>>,
}

impl FakeSts {
    pub async fn start() -> FakeSts {
        let state = Arc::new(Mutex::new(StsState::default()));
        let st = state.clone();
        let server = FakeUpstream::with(move |r| answer(r, &mut st.lock().unwrap())).await;
        FakeSts { server, state }
    }

    pub fn endpoint(&self) -> String {
        self.server.base()
    }

    /// From now on answer every valid request with this AWS error.
    pub fn fail_with(&self, status: u16, code: &'static str) {
        self.state.lock().unwrap().failure = Some((status, code));
    }

    /// The tokens issued so far, oldest first.
    pub fn issued(&self) -> Vec<String> {
        self.state.lock().unwrap().issued.clone()
    }
}

fn xml(status: u16, body: String) -> Reply {
    Reply::Json {
        status,
        body,
        headers: vec![],
    }
}

fn aws_error(status: u16, code: &str) -> Reply {
    let kind = if status >= 500 { "Receiver" } else { "Sender" };
    xml(
        status,
        format!(
            r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>{kind}</Type><Code>{code}</Code><Message>fake {code}</Message></Error><RequestId>fake-req</RequestId></ErrorResponse>"#
        ),
    )
}

fn answer(r: &Recorded, st: &mut StsState) -> Reply {
    let form = Params::parse(&r.body);
    if r.method != "POST" || path_of(&r.uri) != "/" {
        return aws_error(404, "NotFound");
    }
    let signed = r
        .header("authorization")
        .is_some_and(|a| a.starts_with("AWS4-HMAC-SHA256 Credential="));
    if !signed {
        return aws_error(403, "MissingAuthenticationToken");
    }
    if form.get("Action") != Some("GetWebIdentityToken")
        || form.get("Version") != Some("2011-06-15")
    {
        return aws_error(400, "InvalidAction");
    }
    let alg_ok = matches!(form.get("SigningAlgorithm"), Some("RS256" | "ES384"));
    if form.get("Audience.member.1").is_none() || !alg_ok {
        return aws_error(400, "ValidationError");
    }
    if let Some((status, code)) = st.failure {
        return aws_error(status, code);
    }
    let jwt = format!("eyJhbGciOiJSUzI1NiJ9.aws-{}.sig", st.issued.len() + 1);
    st.issued.push(jwt.clone());
    xml(
        200,
        format!(
            r#"<GetWebIdentityTokenResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetWebIdentityTokenResult><WebIdentityToken>{jwt}</WebIdentityToken><Expiration>2030-01-01T00:05:00Z</Expiration></GetWebIdentityTokenResult><ResponseMetadata><RequestId>fake-req</RequestId></ResponseMetadata></GetWebIdentityTokenResponse>"#
        ),
    )
}
