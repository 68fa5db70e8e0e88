"""Real AWS emulators for the entraFederated tests: ministack (STS GetWebIdentityToken, IAM,
SigV4 checks) and moto (AssumeRoleWithWebIdentity), each on a free loopback port, plus a
recording pass-through proxy to see exactly what keyway put on the wire and what came back."""

import base64
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from fake_upstream import LoopbackServer, read_body

READY_TIMEOUT_S = 30
STOP_TIMEOUT_S = 10
ACCOUNT = "000000000000"  # ministack's and moto's default account
REGION = "us-east-1"
# ministack's root key: accepted without a signature check, so only for setting up IAM.
ROOT_KEYS = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}


def venv_bin(name):
    """A console script installed beside the running interpreter (the test venv)."""
    path = Path(sys.executable).parent / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: run tests/setup.sh")
    return path


# --- which sockets a process listens on --------------------------------------------------------

def _descendants(pid):
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _socket_inodes(pids):
    inodes = set()
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            m = re.fullmatch(r"socket:\[(\d+)\]", target)
            if m:
                inodes.add(m.group(1))
    return inodes


def _decode_addr(hexaddr):
    host, port = hexaddr.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        ip = ".".join(str(b) for b in raw[::-1])
    else:
        words = [raw[i:i + 4][::-1] for i in range(0, 16, 4)]
        ip = ":".join(b.hex() for b in words)  # good enough to tell loopback from the rest
        ip = "::1" if ip == "00000000:00000000:00000000:00000001" else ip
    return ip, int(port, 16)


def listening_sockets(pid):
    """[(proto, ip, port)] for every TCP listener and bound UDP socket of pid and its children."""
    inodes = _socket_inodes(_descendants(pid))
    found = []
    for proto, listen_state in (("tcp", "0A"), ("tcp6", "0A"), ("udp", "07"), ("udp6", "07")):
        try:
            lines = Path(f"/proc/net/{proto}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] == listen_state and f[9] in inodes:
                ip, port = _decode_addr(f[1])
                found.append((proto, ip, port))
    return found


# --- processes -----------------------------------------------------------------------------------

class Server:
    """A started emulator: its process, port and log."""

    def __init__(self, name, proc, port, log):
        self.name, self.proc, self.port, self.log = name, proc, port, log

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def log_text(self):
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def assert_only_own_port(self):
        socks = listening_sockets(self.proc.pid)
        assert socks == [("tcp", "127.0.0.1", self.port)], (
            f"{self.name} listens beyond 127.0.0.1:{self.port}: {socks}")

    def stop(self):
        stop_process(self.proc)


def stop_process(proc):
    """SIGTERM, then SIGKILL after STOP_TIMEOUT_S; a process already gone is left alone."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _http_status(url):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def _start(name, argv, env, port, ready_path, workdir):
    log = workdir / f"{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
    server = Server(name, proc, port, log)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited ({proc.returncode}):\n{server.log_text()[-3000:]}")
        try:
            if _http_status(f"{server.url}{ready_path}") == 200:
                return server
        except OSError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"{name} not ready after {READY_TIMEOUT_S}s:\n{server.log_text()[-3000:]}")


def _base_env(workdir):
    # Nothing of the caller's AWS setup, proxies or Python path reaches the emulators.
    keep = ("PATH", "LANG", "LC_ALL", "HOME")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(TMPDIR=str(workdir), PYTHONDONTWRITEBYTECODE="1", NO_PROXY="*")
    return env


def start_ministack(port, workdir):
    env = _base_env(workdir)
    env.update(
        AUTH="true",  # SigV4 and IAM policy checks
        BIND_HOST="127.0.0.1",
        GATEWAY_PORT=str(port),
        # Listeners ministack would otherwise open on 0.0.0.0: IoT mTLS (8883, at boot)
        # and Transfer SFTP (on demand).
        IOT_MTLS_ENABLED="0",
        SFTP_ENABLED="0",
        USE_SSL="0",
        PERSIST_STATE="0",
        SERVICES="sts,iam",
        S3_DATA_DIR=str(workdir / "s3"),
        LOG_LEVEL="INFO",
    )
    return _start("ministack", [str(venv_bin("ministack"))], env, port, "/_ministack/ready", workdir)


def start_moto(port, workdir):
    env = _base_env(workdir)
    # moto's own record of every request it served, read back through /moto-api/recorder/.
    env.update(MOTO_ENABLE_RECORDING="1", MOTO_RECORDER_FILEPATH=str(workdir / "moto-recording"))
    argv = [str(venv_bin("moto_server")), "-H", "127.0.0.1", "-p", str(port)]
    server = _start("moto", argv, env, port, "/moto-api/data.json", workdir)
    # Auth off, explicitly: an unsigned AssumeRoleWithWebIdentity crashes moto with auth on.
    req = urllib.request.Request(f"{server.url}/moto-api/reset-auth", data=b"1000000000",
                                 method="POST", headers={"Content-Type": "text/plain"})
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=5) as r:
            assert r.status == 200
    except BaseException:
        server.stop()
        raise
    return server


def moto_recorded_requests(moto):
    """moto's recording: [{'method','url','headers','body'}], bodies decoded."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{moto.url}/moto-api/recorder/download-recording", timeout=5) as r:
        lines = r.read().decode().splitlines()
    out = []
    for line in lines:
        if not line.strip():
            continue
        e = json.loads(line)
        body = e.get("body") or ""
        if e.get("body_encoded"):
            body = base64.b64decode(body).decode(errors="replace")
        e["body"] = body
        out.append(e)
    return out


def moto_reset_recording(moto):
    req = urllib.request.Request(f"{moto.url}/moto-api/recorder/reset-recording", method="POST")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=5):
        pass


