//! A fake of the Entra ID token endpoint (`POST /{tenant}/oauth2/v2.0/token`): validates the
//! client-credentials form as Entra does, answers with Entra's error codes, issues distinct
//! tokens and remembers the current one per (client_id, scope).

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::{Arc, Mutex};

use serde_json::json;

use super::super::{FakeUpstream, Recorded, Reply};
use super::{oauth_error, path_of, reply, Params};

pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// One request to the Entra token endpoint, parsed.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub method: String,
    pub path: String,
    pub content_type: Option<String>,
    pub form: Params,
}

impl TokenRequest {
    /// Asserts a client-credentials request with a client secret, exactly: the endpoint of
    /// `tenant`, a form body holding the four fields and nothing else, each with its value.
    pub fn assert_client_secret(&self, tenant: &str, client: &str, secret: &str, scope: &str) {
        assert_eq!(
            (self.method.as_str(), self.path.as_str()),
            ("POST", format!("/{tenant}/oauth2/v2.0/token").as_str())
        );
        assert_eq!(
            self.content_type.as_deref(),
            Some("application/x-www-form-urlencoded")
        );
        let mut keys = self.form.keys();
        keys.sort();
        assert_eq!(keys, ["client_id", "client_secret", "grant_type", "scope"]);
        assert_eq!(self.form.get("grant_type"), Some("client_credentials"));
        assert_eq!(self.form.get("client_id"), Some(client));
        assert_eq!(self.form.get("client_secret"), Some(secret));
        assert_eq!(self.form.get("scope"), Some(scope));
    }
}

type AssertionCheck = Box<dyn Fn(&str) -> bool + Send + Sync>;

enum ClientCred {
    Secret(String),
    Assertion(AssertionCheck),
}

struct EntraState {
    tenant: String,
    clients: HashMap<String, ClientCred>,
    expires_in: u64,
    outage: bool,
    issued: u64,
    current: HashMap<(String, String), String>,
    /// Tokens revoked before their expiry (resource servers refuse them).
    revoked: Vec<String>,
    requests: Vec<TokenRequest>,
}

/// Shared view of a `FakeEntra`, cloneable into another fake's responder.
#[derive(Clone)]
pub struct EntraHandle(Arc<Mutex<EntraState>>);

impl EntraHandle {
    pub fn add_secret(&self, client_id: &str, secret: &str) {
        let cred = ClientCred::Secret(secret.into());
        self.0
            .lock()
            .unwrap()
            .clients
            .insert(client_id.into(), cred);
    }

    /// Registers a client that proves itself with an assertion `check` accepts.
    pub fn add_assertion(
        &self,
        client_id: &str,
        check: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) {
        let cred = ClientCred::Assertion(Box::new(check));
        self.0
            .lock()
            .unwrap()
            .clients
            .insert(client_id.into(), cred);
    }

    pub fn set_expires_in(&self, secs: u64) {
        self.0.lock().unwrap().expires_in = secs;
    }

    /// While on, every request gets a 503.
    pub fn set_outage(&self, on: bool) {
        self.0.lock().unwrap().outage = on;
    }

    /// The token most recently issued for (client_id, scope).
    pub fn current_token(&self, client_id: &str, scope: &str) -> Option<String> {
        let key = (client_id.to_owned(), scope.to_owned());
        self.0.lock().unwrap().current.get(&key).cloned()
    }

    /// Revokes an issued token, as Entra does when its signing keys roll or the app is
    /// disabled: resource servers (the fake Key Vault) refuse it from now on.
    pub fn revoke(&self, token: &str) {
        let mut st = self.0.lock().unwrap();
        st.revoked.push(token.to_owned());
        st.current.retain(|_, t| t != token);
    }

    /// Whether `token` was revoked.
    pub fn is_revoked(&self, token: &str) -> bool {
        self.0.lock().unwrap().revoked.iter().any(|t| t == token)
    }

    /// Whether `token` is the current token of some (client_id, scope).
    pub fn is_current(&self, token: &str) -> bool {
        self.0.lock().unwrap().current.values().any(|t| t == token)
    }

