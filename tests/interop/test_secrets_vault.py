"""Secret references in HashiCorp Vault, end to end: keyway reads an upstream key from a real
Vault API server and puts it on the upstream request.

The server is rusty_vault 0.2.1 (vault_server.py; the only Vault API server any registry here
has). A recording proxy in front of it shows exactly what keyway sent Vault (token, namespace,
AppRole login body) and what Vault answered. Where rusty_vault differs from HashiCorp Vault:
  * it has no KV v2, so every reference here says vault_kv_version = 1 (a `/data/` path would be
    stored as a plain KV v1 key, so KV v2 cannot be faked by path either);
  * it has no ACL policies: any valid token reads every path. The tests show which token keyway
    used and that an expired or unknown one is refused (403), not that it is limited to a path;
  * it ignores X-Vault-Namespace (the proxy checks keyway sends it);
  * it revokes an AppRole login token about 1 s after its TTL (timer granularity), then 403;
  * it sets a `token` cookie on every login answer: a client that kept cookies would send it.
"""

import json
import os
import secrets
import time

import hvac
import hvac.exceptions
import pytest

from aws_servers import RecordingProxy, listening_sockets
from conftest import free_ports
from fake_upstream import FakeUpstream, Handler, Recorded, read_body, send_json
from keyway_probe import http, metric, readyz, wait_ready
from sdk_helpers import MESSAGES
from vault_server import start_vault

MOUNT = "kw-kv"  # a KV v1 mount of our own, beside rusty_vault's default `secret/`
APPROLE_MOUNT = "kw-approle"
TIMEOUTS = """
[upstream]
connect_timeout_ms = 2000
read_timeout_ms = 10000
"""
ANTHROPIC_REPLY = {
    "id": "msg_fake", "type": "message", "role": "assistant", "model": "claude-x",
    "content": [{"type": "text", "text": "hello"}], "stop_reason": "end_turn",
    "usage": {"input_tokens": 3, "output_tokens": 1},
}


# --- servers ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def vault(tmp_path_factory):
    """One rvault for the module (each test uses its own secret paths and roles), with a KV v1
    mount and an AppRole mount. Its work directory is not the keyway log directory: the log
    scan is for keyway's logs."""
    workdir = tmp_path_factory.mktemp("rvault")
    last = None
    for attempt in range(3):
        (port,) = free_ports(1)
        try:
            server = start_vault(port, workdir / f"try{attempt}")
            break
        except RuntimeError as e:
            last = e  # most likely the port was taken meanwhile
    else:
        raise last
    try:
        assert listening_sockets(server.proc.pid) == [("tcp", "127.0.0.1", port)]
        server.mount_kv(MOUNT)
        server.enable_approle(APPROLE_MOUNT)
        yield server
    finally:
        server.stop()


@pytest.fixture
def vault_proxy(vault, secrets_registry):
    """What keyway sent Vault and what Vault answered; every token Vault issues is registered
    for the log scan as it goes by."""
    def on_exchange(ex):
        token = ex.answer("client_token")
        if token:
            secrets_registry.add(token)
    proxy = RecordingProxy(vault.port, on_exchange).start()
    yield proxy
    proxy.stop()


class _Handler(Handler):
    """The fake upstream, plus Anthropic's /v1/messages; answers 401 to keys it is told to
    refuse (to see keyway refetch a rotated secret)."""

    def _record(self):
        self.server.record(Recorded(self.command, self.path,
                                    [(k.lower(), v) for k, v in self.headers.items()],
                                    read_body(self)))

    def _handle(self):
        sent = {self.headers.get("x-api-key"), (self.headers.get("authorization") or "")[7:]}
        if self.server.refused_keys & sent:
            self._record()
            return send_json(self, 401, {"error": {"message": "fake upstream: key refused",
                                                   "type": "invalid_request_error"}})
        if self.path.split("?")[0].endswith("/v1/messages"):
            self._record()
            return send_json(self, 200, ANTHROPIC_REPLY)
        return super()._handle()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle


