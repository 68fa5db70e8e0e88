"""A real Vault API server for the secret-manager tests: rusty_vault 0.2.1 (`rvault`, built by
tests/setup.sh into the keyway cache), on a free loopback port with file storage in a temporary
directory, initialised and unsealed, plus the calls the tests need to set it up.

What rusty_vault 0.2.1 is, as found by experiment and by reading its source:
  * `PUT /v1/sys/init` {"secret_shares","secret_threshold"} -> {"keys": [hex], "root_token"};
    `PUT /v1/sys/unseal` {"key": hex} once per share up to the threshold.
  * tokens go in `X-Vault-Token` (also `X-RustyVault-Token`, `Authorization: Bearer`, or a
    `token` cookie, which it sets on every login answer); an unknown token is 403
    `{"error": "Permission denied."}`.
  * no ACL policies: any valid token reads every path. So the tests can show that keyway logs in
    and that a token stops working when it expires, not that it is limited to some paths.
  * secret engines: only KV v1 (`kv`); a `secret/` KV mount exists from the start. Mounts and
    auth methods are enabled with POST only (`PUT /v1/sys/mounts/x` is 405). A read of a
    missing path is 404 with an empty body.
  * AppRole: role names need at least 3 characters (a shorter one is a 500
    "Logical backend path not supported"); `auth/<mount>/role/<name>` takes `token_ttl`
    (seconds) and the login answer's `lease_duration` is that TTL; the expiration manager revokes
    the token about 1 s after the TTL (timer granularity), then it is 403. A wrong secret_id is
    400 `{"error": "invalid secret id"}`.
"""

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from aws_servers import stop_process

READY_TIMEOUT_S = 20
HTTP_TIMEOUT_S = 5
RVAULT_VERSION = "0.2.1"


def rvault_bin():
    """KEYWAY_RVAULT_BIN, else the copy tests/setup.sh installs, else one on PATH."""
    if os.environ.get("KEYWAY_RVAULT_BIN"):
        return Path(os.environ["KEYWAY_RVAULT_BIN"])
    cache = Path(os.environ.get("KEYWAY_CACHE") or Path.home() / ".cache/keyway")
    installed = cache / "tools/bin/rvault"
    if installed.is_file():
        return installed
    found = shutil.which("rvault")
    if found:
        return Path(found)
    raise FileNotFoundError(f"{installed} missing: run tests/setup.sh")


class VaultError(Exception):
    def __init__(self, method, path, status, body):
        super().__init__(f"{method} {path}: {status} {body[:300]!r}")
        self.status, self.body = status, body


