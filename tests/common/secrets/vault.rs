//! The HashiCorp Vault fake.

use super::*;

// ---------------------------------------------------------------------------------------------
// HashiCorp Vault

struct VaultVersion {
    data: Map<String, Value>,
    created: String,
}

struct AppRole {
    secret_id: String,
    role_name: String,
}

struct VaultState {
    /// token → expiry (None: never expires).
    tokens: HashMap<String, Option<Instant>>,
    namespace: Option<String>,
    /// mount → KV version (1 or 2).
    mounts: HashMap<String, u8>,
    secrets: HashMap<(String, String), Vec<VaultVersion>>,
    roles: HashMap<String, AppRole>,
    lease_seconds: u64,
    logins: usize,
    failed_logins: usize,
    reads: HashMap<(String, String), usize>,
    denied: usize,
    outage: Outage,
    delay: Option<Duration>,
}

/// HashiCorp Vault: token auth, an optional required namespace, KV v1/v2 mounts and AppRole
/// logins whose tokens stop working after their lease.
pub struct FakeVault {
    pub server: FakeUpstream,
    front: Front,
    state: Arc<Mutex<VaultState>>,
}

fn vault_errors(status: u16, errors: &[&str]) -> Reply {
    json_reply(status, json!({ "errors": errors }), vec![])
}

fn denied() -> Reply {
    vault_errors(403, &["permission denied"])
}

impl FakeVault {
    /// A vault with a KV v2 mount at `secret/` (as `vault server -dev` has) and no tokens.
    pub async fn start() -> FakeVault {
        let state = Arc::new(Mutex::new(VaultState {
            tokens: HashMap::new(),
            namespace: None,
            mounts: HashMap::from([("secret".to_owned(), 2)]),
            secrets: HashMap::new(),
            roles: HashMap::new(),
            lease_seconds: 3600,
            logins: 0,
            failed_logins: 0,
            reads: HashMap::new(),
            denied: 0,
            outage: Outage::None,
            delay: None,
        }));
        let st = state.clone();
        let server = FakeUpstream::with(move |r| st.lock().unwrap().answer(r)).await;
        let front = Front::start(server.port);
        FakeVault {
            server,
            front,
            state,
        }
    }

    /// What goes in `vault_addr`.
    pub fn addr(&self) -> String {
        format!("http://127.0.0.1:{}", self.front.port)
    }

    /// A token that never expires.
    pub fn add_token(&self, token: &str) {
        self.state.lock().unwrap().tokens.insert(token.into(), None);
    }

    /// Every request must carry `X-Vault-Namespace: ns` (tokens and roles live in it).
    pub fn require_namespace(&self, ns: &str) {
        self.state.lock().unwrap().namespace = Some(ns.into());
    }

    /// Mounts a KV engine (`version` 1 or 2) at `mount`.
    pub fn mount(&self, mount: &str, version: u8) {
        assert!(version == 1 || version == 2);
        let mut st = self.state.lock().unwrap();
        st.mounts.insert(mount.into(), version);
    }

    /// Writes `data` (a JSON object) at `mount/path`: a new version on a v2 mount, an overwrite
    /// on a v1 mount. Returns the version number.
    pub fn set(&self, mount: &str, path: &str, data: Value) -> usize {
        let data = data.as_object().expect("a JSON object").clone();
        let mut st = self.state.lock().unwrap();
        assert!(st.mounts.contains_key(mount), "no mount {mount}");
        let v = VaultVersion {
            data,
            created: rfc3339_now(),
        };
        let versions = st.secrets.entry((mount.into(), path.into())).or_default();
        versions.push(v);
        versions.len()
    }

    /// An AppRole whose login answers tokens living `set_lease` seconds.
    pub fn add_approle(&self, role_id: &str, secret_id: &str, role_name: &str) {
        let role = AppRole {
            secret_id: secret_id.into(),
            role_name: role_name.into(),
        };
        self.state
            .lock()
            .unwrap()
            .roles
            .insert(role_id.into(), role);
    }