class Upstream(FakeUpstream):
    def __init__(self):
        super().__init__()
        self.RequestHandlerClass = _Handler
        self.refused_keys = set()


@pytest.fixture
def upstream():
    server = Upstream().start()
    yield server
    server.stop()


# --- helpers ---------------------------------------------------------------------------------

def new_secret(registry, prefix="sk-vault-"):
    return registry.add(prefix + secrets.token_urlsafe(24))


def chat_openai(keyway):
    """A Portkey-header request that brings no key: the provider's default key applies."""
    return http("POST", f"{keyway.url}/v1/chat/completions",
                {"model": "gpt-4o-mini", "messages": MESSAGES}, {"x-portkey-provider": "openai"})


def messages_anthropic(keyway):
    """Anthropic's SDK shape through a front-door route; the app's own key is replaced."""
    return http("POST", f"{keyway.url}/anthropic/v1/messages",
                {"model": "claude-x", "max_tokens": 8, "messages": MESSAGES},
                {"x-api-key": "client-placeholder", "anthropic-version": "2023-06-01"})


def reference(slug, path, auth, *, name=None, secret_key=None):
    """A [[secret_references]] entry for Vault KV v1 at MOUNT; `auth` is the auth_config body
    beyond vault_addr/mount/version (TOML lines)."""
    lines = ["[[secret_references]]", f'name = "{name or "Vault secret " + slug}"']
    if slug:
        lines.append(f'slug = "{slug}"')
    lines += ['manager_type = "hashicorp_vault"', f'secret_path = "{path}"']
    if secret_key:
        lines.append(f'secret_key = "{secret_key}"')
    lines += ["[secret_references.auth_config]", 'vault_addr = "{addr}"',
              f'vault_mount = "{MOUNT}"', "vault_kv_version = 1", auth.strip(), ""]
    return "\n".join(lines)


def openai_default(upstream, slug):
    return f"""
[providers.openai]
base_url = "{upstream.url}/v1"
secret_mappings = [{{ target_field = "key", secret_reference_id = "{slug}" }}]
"""


def anthropic_route(upstream, slug, credential="anthropic-vault"):
    return f"""
[credentials.{credential}]
type = "api_key"
secret_mappings = [{{ target_field = "key", secret_reference_id = "{slug}" }}]

[[routes]]
name = "anthropic"
path_prefix = "/anthropic"
provider = "anthropic"
upstream = "{upstream.url}"
strip_prefix = true
credential = "{credential}"
"""


def secrets_section(ttl, max_stale=3600):
    return f"\n[secrets]\nttl_seconds = {ttl}\nmax_stale_seconds = {max_stale}\n"


def keyway_config(proxy, *parts):
    return TIMEOUTS + "\n".join(parts).replace("{addr}", proxy.url)


def keyway_env(**env):
    return {"RUST_LOG": os.environ.get("RUST_LOG", "debug"), **env}  # verbose logs for the scan


def reads(proxy, path):
    """Vault reads of MOUNT/path keyway made, in order."""
    return [e for e in proxy.exchanges if e.method == "GET" and e.path == f"/v1/{MOUNT}/{path}"]


def logins(proxy):
    return [e for e in proxy.exchanges if e.path == f"/v1/auth/{APPROLE_MOUNT}/login"]


def last(upstream):
    return upstream.requests[-1]


def assert_unavailable(status, body, slug, *absent):
    assert status == 503, (status, body)
    doc = json.loads(body)
    err = doc["error"]
    assert (err["type"], err["code"]) == ("secret_unavailable", "secret_unavailable"), doc
    assert f"secret reference '{slug}' is unavailable" in err["message"], doc
    for value in absent:
        assert value not in body.decode(errors="replace")


# --- the emulator itself ---------------------------------------------------------------------