    /// Every token request received, accepted or not.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.0.lock().unwrap().requests.clone()
    }

    pub fn issued(&self) -> u64 {
        self.0.lock().unwrap().issued
    }

    fn answer(&self, r: &Recorded) -> Reply {
        let req = TokenRequest {
            method: r.method.clone(),
            path: path_of(&r.uri).to_owned(),
            content_type: r.header("content-type").map(str::to_owned),
            form: Params::parse(&r.body),
        };
        let mut st = self.0.lock().unwrap();
        st.requests.push(req.clone());
        if st.outage {
            return reply(503, json!({"error": "temporarily_unavailable"}));
        }
        st.check(&req).unwrap_or_else(|| st.issue(&req.form))
    }
}

impl EntraState {
    /// The error Entra would answer with, if any.
    fn check(&self, req: &TokenRequest) -> Option<Reply> {
        if req.path != format!("/{}/oauth2/v2.0/token", self.tenant) {
            return Some(oauth_error(
                400,
                "invalid_request",
                "AADSTS90002: Tenant not found.",
            ));
        }
        if req.method != "POST" {
            return Some(oauth_error(
                405,
                "invalid_request",
                "AADSTS900561: POST required.",
            ));
        }
        if req.content_type.as_deref() != Some("application/x-www-form-urlencoded") {
            return Some(oauth_error(400, "invalid_request", "AADSTS900144: The request body must contain the following parameter: 'grant_type'."));
        }
        let f = &req.form;
        if f.get("grant_type") != Some("client_credentials") {
            return Some(oauth_error(
                400,
                "unsupported_grant_type",
                "AADSTS70003: unsupported grant type.",
            ));
        }
        if !f.get("scope").is_some_and(|s| s.ends_with("/.default")) {
            return Some(oauth_error(400, "invalid_scope", "AADSTS1002012: Client credential flows must have a scope value with /.default suffixed."));
        }
        let client = f.get("client_id").and_then(|id| self.clients.get(id));
        let Some(cred) = client else {
            return Some(oauth_error(
                400,
                "unauthorized_client",
                "AADSTS700016: Application not found in the directory.",
            ));
        };
        match cred {
            ClientCred::Secret(s) if f.get("client_secret") == Some(s.as_str()) => None,
            ClientCred::Secret(_) => Some(oauth_error(401, "invalid_client", "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value.")),
            ClientCred::Assertion(_) if f.get("client_assertion_type") != Some(JWT_BEARER) => Some(oauth_error(400, "invalid_request", "AADSTS70049: client_assertion_type is invalid.")),
            ClientCred::Assertion(ok) if f.get("client_assertion").is_some_and(ok) => None,
            ClientCred::Assertion(_) => Some(oauth_error(400, "invalid_client", "AADSTS700213: No matching federated identity record found for presented assertion subject.")),
        }
    }

    fn issue(&mut self, form: &Params) -> Reply {
        self.issued += 1;
        let token = format!("entra-tok-{}", self.issued);
        let key = (
            form.get("client_id").unwrap().to_owned(),
            form.get("scope").unwrap().to_owned(),
        );
        self.current.insert(key, token.clone());
        let e = self.expires_in;
        reply(
            200,
            json!({"token_type": "Bearer", "expires_in": e, "ext_expires_in": e, "access_token": token}),
        )
    }
}

/// Entra's token endpoint for one tenant: `POST /{tenant}/oauth2/v2.0/token`.
pub struct FakeEntra {
    pub server: FakeUpstream,
    pub handle: EntraHandle,
}

impl FakeEntra {
    pub async fn start(tenant: &str) -> FakeEntra {
        let handle = EntraHandle(Arc::new(Mutex::new(EntraState {
            tenant: tenant.into(),
            clients: HashMap::new(),
            expires_in: 3599,
            outage: false,
            issued: 0,
            current: HashMap::new(),
            revoked: Vec::new(),
            requests: Vec::new(),
        })));
        let h = handle.clone();
        let server = FakeUpstream::with(move |r| h.answer(r)).await;
        FakeEntra { server, handle }
    }

    /// What goes in `authority` (no trailing slash).
    pub fn authority(&self) -> String {
        self.server.base()
    }
}

impl Deref for FakeEntra {
    type Target = EntraHandle;
    fn deref(&self) -> &EntraHandle {
        &self.handle
    }
}
