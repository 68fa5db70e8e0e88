//! Local fakes of the Azure identity endpoints (Entra token endpoint, IMDS, App Service) and of
//! AWS STS `GetWebIdentityToken`, built on `FakeUpstream`. Each checks requests the way the real
//! service does, answers in the real shape, and records what it received.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::{FakeUpstream, Recorded, Reply};

pub mod entra;
pub mod sts;

// Not every test crate that includes `common` uses every fake.
#[allow(unused_imports)]
pub use entra::{EntraHandle, FakeEntra, TokenRequest, JWT_BEARER};

fn reply(status: u16, body: Value) -> Reply {
    Reply::Json {
        status,
        body: body.to_string(),
        headers: vec![],
    }
}

fn oauth_error(status: u16, error: &str, description: &str) -> Reply {
    reply(
        status,
        json!({"error": error, "error_description": description}),
    )
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Form or query pairs, parsed by a real parser.
#[derive(Debug, Clone, Default)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    pub fn parse(s: &[u8]) -> Params {
        Params(url::form_urlencoded::parse(s).into_owned().collect())
    }

    /// The query of a recorded request URI.
    pub fn query(uri: &str) -> Params {
        Params::parse(uri.split_once('?').map_or("", |(_, q)| q).as_bytes())
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_str()).collect()
    }
}

pub fn path_of(uri: &str) -> &str {
    uri.split_once('?').map_or(uri, |(p, _)| p)
}

pub const IMDS_PATH: &str = "/metadata/identity/oauth2/token";
pub const MANAGED_EXPIRES_IN: u64 = 86399;

fn managed_token(prefix: &str, resource: &str, client_id: &str) -> Value {
    let n = rand::random::<u32>();
    json!({
        "access_token": format!("{prefix}-tok-{n}"),
        "client_id": client_id,
        "expires_in": MANAGED_EXPIRES_IN.to_string(),
        "expires_on": (unix_now() + MANAGED_EXPIRES_IN).to_string(),
        "ext_expires_in": MANAGED_EXPIRES_IN.to_string(),
        "not_before": unix_now().to_string(),
        "resource": resource,
        "token_type": "Bearer",
    })
}

/// The Instance Metadata Service. `user_assigned` lists the client ids of the identities
/// attached to the "VM"; without a `client_id` the system-assigned identity answers.
pub struct FakeImds {
    pub server: FakeUpstream,
}

impl FakeImds {
    pub async fn start(user_assigned: &[&str]) -> FakeImds {
        let known: Vec<String> = user_assigned.iter().map(|s| s.to_string()).collect();
        let server = FakeUpstream::with(move |r| imds_answer(r, &known)).await;
        FakeImds { server }
    }

    pub fn endpoint(&self) -> String {
        self.server.base()
    }
}

fn imds_answer(r: &Recorded, known: &[String]) -> Reply {
    let q = Params::query(&r.uri);
    if r.method != "GET" || path_of(&r.uri) != IMDS_PATH {
        return reply(404, json!({"error": "not_found"}));
    }
    if r.header("metadata") != Some("true") {
        return oauth_error(
            400,
            "invalid_request",
            "Required metadata header not specified",
        );
    }
    if q.get("api-version") != Some("2018-02-01") {
        return oauth_error(400, "invalid_request", "Invalid API version");
    }
    let Some(resource) = q.get("resource") else {
        return oauth_error(
            400,
            "invalid_request",
            "Required query variable 'resource' is missing",
        );
    };
    let client_id = match q.get("client_id") {
        Some(id) if !known.iter().any(|k| k == id) => {
            return oauth_error(400, "identity_not_found", "Identity not found");
        }
        Some(id) => id,
        None => "system-assigned-client",
    };
    reply(200, managed_token("imds", resource, client_id))
}

/// App Service / Container Apps: `GET {path}?api-version=2019-08-01&resource=…` with
/// `X-IDENTITY-HEADER`.
pub struct FakeAppService {
    pub server: FakeUpstream,
    pub path: &'static str,
}

impl FakeAppService {
    pub async fn start(path: &'static str, header_secret: &str) -> FakeAppService {
        let secret = header_secret.to_owned();
        let server = FakeUpstream::with(move |r| app_service_answer(r, path, &secret)).await;
        FakeAppService { server, path }
    }

    /// What goes in `IDENTITY_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("{}{}", self.server.base(), self.path)
    }
}

fn app_service_answer(r: &Recorded, path: &str, secret: &str) -> Reply {
    let q = Params::query(&r.uri);
    let bad = |status: u16, msg: &str| reply(status, json!({"statusCode": status, "message": msg}));
    if r.method != "GET" || path_of(&r.uri) != path {
        return bad(404, "Not found");
    }
    match r.header("x-identity-header") {
        None => return bad(400, "X-IDENTITY-HEADER is required"),
        Some(h) if h != secret => return bad(401, "Invalid X-IDENTITY-HEADER"),
        Some(_) => {}
    }
    if q.get("api-version") != Some("2019-08-01") {
        return bad(400, "Unsupported api-version");
    }
    let Some(resource) = q.get("resource") else {
        return bad(400, "resource is required");
    };
    let mut v = managed_token(
        "appsvc",
        resource,
        q.get("client_id").unwrap_or("app-system"),
    );
    for k in ["expires_in", "ext_expires_in", "not_before"] {
        v.as_object_mut().unwrap().remove(k);
    }
    reply(200, v)
}