def test_rusty_vault_does_what_these_tests_rely_on(vault, secrets_registry):
    """No keyway: the hvac client against rusty_vault. Should an upgrade drop a behaviour, the
    keyway tests below would prove less than they claim."""
    value = new_secret(secrets_registry)
    client = hvac.Client(url=vault.url, token=vault.root_token)
    assert client.is_authenticated()
    client.secrets.kv.v1.create_or_update_secret("emu/one", {"k": value}, mount_point=MOUNT)
    assert client.secrets.kv.v1.read_secret("emu/one", mount_point=MOUNT)["data"] == {"k": value}
    with pytest.raises(hvac.exceptions.InvalidPath):
        client.secrets.kv.v1.read_secret("emu/missing", mount_point=MOUNT)

    bogus = hvac.Client(url=vault.url, token=secrets_registry.add("hvs.bogus-" + secrets.token_hex(8)))
    with pytest.raises(hvac.exceptions.Forbidden):
        bogus.secrets.kv.v1.read_secret("emu/one", mount_point=MOUNT)

    vault.create_role("emu-role", 2, mount=APPROLE_MOUNT)
    role_id = vault.role_id("emu-role", mount=APPROLE_MOUNT)
    secret_id = secrets_registry.add(vault.secret_id("emu-role", mount=APPROLE_MOUNT))
    app = hvac.Client(url=vault.url)
    auth = app.auth.approle.login(role_id=role_id, secret_id=secret_id, mount_point=APPROLE_MOUNT)["auth"]
    secrets_registry.add(auth["client_token"])
    assert auth["lease_duration"] == 2
    assert app.secrets.kv.v1.read_secret("emu/one", mount_point=MOUNT)["data"] == {"k": value}
    with pytest.raises(hvac.exceptions.InvalidRequest):
        hvac.Client(url=vault.url).auth.approle.login(
            role_id=role_id, secret_id="not-the-secret-id", mount_point=APPROLE_MOUNT)

    # The login token stops working once its TTL is over (rusty_vault: ~1 s after).
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            app.secrets.kv.v1.read_secret("emu/one", mount_point=MOUNT)
        except hvac.exceptions.Forbidden:
            break
        time.sleep(0.2)
    else:
        pytest.fail("an AppRole token with a 2 s TTL still worked after 10 s")


# --- keyway ----------------------------------------------------------------------------------

def test_token_auth_provider_default_and_route(start_keyway, vault, vault_proxy, upstream,
                                               secrets_registry):
    """(a) A provider default key and a front-door route credential, each from Vault with token
    auth: the upstream gets exactly the secret (Bearer for OpenAI, x-api-key for Anthropic)."""
    openai_key, anthropic_key = new_secret(secrets_registry), new_secret(secrets_registry)
    org = new_secret(secrets_registry, "org-")
    vault.write(MOUNT, "tok/openai", {"api_key": openai_key, "org": org})
    vault.write(MOUNT, "tok/anthropic", {"k": anthropic_key})  # one key: no secret_key needed
    token = secrets_registry.add(vault.root_token)
    auth = f'vault_token = "{token}"\nvault_namespace = "team1"'
    keyway = start_keyway(keyway_config(
        vault_proxy,
        reference("openai-vault", "tok/openai", auth, secret_key="api_key"),
        # no slug: generated from the name
        reference(None, "tok/anthropic", auth, name="Anthropic key in Vault"),
        openai_default(upstream, "openai-vault"),
        anthropic_route(upstream, "anthropic-key-in-vault"),
    ), keyway_env())
    wait_ready(keyway)  # prefetch: ready once both secrets are read

    status, _, body = chat_openai(keyway)
    assert status == 200, body
    got = last(upstream)
    assert got.path == "/v1/chat/completions"
    assert got.header("authorization") == [f"Bearer {openai_key}"]
    assert got.header("x-api-key") == []
    assert org not in json.dumps(got.headers)

    status, _, body = messages_anthropic(keyway)
    assert status == 200, body
    got = last(upstream)
    assert got.path == "/v1/messages"
    assert got.header("x-api-key") == [anthropic_key]
    assert got.header("authorization") == []

    for path in ("tok/openai", "tok/anthropic"):
        calls = reads(vault_proxy, path)
        assert calls, [(e.method, e.path) for e in vault_proxy.exchanges]
        for call in calls:
            assert call.headers.get("x-vault-token") == token
            assert call.headers.get("x-vault-namespace") == "team1"
            assert call.status == 200
    assert logins(vault_proxy) == []
    assert metric(keyway, "keyway_secret_fetches_total", manager="hashicorp_vault", outcome="ok") >= 2


