"""Token usage from compressed answers: the OpenAI SDK (httpx asks for `gzip, deflate`)
through keyway to a fake upstream that answers gzip when asked; the SDK reads the answers as
usual and keyway's /metrics counts their tokens."""

import time

import httpx
import openai
import pytest

from fake_upstream import REPLY, STREAM_PIECES
from keyway_probe import metric
from sdk_helpers import MESSAGES, MODEL, SDK_TIMEOUT_S, SentLog

CONFIG = """
trusted_custom_hosts = ["127.0.0.1"]
[upstream]
connect_timeout_ms = 2000
read_timeout_ms = 10000
[usage]
models = ["gpt-4o-mini"]
"""


@pytest.fixture(autouse=True)
def _register_client_keys(secrets_registry):
    secrets_registry.add("sk-client-key")


def headers(upstream):
    return {
        "x-portkey-provider": "openai",
        "x-portkey-custom-host": f"{upstream.url}/v1",
    }


def client(keyway, upstream, sent):
    return openai.OpenAI(
        base_url=f"{keyway.url}/v1",
        api_key="sk-client-key",
        default_headers=headers(upstream),
        http_client=sent.client(),
        max_retries=0,
        timeout=SDK_TIMEOUT_S,
    )


def tokens(keyway, want):
    """The prompt, completion and total counts, once they reach `want` (keyway counts when
    the request ends, just after the client has read the answer) or after 5 s."""
    deadline = time.monotonic() + 5
    while True:
        got = [
            metric(keyway, "keyway_llm_tokens_total", provider="openai", model=MODEL, kind=k)
            for k in ("prompt", "completion", "total")
        ]
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def test_openai_sdk_gzip_answers_count_their_tokens(start_keyway, upstream):
    upstream.gzip_when_asked = True
    keyway = start_keyway(CONFIG)
    sent = SentLog()
    resp = client(keyway, upstream, sent).chat.completions.create(
        model=MODEL, messages=MESSAGES
    )
    assert resp.choices[0].message.content == REPLY
    assert "gzip" in sent.only().headers["accept-encoding"]
    assert "gzip" in upstream.requests[0].header("accept-encoding")[0]
    assert len(upstream.sent_bodies) == 1, "the fake answered gzip"
    assert tokens(keyway, [5, 5, 10]) == [5, 5, 10]

    # The client receives the compressed bytes the fake sent, unchanged.
    with httpx.Client(trust_env=False, timeout=SDK_TIMEOUT_S) as c:
        with c.stream(
            "POST",
            f"{keyway.url}/v1/chat/completions",
            headers={
                **headers(upstream),
                "authorization": "Bearer sk-client-key",
                "accept-encoding": "gzip",
            },
            json={"model": MODEL, "messages": MESSAGES},
        ) as r:
            assert r.status_code == 200
            assert r.headers["content-encoding"] == "gzip"
            raw = b"".join(r.iter_raw())
    assert raw == upstream.sent_bodies[1]
    assert tokens(keyway, [10, 10, 20]) == [10, 10, 20]


def test_openai_sdk_gzip_stream_counts_its_usage_chunk(start_keyway, upstream):
    upstream.gzip_when_asked = True
    keyway = start_keyway(CONFIG)
    sent = SentLog()
    with client(keyway, upstream, sent).chat.completions.create(
        model=MODEL,
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    ) as stream:
        chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices]
    assert pieces == STREAM_PIECES
    assert chunks[-1].usage.total_tokens == 10
    assert "gzip" in upstream.requests[0].header("accept-encoding")[0]
    assert tokens(keyway, [7, 3, 10]) == [7, 3, 10]
    ttft = metric(keyway, "keyway_llm_time_to_first_token_seconds_count", provider="openai")
    assert ttft == 1
