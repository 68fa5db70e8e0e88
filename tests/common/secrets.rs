//! Local fakes of the secret managers keyway reads (Azure Key Vault, HashiCorp Vault), built on
//! `FakeUpstream`. Each checks requests the way the real service does (Key Vault: an Entra token
//! for the vault scope and `api-version`; Vault: `X-Vault-Token`, namespace, AppRole leases),
//! answers in the real JSON shapes and error codes, and records what it received. Both sit
//! behind a `Front` that can refuse connections, so a test can take a manager down the way a
//! crashed or unreachable one looks to keyway, or answer 503 as an overloaded or sealed one does.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;

use super::identity::{path_of, EntraHandle, FakeEntra, Params};
use super::{FakeUpstream, Recorded, Reply};

/// The scope keyway asks Entra for when it reads Key Vault.
pub const VAULT_SCOPE: &str = "https://vault.azure.net/.default";
/// The only Key Vault `api-version` keyway sends (and this fake accepts).
pub const KV_API_VERSION: &str = "7.4";

/// How a fake secret manager is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outage {
    /// Up.
    None,
    /// Every request gets a 503 (Key Vault throttled / Vault sealed).
    Unavailable,
    /// The port refuses connections and open connections are cut.
    Refused,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn rfc3339_now() -> String {
    // Vault prints RFC 3339 with nanoseconds; the exact instant does not matter to keyway.
    let s = unix_now();
    let (days, rem) = (s / 86400, s % 86400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000000000Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z.rem_euclid(146097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn random_hex(n: usize) -> String {
    let mut s = String::with_capacity(n);
    while s.len() < n {
        s.push_str(&format!("{:016x}", rand::random::<u64>()));
    }
    s.truncate(n);
    s
}

fn json_reply(status: u16, body: Value, headers: Vec<(&'static str, &'static str)>) -> Reply {
    Reply::Json {
        status,
        body: body.to_string(),
        headers,
    }
}

fn delayed(delay: Option<Duration>, r: Reply) -> Reply {
    match delay {
        Some(d) => Reply::Delay(d, Box::new(r)),
        None => r,
    }
}

// ---------------------------------------------------------------------------------------------
// Front: a TCP relay on a stable port that can be switched to "connection refused".

struct FrontState {
    accept: Option<JoinHandle<()>>,
    conns: Vec<JoinHandle<()>>,
}

/// A port in front of a `FakeUpstream`. While refused, nothing listens on the port and every
/// relayed connection has been cut, so keyway sees `ECONNREFUSED` (not a 503). A bound socket
/// that never listens holds the port meanwhile (`SO_REUSEPORT`), so no other test's ephemeral
/// port can take it before the fake comes back on the same address.
pub struct Front {
    pub port: u16,
    backend: u16,
    _reserved: TcpSocket,
    state: Arc<Mutex<FrontState>>,
}

fn shared_socket(port: u16) -> TcpSocket {
    let s = TcpSocket::new_v4().unwrap();
    s.set_reuseaddr(true).unwrap();
    s.set_reuseport(true).unwrap();
    s.bind(SocketAddr::from(([127, 0, 0, 1], port)))
        .unwrap_or_else(|e| panic!("binding 127.0.0.1:{port}: {e}"));
    s
}

impl Front {
    /// Needs a tokio runtime.
    pub fn start(backend: u16) -> Front {
        let reserved = shared_socket(0);
        let port = reserved.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(FrontState {
            accept: None,
            conns: Vec::new(),
        }));
        let f = Front {
            port,
            backend,
            _reserved: reserved,
            state,
        };
        f.listen();
        f
    }

    fn listen(&self) {
        let listener = shared_socket(self.port).listen(1024).unwrap();
        let (backend, st) = (self.backend, self.state.clone());
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let relay = tokio::spawn(async move {
                    if let Ok(out) = TcpStream::connect(("127.0.0.1", backend)).await {
                        relay_both(&inbound, &out).await;
                    }
                });
                let mut s = st.lock().unwrap();
                s.conns.retain(|h| !h.is_finished());
                s.conns.push(relay);
            }
        });
        self.state.lock().unwrap().accept = Some(task);
    }

    /// Refuses (`true`) or accepts again on the same port (`false`). Returns once the port is
    /// really closed (or open), so the caller's next step sees the change.
    pub async fn set_refused(&self, refused: bool) {
        if refused {
            let (accept, conns) = {
                let mut s = self.state.lock().unwrap();
                (s.accept.take(), std::mem::take(&mut s.conns))
            };
            for task in accept.into_iter().chain(conns) {
                task.abort();
                let _ = task.await;
            }
        } else if self.state.lock().unwrap().accept.is_none() {
            self.listen();
        }
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        let mut s = self.state.lock().unwrap();
        if let Some(a) = s.accept.take() {
            a.abort();
        }
        for c in s.conns.drain(..) {
            c.abort();
        }
    }
}

/// Copies both ways until either side closes.
async fn relay_both(a: &TcpStream, b: &TcpStream) {
    tokio::select! {
        _ = pump(a, b) => {}
        _ = pump(b, a) => {}
    }
}

async fn pump(from: &TcpStream, to: &TcpStream) {
    use std::io::ErrorKind::WouldBlock;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if from.readable().await.is_err() {
            return;
        }
        let n = match from.try_read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == WouldBlock => continue,
            Err(_) => return,
        };
        let mut sent = 0;
        while sent < n {
            if to.writable().await.is_err() {
                return;
            }
            match to.try_write(&buf[sent..n]) {
                Ok(k) => sent += k,
                Err(e) if e.kind() == WouldBlock => continue,
                Err(_) => return,
            }
        }
    }
}

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
        let token = super::secret(&format!("hvs.{}", random_hex(24)));
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