def test_approle_logs_in_again_after_the_token_expires(start_keyway, vault, vault_proxy, upstream,
                                                       secrets_registry):
    """(b) AppRole: keyway logs in with role_id/secret_id, reads with the login token, and once
    that token has expired (role token_ttl 3 s) reads with a new one: requests keep working.
    ttl_seconds = 1 makes keyway reread often; max_stale_seconds = 1 keeps a stale value from
    hiding a failed re-login for long."""
    key = new_secret(secrets_registry)
    vault.write(MOUNT, "role/openai", {"api_key": key})
    vault.create_role("kw-keyway", 3, mount=APPROLE_MOUNT)
    role_id = vault.role_id("kw-keyway", mount=APPROLE_MOUNT)
    secret_id = secrets_registry.add(vault.secret_id("kw-keyway", mount=APPROLE_MOUNT))
    auth = (f'vault_role_id = "{role_id}"\nvault_secret_id_env = "KW_TEST_VAULT_SECRET_ID"\n'
            f'vault_approle_mount = "{APPROLE_MOUNT}"')
    keyway = start_keyway(keyway_config(
        vault_proxy, secrets_section(1, 1),
        reference("openai-approle", "role/openai", auth, secret_key="api_key"),
        openai_default(upstream, "openai-approle"),
    ), keyway_env(KW_TEST_VAULT_SECRET_ID=secret_id))
    wait_ready(keyway)

    first = logins(vault_proxy)
    assert first, [(e.method, e.path) for e in vault_proxy.exchanges]
    assert json.loads(first[0].body) == {"role_id": role_id, "secret_id": secret_id}
    assert "x-vault-token" not in first[0].headers
    first_token = first[0].answer("client_token")
    assert first_token and first[0].status == 200

    # Requests every 0.3 s until Vault refuses the first token, then 2 s more.
    deadline, expired_at, after = time.monotonic() + 20, None, None
    while time.monotonic() < deadline and (after is None or time.monotonic() < after):
        status, _, body = chat_openai(keyway)
        assert status == 200, (status, body, keyway.log_text()[-3000:])
        assert last(upstream).header("authorization") == [f"Bearer {key}"]
        if expired_at is None and vault.call("GET", f"{MOUNT}/role/openai", token=first_token)[0] == 403:
            expired_at = len(vault_proxy.exchanges)
            after = time.monotonic() + 2
        time.sleep(0.3)
    assert expired_at is not None, "the first AppRole token never expired"

    later = [e for e in vault_proxy.exchanges[expired_at:]
             if e.path == f"/v1/{MOUNT}/role/openai" and e.status == 200]
    assert later, [(e.method, e.path, e.status) for e in vault_proxy.exchanges[expired_at:]]
    tokens = {e.headers.get("x-vault-token") for e in later}
    assert first_token not in tokens
    issued = {e.answer("client_token") for e in logins(vault_proxy) if e.status == 200}
    assert tokens <= issued, "keyway read with a token no login issued"
    for call in logins(vault_proxy):
        assert json.loads(call.body) == {"role_id": role_id, "secret_id": secret_id}


