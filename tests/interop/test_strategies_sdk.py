"""The real Portkey SDK with `config={...}` routing strategies (issue 12) through keyway to
recording fake upstreams: fallback past a failing target (plain and streamed) and a 1:1 load
balance. Every target carries its own key; none may reach another target."""

import json

import httpx
import pytest
from portkey_ai import Portkey

from fake_upstream import REPLY, STREAM_PIECES, FakeUpstream, Handler, Recorded
from sdk_helpers import MESSAGES, MODEL, SDK_TIMEOUT_S, SentLog, stream_pieces

CONFIG = """
trusted_custom_hosts = ["127.0.0.1"]

[upstream]
connect_timeout_ms = 2000
read_timeout_ms = 10000
retry_backoff_ms = 10
"""
CLIENT_KEY = "sk-client-unused"  # Portkey(api_key=...): every target's own api_key must win
KEY_ONE = "sk-target-one"
KEY_TWO = "sk-target-two"
LB_REQUESTS = 60
LB_MIN_EACH = 10  # P(Binomial(60, 1/2) < 10) is about 1e-8
LAST_USED = "x-portkey-last-used-option-index"


class _UnavailableHandler(Handler):
    """Records the request like the fake upstream, then answers 503."""

    def _handle(self):
        body = self._read_body()
        self.server.record(Recorded(self.command, self.path,
                                    [(k.lower(), v) for k, v in self.headers.items()], body))
        return self._send_json(503, {"error": {"message": "fake upstream: unavailable",
                                               "type": "server_error"}})

    # The base class binds these to its own _handle.
    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle


class UnavailableUpstream(FakeUpstream):
    def __init__(self):
        super().__init__()
        self.RequestHandlerClass = _UnavailableHandler


class Exchanges(SentLog):
    """SentLog that also keeps the responses (headers) keyway returned to the SDK."""

    def __init__(self):
        super().__init__()
        self.responses = []

    def client(self):
        return httpx.Client(
            event_hooks={"request": [self._keep], "response": [self.responses.append]},
            trust_env=False,
        )


@pytest.fixture
def fakes():
    started = []

    def make(cls=FakeUpstream):
        server = cls().start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture(autouse=True)
def _register_keys(secrets_registry):
    # Keys sent in the config header: the end-of-run scan checks no log carries them.
    for key in (CLIENT_KEY, KEY_ONE, KEY_TWO):
        secrets_registry.add(key)


def target(server, key):
    return {"provider": "openai", "api_key": key, "custom_host": f"{server.url}/v1"}


def portkey(keyway, config, log):
    return Portkey(base_url=f"{keyway.url}/v1", api_key=CLIENT_KEY, config=config,
                   http_client=log.client())


def assert_reached(server, key, sent, n=None):
    """Every request `server` got was a chat completion POST with its own key only, carrying
    a body the SDK sent."""
    if n is not None:
        assert len(server.requests) == n, [(r.method, r.path) for r in server.requests]
    sent_bodies = [json.loads(r.content) for r in sent.requests]
    for got in server.requests:
        assert (got.method, got.path) == ("POST", "/v1/chat/completions")
        assert got.header("authorization") == [f"Bearer {key}"]
        assert got.header("api-key") == [] and got.header("x-api-key") == []
        assert [k for k, _ in got.headers if k.startswith("x-portkey-")] == []
        for other in {CLIENT_KEY, KEY_ONE, KEY_TWO, "OPENAI_API_KEY"} - {key}:
            leaks = [k for k, v in got.headers if other in v]
            assert leaks == [], f"{other!r} reached {server.url} in {leaks}"
            assert other.encode() not in got.body
        assert got.json() in sent_bodies


def fallback_config(first, second):
    return {"strategy": {"mode": "fallback"},
            "targets": [target(first, KEY_ONE), target(second, KEY_TWO)]}


def test_portkey_sdk_fallback_skips_failing_target(start_keyway, fakes):
    down, up = fakes(UnavailableUpstream), fakes()
    log = Exchanges()
    client = portkey(start_keyway(CONFIG), fallback_config(down, up), log)

    resp = client.chat.completions.create(model=MODEL, messages=MESSAGES, timeout=SDK_TIMEOUT_S)

    assert resp.choices[0].message.content == REPLY
    sent = log.only()
    assert_reached(down, KEY_ONE, log, n=1)
    assert_reached(up, KEY_TWO, log, n=1)
    # The replayed body is byte-identical on both attempts.
    assert down.requests[0].body == up.requests[0].body == sent.content
    assert log.responses[0].headers.get(LAST_USED) == "config.targets[1]"


def test_portkey_sdk_fallback_stream_from_second_target(start_keyway, fakes):
    down, up = fakes(UnavailableUpstream), fakes()
    log = Exchanges()
    client = portkey(start_keyway(CONFIG), fallback_config(down, up), log)

    stream = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True, timeout=SDK_TIMEOUT_S
    )
    assert stream_pieces(stream) == STREAM_PIECES

    sent = log.only()
    assert_reached(down, KEY_ONE, log, n=1)
    assert_reached(up, KEY_TWO, log, n=1)
    assert up.requests[0].json()["stream"] is True
    assert down.requests[0].body == up.requests[0].body == sent.content
    assert log.responses[0].headers.get("content-type", "").startswith("text/event-stream")
    assert log.responses[0].headers.get(LAST_USED) == "config.targets[1]"


def test_portkey_sdk_loadbalance_splits_across_targets(start_keyway, fakes):
    a, b = fakes(), fakes()
    config = {"strategy": {"mode": "loadbalance"},
              "targets": [{**target(a, KEY_ONE), "weight": 1}, {**target(b, KEY_TWO), "weight": 1}]}
    log = Exchanges()
    client = portkey(start_keyway(CONFIG), config, log)

    replies = [
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": f"request {i}"}],
            timeout=SDK_TIMEOUT_S,
        ).choices[0].message.content
        for i in range(LB_REQUESTS)
    ]

    assert replies == [REPLY] * LB_REQUESTS
    # No SDK retries hid a failure: one SDK request per completion.
    assert len(log.requests) == LB_REQUESTS
    assert len(a.requests) + len(b.requests) == LB_REQUESTS
    assert len(a.requests) >= LB_MIN_EACH and len(b.requests) >= LB_MIN_EACH, \
        (len(a.requests), len(b.requests))
    assert_reached(a, KEY_ONE, log)
    assert_reached(b, KEY_TWO, log)
    # Each request reached exactly one target: the one its response header names.
    seen = {"config.targets[0]": [r.json()["messages"][0]["content"] for r in a.requests],
            "config.targets[1]": [r.json()["messages"][0]["content"] for r in b.requests]}
    assert len(log.responses) == LB_REQUESTS
    for i, resp in enumerate(log.responses):
        used = resp.headers.get(LAST_USED)
        assert used in seen, (i, used)
        assert f"request {i}" in seen[used], (i, used)
