"""The fake upstream on its own (no keyway): a broken fake must not pass for a keyway bug."""

import http.client
import json

import openai
from portkey_ai import Portkey

from fake_upstream import REPLY, STREAM_PIECES
from sdk_helpers import MESSAGES, MODEL, SDK_TIMEOUT_S, SentLog, only_request, stream_pieces


def test_records_request_and_streams_chunked(upstream):
    conn = http.client.HTTPConnection("127.0.0.1", upstream.port, timeout=5)
    body = json.dumps({"model": MODEL, "messages": MESSAGES, "stream": True}).encode()
    # A chunked request body, as a proxy streaming the client's body may send it.
    conn.putrequest("POST", "/v1/chat/completions?x=1")
    conn.putheader("Authorization", "Bearer k")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    conn.send(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
    resp = conn.getresponse()

    assert resp.status == 200
    assert resp.getheader("Content-Type") == "text/event-stream"
    assert resp.getheader("Transfer-Encoding") == "chunked"
    events = [e for e in resp.read().decode().split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert [c["object"] for c in chunks] == ["chat.completion.chunk"] * 3
    assert [c["choices"][0]["delta"]["content"] for c in chunks] == STREAM_PIECES

    got = only_request(upstream)
    assert (got.method, got.path) == ("POST", "/v1/chat/completions?x=1")
    assert got.header("authorization") == ["Bearer k"]
    assert got.body == body


def test_unknown_path_is_404_and_recorded(upstream):
    conn = http.client.HTTPConnection("127.0.0.1", upstream.port, timeout=5)
    conn.request("GET", "/v1/models")
    assert conn.getresponse().status == 404
    assert only_request(upstream).path == "/v1/models"


def test_sdks_parse_the_fake_directly(upstream):
    sent = SentLog()
    client = openai.OpenAI(
        base_url=f"{upstream.url}/v1", api_key="k", http_client=sent.client(),
        max_retries=0, timeout=SDK_TIMEOUT_S,
    )
    assert client.chat.completions.create(model=MODEL, messages=MESSAGES).choices[0].message.content == REPLY
    with client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True) as stream:
        assert stream_pieces(stream) == STREAM_PIECES

    portkey = Portkey(base_url=f"{upstream.url}/v1", api_key="pk", provider="openai",
                      http_client=sent.client())
    resp = portkey.chat.completions.create(model=MODEL, messages=MESSAGES, timeout=SDK_TIMEOUT_S)
    assert resp.choices[0].message.content == REPLY
    stream = portkey.chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True, timeout=SDK_TIMEOUT_S
    )
    assert stream_pieces(stream) == STREAM_PIECES

    assert len(upstream.requests) == 4
    assert [json.loads(r.content) for r in sent.requests] == [r.json() for r in upstream.requests]
