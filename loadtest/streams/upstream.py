#!/usr/bin/env python3
"""An OpenAI-shaped SSE upstream for loadtest/streams.sh (standard library only).

Every `POST /v1/chat/completions` that carries `Authorization: Bearer <key>` gets a
`text/event-stream` answer, chunked, one `chat.completion.chunk` event per interval and then
`data: [DONE]`; without the key it gets 401, so a proxy that forgets the credential shows up as
errors. The first event goes out with the headers (in the same write), the next ones at
start + k * interval on the event loop's clock, so thousands of streams cost one timer each, not
one coroutine each. Connections are kept alive between streams (HTTP/1.1).

Per request, two headers may change the shape (the proxies pass them through):
  x-lt-events: N          content events before [DONE] (default --events)
  x-lt-interval-ms: MS    gap between events (default --interval-ms)

    upstream.py --port P [--port P2 ...] --key sk-... [--events 30] [--interval-ms 1000]

It listens on every --port (one per target, so TIME_WAIT sockets of one target's run never
limit the next), writes "ready" to stdout when all are bound, and on SIGUSR1 prints a one-line
JSON summary of what it served to stderr.
"""

import argparse
import asyncio
import json
import signal
import socket
import sys

HEAD_LIMIT = 64 * 1024

STATS = {"streams": 0, "unauthorized": 0, "bad_requests": 0, "not_found": 0, "events": 0, "done": 0,
         "aborted": 0, "open": 0, "max_open": 0}


def chunk(payload: bytes) -> bytes:
    """One HTTP/1.1 chunk."""
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def event(seq: int, last: bool) -> bytes:
    """One SSE event: an OpenAI chat.completion.chunk (the last one says finish_reason stop)."""
    if last:
        delta, finish = b"{}", b'"stop"'
    else:
        delta, finish = b'{"content":" tok%d"}' % seq, b"null"
    return (b'data: {"id":"chatcmpl-lt","object":"chat.completion.chunk","created":1732300000,'
            b'"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_lt","choices":[{"index":0,'
            b'"delta":' + delta + b',"logprobs":null,"finish_reason":' + finish + b'}]}\n\n')


DONE = chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n"
UNAUTHORIZED_BODY = (b'{"error":{"message":"streams upstream: missing or wrong key",'
                     b'"type":"invalid_request_error"}}')


class Conn(asyncio.Protocol):
    def __init__(self, server):
        self.srv = server
        self.buf = b""
        self.transport = None
        self.need_body = -1  # bytes of body still to read; -1: reading a head
        self.busy = False    # a stream is being written on this connection
        self.timer = None
        self.head = None

    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc):
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
            STATS["aborted"] += 1
            STATS["open"] -= 1
        self.transport = None

    def data_received(self, data):
        self.buf += data
        while self.transport is not None and not self.busy:
            if self.need_body < 0:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(self.buf) > HEAD_LIMIT:
                        self.fail(b"431 Request Header Fields Too Large")
                    return
                self.head, self.buf = self.buf[:end], self.buf[end + 4:]
                self.need_body = self.content_length()
                if self.need_body < 0:
                    self.fail(b"400 Bad Request")
                    return
            if len(self.buf) < self.need_body:
                return
            self.buf = self.buf[self.need_body:]
            self.need_body = -1
            self.answer()

    def content_length(self):
        for line in self.head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                try:
                    return int(value.strip())
                except ValueError:
                    return -1
            if name == b"transfer-encoding":
                return -1  # clients of this test send Content-Length
        return 0

    def header(self, wanted: bytes):
        for line in self.head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == wanted:
                return value.strip()
        return None

    def fail(self, status: bytes):
        STATS["bad_requests"] += 1
        self.transport.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        self.transport.close()

    def answer(self):
        request_line = self.head.split(b"\r\n", 1)[0]
        method, _, rest = request_line.partition(b" ")
        path = rest.partition(b" ")[0]
        if method != b"POST" or path.split(b"?")[0] != b"/v1/chat/completions":
            STATS["not_found"] += 1
            self.transport.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            return
        if self.header(b"authorization") != self.srv.auth:
            STATS["unauthorized"] += 1
            self.transport.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: %d\r\n\r\n%s" % (len(UNAUTHORIZED_BODY), UNAUTHORIZED_BODY))
            return
        try:
            events = int(self.header(b"x-lt-events") or self.srv.events)
            interval = int(self.header(b"x-lt-interval-ms") or self.srv.interval_ms) / 1000.0
        except ValueError:
            self.fail(b"400 Bad Request")
            return
        STATS["streams"] += 1
        STATS["open"] += 1
        STATS["max_open"] = max(STATS["max_open"], STATS["open"])
        self.busy = True
        loop = self.srv.loop
        self.transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"X-Accel-Buffering: no\r\nTransfer-Encoding: chunked\r\n\r\n"
            + chunk(event(0, events <= 1)) + (DONE if events <= 1 else b""))
        STATS["events"] += 1
        if events <= 1:
            self.finish()
            return
        self.start, self.interval, self.events, self.seq = loop.time(), interval, events, 1
        self.timer = loop.call_at(self.start + interval, self.tick)

    def tick(self):
        self.timer = None
        if self.transport is None:
            return
        last = self.seq == self.events - 1
        data = chunk(event(self.seq, last))
        STATS["events"] += 1
        if last:
            self.transport.write(data + DONE)
            self.finish()
            return
        self.transport.write(data)
        self.seq += 1
        self.timer = self.srv.loop.call_at(self.start + self.seq * self.interval, self.tick)

    def finish(self):
        STATS["done"] += 1
        STATS["open"] -= 1
        self.busy = False
        if self.buf:  # a pipelined request behind this one
            self.srv.loop.call_soon(self.data_received, b"")


class Server:
    def __init__(self, args, loop):
        self.auth = b"Bearer " + args.key.encode()
        self.events = args.events
        self.interval_ms = args.interval_ms
        self.loop = loop


async def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--port", type=int, action="append", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--events", type=int, default=30)
    p.add_argument("--interval-ms", type=int, default=1000)
    args = p.parse_args()
    loop = asyncio.get_running_loop()
    srv = Server(args, loop)
    servers = []
    for port in args.port:
        servers.append(await loop.create_server(lambda: Conn(srv), "127.0.0.1", port, backlog=4096))
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, lambda: print(json.dumps(STATS), file=sys.stderr, flush=True))
    print("ready", flush=True)
    await stop.wait()
    for s in servers:
        s.close()


if __name__ == "__main__":
    asyncio.run(main())