    /// Revokes every token, static and AppRole: later requests with them get 403.
    pub fn revoke_tokens(&self) {
        self.state.lock().unwrap().tokens.clear();
    }

    /// `lease_duration` of the tokens AppRole logins issue from now on.
    pub fn set_lease(&self, secs: u64) {
        self.state.lock().unwrap().lease_seconds = secs;
    }

    /// Successful AppRole logins.
    pub fn logins(&self) -> usize {
        self.state.lock().unwrap().logins
    }

    /// Refused AppRole logins.
    pub fn failed_logins(&self) -> usize {
        self.state.lock().unwrap().failed_logins
    }

    /// Read requests for `mount/path` (any outcome).
    pub fn reads(&self, mount: &str, path: &str) -> usize {
        let st = self.state.lock().unwrap();
        *st.reads.get(&(mount.into(), path.into())).unwrap_or(&0)
    }

    /// Read requests for any secret.
    pub fn all_reads(&self) -> usize {
        self.state.lock().unwrap().reads.values().sum()
    }

    /// Requests refused with 403 (unknown, expired or wrong-namespace token).
    pub fn denied(&self) -> usize {
        self.state.lock().unwrap().denied
    }

    /// Takes the manager down (or up again); returns once the change is in effect.
    pub async fn set_outage(&self, o: Outage) {
        self.state.lock().unwrap().outage = o;
        self.front.set_refused(o == Outage::Refused).await;
    }

    pub fn set_delay(&self, d: Option<Duration>) {
        self.state.lock().unwrap().delay = d;
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.server.requests()
    }
}

impl VaultState {
    fn answer(&mut self, r: &Recorded) -> Reply {
        let reply = self.route(r);
        delayed(self.delay, reply)
    }

    fn route(&mut self, r: &Recorded) -> Reply {
        if self.outage == Outage::Unavailable {
            return vault_errors(503, &["Vault is sealed"]);
        }
        let path = path_of(&r.uri);
        let Some(rest) = path.strip_prefix("/v1/") else {
            return vault_errors(404, &[]);
        };
        if rest == "auth/approle/login" {
            return self.login(r);
        }
        if r.method != "GET" {
            return vault_errors(405, &["unsupported operation"]);
        }
        let mut mounts: Vec<(&String, &u8)> = self.mounts.iter().collect();
        mounts.sort_by_key(|(m, _)| std::cmp::Reverse(m.len()));
        let found = mounts.into_iter().find_map(|(m, v)| {
            rest.strip_prefix(m.as_str())
                .and_then(|p| p.strip_prefix('/'))
                .map(|p| (m.clone(), *v, p.to_owned()))
        });
        let Some((mount, kv, inner)) = found else {
            return self.check_token(r).unwrap_or_else(|| {
                vault_errors(
                    404,
                    &[&format!(
                        "no handler for route \"{rest}\". route entry not found."
                    )],
                )
            });
        };
        let secret_path = if kv == 2 {
            match inner.strip_prefix("data/") {
                Some(p) => p.to_owned(),
                None => {
                    *self
                        .reads
                        .entry((mount.clone(), inner.clone()))
                        .or_default() += 1;
                    if let Some(d) = self.check_token(r) {
                        return d;
                    }
                    return json_reply(
                        404,
                        json!({"errors": [], "warnings": ["Invalid path for a versioned K/V secrets engine. See the API docs for the appropriate API endpoints to use. If using the Vault CLI, use 'vault kv get' for this operation."]}),
                        vec![],
                    );
                }
            }
        } else {
            inner
        };
        *self
            .reads
            .entry((mount.clone(), secret_path.clone()))
            .or_default() += 1;
        if let Some(d) = self.check_token(r) {
            return d;
        }
        let Some(versions) = self.secrets.get(&(mount, secret_path)) else {
            return vault_errors(404, &[]);
        };
        if kv == 1 {
            let v = versions.last().unwrap();
            return json_reply(
                200,
                json!({
                    "request_id": uuid(),
                    "lease_id": "",
                    "renewable": false,
                    "lease_duration": 2764800,
                    "data": v.data,
                    "wrap_info": null,
                    "warnings": null,
                    "auth": null,
                    "mount_type": "kv"
                }),
                vec![],
            );
        }
        let q = Params::query(&r.uri);
        let n = match q.get("version").map(str::parse::<usize>) {
            None | Some(Ok(0)) => versions.len(),
            Some(Ok(n)) if n <= versions.len() => n,
            Some(_) => return vault_errors(404, &[]),
        };
        let v = &versions[n - 1];
        json_reply(
            200,
            json!({
                "request_id": uuid(),
                "lease_id": "",
                "renewable": false,
                "lease_duration": 0,
                "data": {
                    "data": v.data,
                    "metadata": {
                        "created_time": v.created,
                        "custom_metadata": null,
                        "deletion_time": "",
                        "destroyed": false,
                        "version": n
                    }
                },
                "wrap_info": null,
                "warnings": null,
                "auth": null,
                "mount_type": "kv"
            }),
            vec![],
        )
    }