@pytest.mark.parametrize("case", ["bogus token", "missing secret"])
def test_unreadable_secret_is_503_naming_the_reference(start_keyway, vault, vault_proxy, upstream,
                                                        secrets_registry, case):
    """(c) keyway never got the value: 503 JSON naming the reference slug, never the token; the
    upstream is not called; /readyz stays 503 (prefetch)."""
    vault.write(MOUNT, "bad/openai", {"api_key": new_secret(secrets_registry)})
    if case == "bogus token":
        token, path = secrets_registry.add("hvs.bogus-" + secrets.token_hex(16)), "bad/openai"
    else:
        token, path = secrets_registry.add(vault.root_token), "bad/absent"
    keyway = start_keyway(keyway_config(
        vault_proxy,
        reference("openai-bad", path, f'vault_token = "{token}"', secret_key="api_key"),
        openai_default(upstream, "openai-bad"),
    ), keyway_env())

    status, _, body = chat_openai(keyway)

    assert_unavailable(status, body, "openai-bad", token)
    assert upstream.requests == []
    calls = reads(vault_proxy, path)
    assert calls and all(c.status == (403 if case == "bogus token" else 404) for c in calls), \
        [(c.path, c.status) for c in calls]
    assert all(c.headers.get("x-vault-token") == token for c in calls)
    assert readyz(keyway) != 200
    assert "openai-bad" in keyway.log_text()
    outcome = "rejected" if case == "bogus token" else "not_found"
    assert metric(keyway, "keyway_secret_fetches_total", manager="hashicorp_vault",
                  outcome=outcome) >= 1


def test_rotated_secret_reaches_the_upstream_after_ttl(start_keyway, vault, vault_proxy, upstream,
                                                       secrets_registry):
    """(d) The secret changes in Vault: once the cached value is past ttl_seconds (1 s), the next
    requests carry the new value, and never the old one again."""
    old, new = new_secret(secrets_registry), new_secret(secrets_registry)
    vault.write(MOUNT, "rot/anthropic", {"k": old})
    token = secrets_registry.add(vault.root_token)
    keyway = start_keyway(keyway_config(
        vault_proxy, secrets_section(1),
        reference("anthropic-rot", "rot/anthropic", f'vault_token = "{token}"'),
        anthropic_route(upstream, "anthropic-rot"),
    ), keyway_env())
    wait_ready(keyway)
    status, _, body = messages_anthropic(keyway)
    assert status == 200, body
    assert last(upstream).header("x-api-key") == [old]

    vault.write(MOUNT, "rot/anthropic", {"k": new})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status, _, body = messages_anthropic(keyway)
        assert status == 200, body
        if last(upstream).header("x-api-key") == [new]:
            break
        assert last(upstream).header("x-api-key") == [old]
        time.sleep(0.2)
    else:
        pytest.fail(f"the rotated secret never reached the upstream; log:\n{keyway.log_text()[-3000:]}")
    for _ in range(3):
        assert messages_anthropic(keyway)[0] == 200
        assert last(upstream).header("x-api-key") == [new]


def test_upstream_401_refetches_a_rotated_secret_once(start_keyway, vault, vault_proxy, upstream,
                                                      secrets_registry):
    """The contract's 401 rule: with a long TTL, a key the upstream now refuses is refetched
    from Vault and the request retried once, with the new key."""
    old, new = new_secret(secrets_registry), new_secret(secrets_registry)
    vault.write(MOUNT, "r401/openai", {"api_key": old})
    token = secrets_registry.add(vault.root_token)
    keyway = start_keyway(keyway_config(
        vault_proxy, secrets_section(300),
        reference("openai-401", "r401/openai", f'vault_token = "{token}"', secret_key="api_key"),
        openai_default(upstream, "openai-401"),
    ), keyway_env())
    wait_ready(keyway)
    assert chat_openai(keyway)[0] == 200
    assert last(upstream).header("authorization") == [f"Bearer {old}"]
    before = len(reads(vault_proxy, "r401/openai"))

    vault.write(MOUNT, "r401/openai", {"api_key": new})
    upstream.refused_keys.add(old)
    n = len(upstream.requests)
    status, _, body = chat_openai(keyway)

    assert status == 200, (status, body)
    tried = [r.header("authorization") for r in upstream.requests[n:]]
    assert tried == [[f"Bearer {old}"], [f"Bearer {new}"]], tried
    assert len(reads(vault_proxy, "r401/openai")) == before + 1
