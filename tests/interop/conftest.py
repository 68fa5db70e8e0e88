import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest

# Plain asserts in the helpers should explain themselves like those in tests.
pytest.register_assert_rewrite("sdk_helpers")

from fake_upstream import FakeUpstream  # noqa: E402

START_TIMEOUT_S = 20
START_ATTEMPTS = 3

# Variables the SDKs or keyway would read behind the tests' back.
SCRUBBED_ENV = [
    "OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID",
    "AZURE_OPENAI_API_KEY", "AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_AD_TOKEN",
    "OPENAI_API_VERSION", "PORTKEY_API_KEY", "PORTKEY_BASE_URL", "PORTKEY_PROXY",
    "TRUSTED_CUSTOM_HOSTS", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
    "http_proxy", "https_proxy", "all_proxy",
]


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


@pytest.fixture
def upstream():
    server = FakeUpstream().start()
    yield server
    server.stop()


class Keyway:
    def __init__(self, proc, port, metrics_port, log):
        self.proc, self.port, self.metrics_port, self.log = proc, port, metrics_port, log

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

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
def start_keyway(tmp_path, request):
    """Returns start(config_body) -> Keyway; config_body is TOML without the listen keys."""
    binary = keyway_bin()
    started = []

    def start(config_body):
        if not binary.is_file():
            pytest.fail(f"keyway binary not found at {binary} (build it, or set KEYWAY_BIN)")
        for attempt in range(1, START_ATTEMPTS + 1):
            port, metrics_port = free_ports(2)
            config = (
                f'listen = "127.0.0.1:{port}"\n'
                f'metrics_listen = "127.0.0.1:{metrics_port}"\n'
                f"threads = 1\n{config_body}"
            )
            tomllib.loads(config)  # a typo in a test's TOML should not look like a keyway bug
            cfg = tmp_path / f"keyway-{attempt}.toml"
            cfg.write_text(config)
            log = tmp_path / f"keyway-{attempt}.stderr"
            env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "info")}
            with open(log, "wb") as out:
                proc = subprocess.Popen(
                    [str(binary), "--config", str(cfg)],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                )
            kw = Keyway(proc, port, metrics_port, log)
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
            # SIGINT is Pingora's fast shutdown; SIGTERM waits out a 30 s grace period.
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