    fn namespace_ok(&self, r: &Recorded) -> bool {
        match &self.namespace {
            None => true,
            Some(ns) => r
                .header("x-vault-namespace")
                .is_some_and(|h| h.trim_matches('/') == ns),
        }
    }

    /// The 403 Vault answers, unless the request carries a live token in the right namespace.
    fn check_token(&mut self, r: &Recorded) -> Option<Reply> {
        let now = Instant::now();
        let live = r
            .header("x-vault-token")
            .and_then(|t| self.tokens.get(t))
            .is_some_and(|exp| exp.is_none_or(|e| now < e));
        if live && self.namespace_ok(r) {
            return None;
        }
        self.denied += 1;
        Some(denied())
    }

    fn login(&mut self, r: &Recorded) -> Reply {
        if r.method != "POST" && r.method != "PUT" {
            return vault_errors(405, &["unsupported operation"]);
        }
        let body: Value = match serde_json::from_slice(&r.body) {
            Ok(v) => v,
            Err(e) => {
                self.failed_logins += 1;
                return vault_errors(400, &[&format!("failed to parse JSON input: {e}")]);
            }
        };
        let Some(role_id) = body.get("role_id").and_then(Value::as_str) else {
            self.failed_logins += 1;
            return vault_errors(400, &["missing role_id"]);
        };
        let secret_id = body.get("secret_id").and_then(Value::as_str);
        let role = self
            .roles
            .get(role_id)
            .filter(|role| secret_id == Some(role.secret_id.as_str()));
        let Some(role) = role.filter(|_| self.namespace_ok(r)) else {
            self.failed_logins += 1;
            return vault_errors(400, &["invalid role or secret ID"]);
        };
        let token = super::super::secret(&format!("hvs.{}", random_hex(24)));
        let lease = self.lease_seconds;
        let role_name = role.role_name.clone();
        self.tokens.insert(
            token.clone(),
            Some(Instant::now() + Duration::from_secs(lease)),
        );
        self.logins += 1;
        json_reply(
            200,
            json!({
                "request_id": uuid(),
                "lease_id": "",
                "renewable": false,
                "lease_duration": 0,
                "data": null,
                "wrap_info": null,
                "warnings": null,
                "auth": {
                    "client_token": token,
                    "accessor": random_hex(24),
                    "policies": ["default"],
                    "token_policies": ["default"],
                    "metadata": {"role_name": role_name},
                    "lease_duration": lease,
                    "renewable": true,
                    "entity_id": uuid(),
                    "token_type": "service",
                    "orphan": true,
                    "mfa_requirement": null,
                    "num_uses": 0
                }
            }),
            vec![],
        )
    }
}

fn uuid() -> String {
    let h = random_hex(32);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}
