import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest

# Plain asserts in the helpers should explain themselves like those in tests.
pytest.register_assert_rewrite("sdk_helpers")

from fake_upstream import FakeUpstream  # noqa: E402
from secret_scan import SecretRegistry  # noqa: E402

START_TIMEOUT_S = 20
START_ATTEMPTS = 3

# Variables the SDKs or keyway would read behind the tests' back.
SCRUBBED_ENV = [
    "OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID",
    "AZURE_OPENAI_API_KEY", "AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_AD_TOKEN",
    "OPENAI_API_VERSION", "PORTKEY_API_KEY", "PORTKEY_BASE_URL", "PORTKEY_PROXY",
    "TRUSTED_CUSTOM_HOSTS", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
    "http_proxy", "https_proxy", "all_proxy",
    # The AWS and Azure credential chains keyway runs for entraFederated, workload and managed.
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL_SECRETSMANAGER", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_EC2_METADATA_DISABLED",
    "AZURE_AUTHORITY_HOST", "AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_POD_IDENTITY_AUTHORITY_HOST", "IDENTITY_ENDPOINT", "IDENTITY_HEADER",
]
# Config keys whose values are secrets: registered for the end-of-run log scan.
SECRET_CONFIG_KEYS = {"key", "api_key", "client_secret"}


def keyway_bin():
    if os.environ.get("KEYWAY_BIN"):
        return Path(os.environ["KEYWAY_BIN"])
    target = os.environ.get("CARGO_TARGET_DIR") or Path.home() / ".cache/keyway/target"
    return Path(target) / "release/keyway"


def free_ports(n):
    # Held open together so the kernel cannot hand out the same port twice.
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    setattr(item, "rep_" + rep.when, rep)
    return rep


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in SCRUBBED_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "*")


@pytest.fixture(scope="session")
def keyway_log_dir(tmp_path_factory):
    """Where every keyway of the session writes its stderr (`*.log`), beside `secrets.txt`;
    test_zz_secret_scan.py scans it last. With KEYWAY_INTEROP_LOG_DIR set, a fresh directory
    under it (kept after the run), else one under pytest's temporary directory."""
    if os.environ.get("KEYWAY_INTEROP_LOG_DIR"):
        parent = Path(os.environ["KEYWAY_INTEROP_LOG_DIR"])
        parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="interop-", dir=parent))
    return tmp_path_factory.mktemp("keyway-logs")


@pytest.fixture(scope="session")
def secrets_registry(keyway_log_dir):
    """`.add(secret)`: every secret a test uses, for the end-of-run log scan."""
    return SecretRegistry(keyway_log_dir, os.environ.get("KEYWAY_SECRETS_FILE"))


def _config_secrets(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k in SECRET_CONFIG_KEYS and isinstance(v, str) and v:
                yield v
            else:
                yield from _config_secrets(v)
    elif isinstance(node, list):
        for v in node:
            yield from _config_secrets(v)


@pytest.fixture
def upstream():
    server = FakeUpstream().start()
    yield server
    server.stop()


class Keyway:
    def __init__(self, proc, port, metrics_port, log, admin_port):
        self.proc, self.port, self.metrics_port, self.log = proc, port, metrics_port, log
        self.admin_port = admin_port

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self):
        return f"http://127.0.0.1:{self.admin_port}"

    def log_text(self):
        return self.log.read_text(errors="replace")


def _get(url):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=1) as resp:
        return resp.status


def _wait_ready(proc, kw):
    """True when ready, False when the process exited, None on timeout."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            if _get(f"http://127.0.0.1:{kw.metrics_port}/healthz") == 200:
                # healthz lives on the metrics listener; also wait for the proxy one.
                with socket.create_connection(("127.0.0.1", kw.port), timeout=1):
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return None


@pytest.fixture
def start_keyway(tmp_path, request, keyway_log_dir, secrets_registry):
    """Returns start(config_body, env=None) -> Keyway; config_body is TOML without the listen
    keys, env extra environment variables for keyway. Secret values in the config are
    registered for the log scan; the stderr log goes to the session's log directory."""
    binary = keyway_bin()
    started = []
    log_stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{request.node.path.stem}-{request.node.name}")

    def start(config_body, env=None):
        if not binary.is_file():
            pytest.fail(f"keyway binary not found at {binary} (build it, or set KEYWAY_BIN)")
        for attempt in range(1, START_ATTEMPTS + 1):
            port, metrics_port, admin_port = free_ports(3)
            config = (
                f'listen = "127.0.0.1:{port}"\n'
                f'metrics_listen = "127.0.0.1:{metrics_port}"\n'
                f"threads = 1\n{config_body}"
            )
            # A typo in a test's TOML should not look like a keyway bug.
            for secret in _config_secrets(tomllib.loads(config)):
                secrets_registry.add(secret)
            cfg = tmp_path / f"keyway-{attempt}.toml"
            cfg.write_text(config)
            log = keyway_log_dir / f"keyway-{log_stem}-{len(started)}.log"
            proc_env = {
                **os.environ,
                "RUST_LOG": os.environ.get("RUST_LOG", "info"),
                # Each instance its own store (a test that shares one passes KEYWAY_DATA_DIR).
                "KEYWAY_DATA_DIR": str(tmp_path / f"data-{port}"),
                **(env or {}),
            }
            with open(log, "wb") as out:
                proc = subprocess.Popen(
                    [str(binary), "--config", str(cfg), "--admin-listen", f"127.0.0.1:{admin_port}"],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=proc_env,
                )
            kw = Keyway(proc, port, metrics_port, log, admin_port)
            started.append(kw)
            ready = _wait_ready(proc, kw)
            if ready:
                return kw
            if ready is None:
                pytest.fail(f"keyway not healthy after {START_TIMEOUT_S}s; log:\n{kw.log_text()}")
            # Exited early: most likely one of the ports was taken meanwhile.
        pytest.fail(
            f"keyway exited at start {START_ATTEMPTS} times (code {proc.returncode}); "
            f"config:\n{config}\nlog:\n{kw.log_text()}"
        )

    yield start

    for kw in started:
        if kw.proc.poll() is None:
            # SIGINT is Pingora's fast shutdown; SIGTERM would drain in-flight requests first.
            kw.proc.send_signal(signal.SIGINT)
            try:
                kw.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                kw.proc.kill()
                kw.proc.wait()
    rep = getattr(request.node, "rep_call", None)
    if started and rep is not None and rep.failed:
        print(f"--- keyway log ({started[-1].log}) ---\n{started[-1].log_text()[-4000:]}",
              file=sys.stderr)
