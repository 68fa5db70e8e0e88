"""Talking to a keyway process from the interop tests: plain HTTP without a proxy, its
readiness, and its Prometheus metrics."""

import json
import re
import time
import urllib.error
import urllib.request

import pytest

READY_TIMEOUT_S = 20


def http(method, url, body=None, headers=None):
    """(status, headers, body bytes) without raising on 4xx/5xx."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={
        "Content-Type": "application/json", **(headers or {})})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=15) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def readyz(keyway):
    return http("GET", f"http://127.0.0.1:{keyway.metrics_port}/readyz")[0]


def wait_ready(keyway, timeout=READY_TIMEOUT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if readyz(keyway) == 200:
            return
        assert keyway.proc.poll() is None, f"keyway exited:\n{keyway.log_text()[-4000:]}"
        time.sleep(0.1)
    pytest.fail(f"/readyz not 200 after {timeout}s; log tail:\n{keyway.log_text()[-4000:]}")


def metric(keyway, name, **labels):
    """Sum of the samples of `name` whose labels include `labels`."""
    text = http("GET", f"http://127.0.0.1:{keyway.metrics_port}/metrics")[2].decode()
    total = 0.0
    for m in re.finditer(rf"^{name}\{{([^}}]*)\}} (\S+)$", text, re.M):
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m.group(2))
    return total