def _call(url, method, path, token=None, body=None):
    """(status, parsed JSON or None, raw text) of one Vault API call; 4xx/5xx do not raise."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data is not None else {}
    if token:
        headers["X-Vault-Token"] = token
    req = urllib.request.Request(f"{url}/v1/{path.lstrip('/')}", data=data, method=method,
                                 headers=headers)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=HTTP_TIMEOUT_S) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    text = raw.decode(errors="replace")
    try:
        return status, (json.loads(text) if text.strip() else None), text
    except ValueError:
        return status, None, text


class VaultServer:
    """A started, unsealed rvault: `url`, `root_token`, and setup calls made as root."""

    def __init__(self, proc, port, log, workdir):
        self.proc, self.port, self.log, self.workdir = proc, port, log, workdir
        self.root_token = None
        self.unseal_keys = []

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def log_text(self):
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    # --- raw API ------------------------------------------------------------------------------

    def call(self, method, path, body=None, token=None):
        """(status, JSON) of a call, by default with the root token."""
        status, doc, _ = _call(self.url, method, path, token or self.root_token, body)
        return status, doc

    def must(self, method, path, body=None, token=None, ok=(200, 204)):
        status, doc, text = _call(self.url, method, path, token or self.root_token, body)
        if status not in ok:
            raise VaultError(method, path, status, text)
        return doc

    # --- start-up -----------------------------------------------------------------------------

    def init_and_unseal(self, shares=1, threshold=1):
        doc = self.must("PUT", "sys/init", {"secret_shares": shares, "secret_threshold": threshold},
                        token="")
        self.root_token, self.unseal_keys = doc["root_token"], doc["keys"]
        for key in self.unseal_keys[:threshold]:
            state = self.must("PUT", "sys/unseal", {"key": key}, token="")
        if state.get("sealed") is not False:
            raise RuntimeError(f"rvault still sealed after unseal: {state}")
        return self.root_token

    # --- KV v1 --------------------------------------------------------------------------------

    def mount_kv(self, mount):
        """A KV v1 engine at `mount` (rusty_vault has no KV v2)."""
        self.must("POST", f"sys/mounts/{mount}", {"type": "kv", "description": "keyway tests"})

    def write(self, mount, path, data):
        self.must("PUT", f"{mount}/{path}", data)

    def read(self, mount, path, token=None):
        return self.must("GET", f"{mount}/{path}", token=token)["data"]

    # --- AppRole ------------------------------------------------------------------------------

    def enable_approle(self, mount="approle"):
        self.must("POST", f"sys/auth/{mount}", {"type": "approle"})

    def create_role(self, name, token_ttl_s, mount="approle"):
        """A role whose login tokens live token_ttl_s seconds (and at most that long)."""
        self.must("PUT", f"auth/{mount}/role/{name}", {
            "token_ttl": token_ttl_s, "token_max_ttl": token_ttl_s, "bind_secret_id": True})

    def role_id(self, name, mount="approle"):
        return self.must("GET", f"auth/{mount}/role/{name}/role-id")["data"]["role_id"]

    def secret_id(self, name, mount="approle"):
        return self.must("PUT", f"auth/{mount}/role/{name}/secret-id", {})["data"]["secret_id"]

    def login_approle(self, role_id, secret_id, mount="approle"):
        """The login answer's `auth` object (client_token, lease_duration...)."""
        return self.must("PUT", f"auth/{mount}/login",
                         {"role_id": role_id, "secret_id": secret_id}, token="")["auth"]

    # --- stop ---------------------------------------------------------------------------------

    def stop(self):
        stop_process(self.proc)


def _config(port, workdir):
    return f"""
storage "file" {{
  path = "{workdir / 'data'}"
}}

listener "tcp" {{
  address     = "127.0.0.1:{port}"
  tls_disable = true
}}

api_addr  = "http://127.0.0.1:{port}"
work_dir  = "{workdir}"
log_level = "info"
"""


def start_vault(port, workdir):
    """rvault on 127.0.0.1:port with its data, config and log in workdir; initialised and
    unsealed. Raises RuntimeError when it does not come up (e.g. the port was taken)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    hcl = workdir / "rvault.hcl"
    hcl.write_text(_config(port, workdir))
    log = workdir / "rvault.log"
    env = {k: os.environ[k] for k in ("PATH", "LANG", "LC_ALL", "HOME") if k in os.environ}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(rvault_bin()), "server", f"--config={hcl}"], cwd=workdir, env=env,
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    server = VaultServer(proc, port, log, workdir)
    try:
        _wait_listening(server)
        server.init_and_unseal()
    except BaseException:
        server.stop()
        raise
    return server


def _wait_listening(server):
    # No sys/health in rusty_vault: sys/init answers before init, unauthenticated.
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"rvault exited ({server.proc.returncode}):\n{server.log_text()[-3000:]}")
        try:
            status, doc, _ = _call(server.url, "GET", "sys/init")
            if status == 200 and doc.get("initialized") is False:
                return
            if status == 200:
                raise RuntimeError(f"rvault at {server.url} is already initialised: not ours")
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"rvault not listening after {READY_TIMEOUT_S}s:\n{server.log_text()[-3000:]}")