# --- a recording pass-through proxy --------------------------------------------------------------

@dataclass
class Exchange:
    method: str
    path: str
    headers: dict  # lower-case names
    body: bytes
    status: int
    response: bytes

    def params(self):
        """The AWS query/JSON parameters of the request."""
        ctype = self.headers.get("content-type", "")
        if "json" in ctype:
            return json.loads(self.body or b"{}")
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        q.update(urllib.parse.parse_qs(self.body.decode(errors="replace")))
        return {k: v[0] if len(v) == 1 else v for k, v in q.items()}

    def action(self):
        target = self.headers.get("x-amz-target", "")
        return target.rsplit(".", 1)[-1] if target else self.params().get("Action")

    def answer(self, field):
        """A field of the answer, XML or JSON (first match anywhere)."""
        text = self.response.decode(errors="replace")
        m = re.search(rf"<{field}>([^<]*)</{field}>", text)
        if m:
            return m.group(1)
        try:
            return _find_json(json.loads(text), field)
        except ValueError:
            return None


def _find_json(node, field):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == field:
                return v
            found = _find_json(v, field)
            if found is not None:
                return found
    return None


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _forward(self):
        body = read_body(self)
        conn = http.client.HTTPConnection("127.0.0.1", self.server.target_port, timeout=30)
        # Headers go through unchanged, Host included: the SigV4 signature covers them.
        conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for k, v in self.headers.items():
            if k.lower() in ("transfer-encoding", "content-length", "connection"):
                continue
            conn.putheader(k, v)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        self.server.record(Exchange(
            self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body,
            resp.status, data,
        ))
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "content-length", "connection", "date", "server"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = _forward


class RecordingProxy(LoopbackServer):
    def __init__(self, target_port, on_exchange=None):
        super().__init__(_ProxyHandler)
        self.target_port = target_port
        self.exchanges = []
        self.on_exchange = on_exchange

    def record(self, exchange):
        with self._lock:
            self.exchanges.append(exchange)
        if self.on_exchange:
            self.on_exchange(exchange)

    def calls(self, action):
        with self._lock:
            return [e for e in self.exchanges if e.action() == action]


def aws_env(tmp_path, **env):
    """keyway's environment: only what the test names, no profile files, no instance metadata."""
    return {
        "AWS_REGION": REGION,
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "RUST_LOG": os.environ.get("RUST_LOG", "debug"),  # verbose logs for the secret scan
        **env,
    }
