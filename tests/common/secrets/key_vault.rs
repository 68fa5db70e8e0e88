//! The Azure Key Vault fake.

use super::*;

// ---------------------------------------------------------------------------------------------
// Azure Key Vault

struct KvVersion {
    id: String,
    value: String,
    created: u64,
}

struct KvState {
    entra: EntraHandle,
    /// `WWW-Authenticate` of a 401, as Key Vault sends it (names the tenant's authority).
    challenge: &'static str,
    base: String,
    readers: Vec<String>,
    secrets: HashMap<String, Vec<KvVersion>>,
    fetches: HashMap<String, usize>,
    outage: Outage,
    delay: Option<Duration>,
    unauthorized: usize,
}

/// Azure Key Vault's secrets API: `GET /secrets/{name}[/{version}]?api-version=7.4` with an Entra
/// token for `https://vault.azure.net/.default` issued to one of the vault's readers (not
/// necessarily the newest one: Entra tokens do not revoke each other).
pub struct FakeKeyVault {
    pub server: FakeUpstream,
    front: Front,
    state: Arc<Mutex<KvState>>,
}

impl FakeKeyVault {
    /// A vault whose tokens come from `entra` (tenant `tenant`); nobody may read until
    /// `allow_reader`.
    pub async fn start(entra: &FakeEntra, tenant: &str) -> FakeKeyVault {
        let challenge: &'static str = Box::leak(
            format!(
                "Bearer authorization=\"{}/{tenant}\", resource=\"https://vault.azure.net\"",
                entra.authority()
            )
            .into_boxed_str(),
        );
        let state = Arc::new(Mutex::new(KvState {
            entra: entra.handle.clone(),
            challenge,
            base: String::new(),
            readers: Vec::new(),
            secrets: HashMap::new(),
            fetches: HashMap::new(),
            outage: Outage::None,
            delay: None,
            unauthorized: 0,
        }));
        let st = state.clone();
        let server = FakeUpstream::with(move |r| st.lock().unwrap().answer(r)).await;
        let front = Front::start(server.port);
        state.lock().unwrap().base = format!("http://127.0.0.1:{}", front.port);
        FakeKeyVault {
            server,
            front,
            state,
        }
    }

    /// What goes in `azure_vault_url`.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.front.port)
    }

    /// Grants `client_id` (an Entra app) read access to secrets.
    pub fn allow_reader(&self, client_id: &str) {
        self.state.lock().unwrap().readers.push(client_id.into());
    }

    /// Sets (or rotates) a secret: a new current version; returns its version id.
    pub fn set(&self, name: &str, value: &str) -> String {
        let id = random_hex(32);
        let v = KvVersion {
            id: id.clone(),
            value: value.into(),
            created: unix_now(),
        };
        let mut st = self.state.lock().unwrap();
        st.secrets.entry(name.into()).or_default().push(v);
        id
    }

    /// Requests addressed to secret `name` (any version, any outcome).
    pub fn fetches(&self, name: &str) -> usize {
        *self.state.lock().unwrap().fetches.get(name).unwrap_or(&0)
    }

    /// Requests answered 401 (no or wrong token).
    pub fn unauthorized(&self) -> usize {
        self.state.lock().unwrap().unauthorized
    }

    /// Takes the manager down (or up again); returns once the change is in effect.
    pub async fn set_outage(&self, o: Outage) {
        self.state.lock().unwrap().outage = o;
        self.front.set_refused(o == Outage::Refused).await;
    }

    /// Every answer waits this long first.
    pub fn set_delay(&self, d: Option<Duration>) {
        self.state.lock().unwrap().delay = d;
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.server.requests()
    }
}

fn kv_error(status: u16, code: &str, message: &str) -> Reply {
    json_reply(
        status,
        json!({"error": {"code": code, "message": message}}),
        vec![],
    )
}

impl KvState {
    fn answer(&mut self, r: &Recorded) -> Reply {
        let reply = self.check(r);
        delayed(self.delay, reply)
    }

