"""What the SDKs put on the wire, and what the fake upstream must have received."""

import json

import httpx

MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "Say hello"}]
CREDENTIAL_HEADERS = {"authorization", "api-key", "x-api-key"}
SDK_TIMEOUT_S = 10


class SentLog:
    """An httpx client for an SDK that keeps every request the SDK sends."""

    def __init__(self):
        self.requests = []

    def client(self):
        return httpx.Client(event_hooks={"request": [self._keep]}, trust_env=False)

    def _keep(self, request):
        request.read()
        self.requests.append(request)

    def only(self):
        assert len(self.requests) == 1, [str(r.url) for r in self.requests]
        return self.requests[0]


def only_request(upstream):
    assert len(upstream.requests) == 1, [(r.method, r.path) for r in upstream.requests]
    return upstream.requests[0]


def assert_forwarded(got, sent, *, path, auth_header, auth_value, absent=()):
    """got: the fake upstream's record; sent: the SDK's httpx request."""
    assert (got.method, got.path) == ("POST", path)
    assert got.header(auth_header) == [auth_value]
    for name in CREDENTIAL_HEADERS - {auth_header}:
        assert got.header(name) == [], f"{name} reached the upstream"
    assert [k for k, _ in got.headers if k.startswith("x-portkey-")] == []
    for secret in absent:
        leaks = [k for k, v in got.headers if secret in v]
        assert leaks == [], f"{secret!r} reached the upstream in {leaks}"
        assert secret.encode() not in got.body
    assert got.json() == json.loads(sent.content)


def stream_pieces(stream):
    return [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
