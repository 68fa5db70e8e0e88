"""A fake OpenAI-compatible upstream that records every request it receives."""

import gzip
import json
import threading
import zlib
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REPLY = "hello from the fake upstream"
STREAM_PIECES = ["one", " two", " three"]


@dataclass
class Recorded:
    method: str
    path: str  # with the query string
    headers: list  # [(lower-case name, value)], duplicates kept
    body: bytes

    def header(self, name):
        return [v for k, v in self.headers if k == name.lower()]

    def json(self):
        return json.loads(self.body)


def completion(model):
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": REPLY},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10},
    }


def chunk(model, index, piece):
    delta = {"content": piece}
    if index == 0:
        delta["role"] = "assistant"
    last = index == len(STREAM_PIECES) - 1
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": "stop" if last else None}],
    }


def usage_chunk(model):
    """OpenAI's last chunk when the client asked for `stream_options.include_usage`."""
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
    }


def read_body(handler):
    """The request body of a BaseHTTPRequestHandler, chunked or with Content-Length."""
    if "chunked" in handler.headers.get("Transfer-Encoding", "").lower():
        body = b""
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return body
            body += handler.rfile.read(size)
            handler.rfile.readline()
    return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))


def send_json(handler, status, obj, content_type="application/json"):
    data = json.dumps(obj).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _read_body(self):
        return read_body(self)

    def _handle(self):
        body = self._read_body()
        self.server.record(
            Recorded(
                method=self.command,
                path=self.path,
                headers=[(k.lower(), v) for k, v in self.headers.items()],
                body=body,
            )
        )
        if self.command != "POST" or not self.path.split("?")[0].endswith("/chat/completions"):
            return self._send_json(404, {"error": {"message": f"fake upstream: no route {self.path}"}})
        try:
            req = json.loads(body)
        except ValueError:
            return self._send_json(400, {"error": {"message": "fake upstream: body is not JSON"}})
        model = req.get("model", "unknown")
        if req.get("stream") is True:
            usage = (req.get("stream_options") or {}).get("include_usage") is True
            return self._send_stream(model, usage)
        self._send_json(200, completion(model))

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

    def _gzip(self):
        """Answer gzip: the server is set to, and the client asked for it."""
        asked = self.headers.get("Accept-Encoding", "").lower()
        return self.server.gzip_when_asked and "gzip" in asked

    def _send_json(self, status, obj):
        if not self._gzip():
            return send_json(self, status, obj)
        data = gzip.compress(json.dumps(obj).encode())
        self.server.sent_bodies.append(data)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_stream(self, model, usage=False):
        gz = self._gzip()
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        if gz:
            self.send_header("Content-Encoding", "gzip")
        self.end_headers()
        # gzip framing (wbits 31), flushed after each event as a compressing server does.
        enc = zlib.compressobj(wbits=31) if gz else None
        events = [json.dumps(chunk(model, i, p)) for i, p in enumerate(STREAM_PIECES)]
        if usage:
            events.append(json.dumps(usage_chunk(model)))
        for event in events + ["[DONE]", None]:
            if event is None:
                data = enc.flush(zlib.Z_FINISH) if enc else b""
            else:
                data = f"data: {event}\n\n".encode()
                data = enc.compress(data) + enc.flush(zlib.Z_SYNC_FLUSH) if enc else data
            if data:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class LoopbackServer(ThreadingHTTPServer):
    """A server on a free 127.0.0.1 port, served from a daemon thread; subclasses record what
    they receive under `_lock`."""

    daemon_threads = True

    def __init__(self, handler):
        super().__init__(("127.0.0.1", 0), handler)
        self._lock = threading.Lock()
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self):
        return self.server_address[1]

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self.shutdown()
        self.server_close()


class FakeUpstream(LoopbackServer):
    def __init__(self):
        super().__init__(Handler)
        self.requests = []
        # Off by default: answers gzip-compressed when the client accepts gzip.
        self.gzip_when_asked = False
        self.sent_bodies = []  # compressed JSON bodies sent, in order

    def record(self, req):
        with self._lock:
            self.requests.append(req)