    fn check(&mut self, r: &Recorded) -> Reply {
        let path = path_of(&r.uri);
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let (name, version) = match parts.as_slice() {
            ["secrets", name] => (*name, None),
            ["secrets", name, v] => (*name, Some(*v)),
            _ => {
                return kv_error(
                    404,
                    "NotFound",
                    &format!("The requested resource {path} was not found."),
                )
            }
        };
        *self.fetches.entry(name.into()).or_default() += 1;
        if self.outage == Outage::Unavailable {
            return kv_error(
                503,
                "ServiceUnavailable",
                "The service is currently unavailable. Try again later.",
            );
        }
        if r.method != "GET" {
            return kv_error(
                405,
                "MethodNotAllowed",
                &format!(
                    "The requested resource does not support http method '{}'.",
                    r.method
                ),
            );
        }
        let q = Params::query(&r.uri);
        match q.get("api-version") {
            None => {
                return kv_error(
                    400,
                    "BadParameter",
                    "The request is missing the required query parameter api-version.",
                )
            }
            Some(v) if v != KV_API_VERSION => {
                return kv_error(400, "BadParameter", &format!("The specified version ({v}) is not recognized. Consider using the latest supported version ({KV_API_VERSION})."))
            }
            Some(_) => {}
        }
        if let Some(reply) = self.unauthorized_reply(r) {
            self.unauthorized += 1;
            return reply;
        }
        let not_found = || {
            kv_error(404, "SecretNotFound", &format!("A secret with (name/id) {name} was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"))
        };
        let Some(versions) = self.secrets.get(name) else {
            return not_found();
        };
        let found = match version {
            None | Some("") => versions.last(),
            Some(v) => versions.iter().find(|x| x.id == v),
        };
        let Some(v) = found else { return not_found() };
        json_reply(
            200,
            json!({
                "value": v.value,
                "id": format!("{}/secrets/{name}/{}", self.base, v.id),
                "attributes": {
                    "enabled": true,
                    "created": v.created,
                    "updated": v.created,
                    "recoveryLevel": "Recoverable+Purgeable",
                    "recoverableDays": 90
                },
                "tags": {}
            }),
            vec![],
        )
    }

    /// Whether Entra issued `t` for the vault scope to one of the readers. Entra tokens stay
    /// valid when newer ones are issued, so an older token passes as long as the issuance can be
    /// told from Entra's records: `FakeEntra` names its n-th token `entra-tok-n`, which maps
    /// tokens to requests exactly when every request it received was answered with a token.
    /// Otherwise only the reader's current token passes.
    fn issued_to_a_reader(&self, t: &str) -> bool {
        if self.entra.is_revoked(t) {
            return false;
        }
        let is_reader = |c: Option<&str>| c.is_some_and(|c| self.readers.iter().any(|r| r == c));
        if self
            .readers
            .iter()
            .any(|c| self.entra.current_token(c, VAULT_SCOPE).as_deref() == Some(t))
        {
            return true;
        }
        let reqs = self.entra.requests();
        reqs.len() as u64 == self.entra.issued()
            && reqs.iter().enumerate().any(|(i, r)| {
                t == format!("entra-tok-{}", i + 1)
                    && r.form.get("scope") == Some(VAULT_SCOPE)
                    && is_reader(r.form.get("client_id"))
            })
    }

    /// Key Vault's 401 with its challenge, unless the bearer is a current vault-scope token of
    /// one of the readers.
    fn unauthorized_reply(&self, r: &Recorded) -> Option<Reply> {
        let token = r
            .header("authorization")
            .and_then(|h| h.strip_prefix("Bearer "));
        let message = match token {
            None => "AKV10000: Request is missing a Bearer or PoP token.",
            Some(t) if self.issued_to_a_reader(t) => return None,
            Some(_) => "AKV10032: Invalid issuer, audience or expired token.",
        };
        Some(json_reply(
            401,
            json!({"error": {"code": "Unauthorized", "message": message}}),
            vec![("www-authenticate", self.challenge)],
        ))
    }
}
