"""Tracing through keyway with the real OpenAI SDK as the client: OpenTelemetry's own protobuf
classes (opentelemetry-proto, not the Rust types keyway encodes with) decode what keyway
exports to a fake OTLP/HTTP collector, and the fake upstream shows the traceparent it got."""

import time
from http.server import BaseHTTPRequestHandler

import openai
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest, ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from fake_upstream import LoopbackServer, read_body

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
MODEL = "gpt-4o-mini"
WAIT_S = 10


class CollectorHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = read_body(self)
        req = ExportTraceServiceRequest()
        req.ParseFromString(body)
        self.server.record(self.path, dict((k.lower(), v) for k, v in self.headers.items()), req)
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


class Collector(LoopbackServer):
    def __init__(self):
        super().__init__(CollectorHandler)
        self.exports = []

    def record(self, path, headers, req):
        with self._lock:
            self.exports.append((path, headers, req))

    def spans(self, trace_hex):
        with self._lock:
            exports = list(self.exports)
        return [
            (rs.resource, s)
            for _, _, req in exports
            for rs in req.resource_spans
            for ss in rs.scope_spans
            for s in ss.spans
            if s.trace_id.hex() == trace_hex
        ]

    def wait_spans(self, trace_hex, n):
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            got = self.spans(trace_hex)
            if len(got) >= n:
                assert len(got) == n, got
                return got
            time.sleep(0.05)
        pytest.fail(f"the collector got {len(self.spans(trace_hex))} of {n} spans")


@pytest.fixture
def collector():
    server = Collector().start()
    yield server
    server.stop()


def attrs(span):
    out = {}
    for kv in span.attributes:
        kind = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, kind)
    return out


def test_openai_sdk_trace_reaches_the_collector(start_keyway, upstream, collector, secrets_registry):
    secrets_registry.add("sk-client-key")
    secrets_registry.add("collector-secret")
    kw = start_keyway(f"""
[providers.openai]
base_url = "{upstream.url}/v1"
[tracing]
otlp_endpoint = "{collector.url}"
schedule_delay_ms = 50
headers = {{ x-collector-key = "collector-secret" }}
""")
    client = openai.OpenAI(
        base_url=f"{kw.url}/v1",
        api_key="sk-client-key",
        default_headers={
            "x-portkey-provider": "openai",
            "traceparent": f"00-{TRACE}-{PARENT}-01",
        },
        max_retries=0,
        timeout=15,
    )
    answer = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "private words"}]
    )
    assert answer.choices[0].message.content

    got = collector.wait_spans(TRACE, 2)
    by_kind = {s.kind: (res, s) for res, s in got}
    res, server = by_kind[Span.SpanKind.SPAN_KIND_SERVER]
    _, client_span = by_kind[Span.SpanKind.SPAN_KIND_CLIENT]
    assert server.parent_span_id.hex() == PARENT
    assert client_span.parent_span_id == server.span_id
    assert client_span.name == f"chat {MODEL}"
    assert [kv.value.string_value for kv in res.attributes if kv.key == "service.name"] == ["keyway"]

    [sent] = upstream.requests
    assert sent.header("traceparent") == [f"00-{TRACE}-{client_span.span_id.hex()}-01"]

    a = attrs(server)
    assert a["http.request.method"] == "POST"
    assert a["url.path"] == "/v1/chat/completions"
    assert a["http.response.status_code"] == 200
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == MODEL
    c = attrs(client_span)
    assert c["server.address"] == "127.0.0.1"
    assert c["server.port"] == upstream.port
    assert c["gen_ai.request.model"] == MODEL
    for value in list(a.values()) + list(c.values()):
        for secret in ("sk-client-key", "collector-secret", "private words"):
            assert secret not in str(value)

    path, headers, _ = collector.exports[0]
    assert path == "/v1/traces"
    assert headers["content-type"] == "application/x-protobuf"
    assert headers["x-collector-key"] == "collector-secret"
