#!/usr/bin/env python3
"""The SSE load client of loadtest/streams.sh (standard library only). Two modes, each printing
one JSON object on stdout:

  hold  open --streams chat-completion streams ramped evenly over --ramp-s seconds, spread over
        --procs worker processes (each its own event loop), read every event of every stream and
        count them. Reports streams that ended with [DONE], content events, HTTP statuses,
        connection errors, how late events arrived (against first event + k * interval), the
        peak of streams open at once, and the client's own CPU seconds.

  ttfb  start streams at a fixed rate (--rate per second, open loop) for --duration-s seconds
        on a pool of kept-alive connections, after --warmup-s seconds of the same; per stream
        time from the request's write to the answer's first byte (ttfb) and to the first
        complete SSE event (first_event). Reports percentiles in ms.

The response parser is a real one (status line, headers, chunked or Content-Length body, SSE
events split on a blank line), so a proxy that re-chunks the stream is counted correctly.
"""

import argparse
import asyncio
import gc
import json
import multiprocessing
import os
import resource
import socket
import sys
import time
import urllib.parse

BODY = b'{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}'


def request_bytes(url, headers, events, interval_ms):
    u = urllib.parse.urlsplit(url)
    path = u.path + ("?" + u.query if u.query else "")
    lines = [f"POST {path} HTTP/1.1", f"Host: {u.netloc}", "Content-Type: application/json",
             "Accept: text/event-stream", f"Content-Length: {len(BODY)}",
             f"x-lt-events: {events}", f"x-lt-interval-ms: {interval_ms}"] + list(headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + BODY, u.hostname, u.port


class Stream(asyncio.Protocol):
    """One connection; runs one stream at a time. The owner sets `on_event(content: bool)` and
    `on_end(status, ok, keepalive)`; `begin(request)` writes a request."""

    def __init__(self, owner):
        self.owner = owner
        self.transport = None
        self.connected = owner.loop.create_future()
        self.reset()

    def reset(self):
        self.buf = b""
        self.state = "head"
        self.status = 0
        self.remaining = 0  # body bytes left (length) or of the current chunk (chunked)
        self.sse = b""
        self.done = False
        self.keepalive = True
        self.active = False

    def connection_made(self, transport):
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connected.set_result(True)

    def connection_lost(self, exc):
        self.transport = None
        if not self.connected.done():
            self.connected.set_exception(exc or ConnectionError("closed"))
        if self.active:
            self.active = False
            if self.state == "close":  # a body delimited by the end of the connection
                self.owner.on_end(self, self.status, self.status == 200 and self.done, False)
            else:
                self.owner.on_abort(self, "closed mid-stream" if self.status else "closed before answer")

    def begin(self, req):
        self.reset()
        self.active = True
        self.owner.on_sent(self)
        self.transport.write(req)

    def data_received(self, data):
        if not self.active:
            return
        self.owner.on_bytes(self)
        self.buf += data
        try:
            self.parse()
        except ValueError as e:
            self.active = False
            self.owner.on_abort(self, f"bad response: {e}")
            self.transport.close()

    def parse(self):
        while self.active:
            if self.state == "head":
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(self.buf) > 65536:
                        raise ValueError("head too long")
                    return
                head, self.buf = self.buf[:end].decode("latin-1"), self.buf[end + 4:]
                lines = head.split("\r\n")
                self.status = int(lines[0].split(" ", 2)[1])
                hdrs = {}
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    hdrs[k.strip().lower()] = v.strip().lower()
                self.keepalive = hdrs.get("connection") != "close"
                if "chunked" in hdrs.get("transfer-encoding", ""):
                    self.state = "size"
                elif "content-length" in hdrs:
                    self.state, self.remaining = "length", int(hdrs["content-length"])
                else:
                    self.state, self.keepalive = "close", False
            elif self.state == "size":
                end = self.buf.find(b"\r\n")
                if end < 0:
                    return
                size = int(self.buf[:end].split(b";")[0], 16)
                self.buf = self.buf[end + 2:]
                if size == 0:
                    self.state = "trailer"
                else:
                    self.state, self.remaining = "data", size
            elif self.state == "data":
                if not self.buf:
                    return
                piece = self.buf[:self.remaining]
                self.buf = self.buf[len(piece):]
                self.remaining -= len(piece)
                self.body(piece)
                if self.remaining == 0:
                    self.state = "crlf"
            elif self.state == "crlf":
                if len(self.buf) < 2:
                    return
                if self.buf[:2] != b"\r\n":
                    raise ValueError("chunk not followed by CRLF")
                self.buf = self.buf[2:]
                self.state = "size"
            elif self.state == "trailer":
                end = self.buf.find(b"\r\n")
                if end < 0:
                    return
                line, self.buf = self.buf[:end], self.buf[end + 2:]
                if line == b"":
                    self.complete()
            elif self.state == "length":
                piece = self.buf[:self.remaining]
                self.buf = self.buf[len(piece):]
                self.remaining -= len(piece)
                self.body(piece)
                if self.remaining == 0:
                    self.complete()
                else:
                    return
            elif self.state == "close":
                self.body(self.buf)
                self.buf = b""
                return

    def body(self, piece):
        if self.status != 200 or not piece:
            return
        self.sse += piece
        while True:
            end = self.sse.find(b"\n\n")
            if end < 0:
                return
            ev, self.sse = self.sse[:end], self.sse[end + 2:]
            if ev.startswith(b"data: [DONE]"):
                self.done = True
            elif ev.startswith(b"data: "):
                self.owner.on_event(self)

    def complete(self):
        self.active = False
        self.owner.on_end(self, self.status, self.status == 200 and self.done, self.keepalive)


# --- hold -------------------------------------------------------------------------------------

class Hold:
    def __init__(self, a, worker, loop):
        self.a, self.loop = a, loop
        self.req, self.host, self.port = request_bytes(a.url, a.header, a.events, a.interval_ms)
        self.interval = a.interval_ms / 1000.0
        self.r = {"streams": 0, "ok": 0, "events": 0, "done": 0, "statuses": {}, "errors": {},
                  "lag_ms": {}, "peak_open": 0}
        self.open = 0
        self.left = 0
        self.finished = loop.create_future()
        self.first = {}  # stream -> (time of its first event, events seen)
        self.worker = worker

    def err(self, what):
        self.r["errors"][what] = self.r["errors"].get(what, 0) + 1

    def on_sent(self, s):
        self.first[s] = [0.0, 0]

    def on_bytes(self, s):
        pass

    def on_event(self, s):
        now = self.loop.time()
        st = self.first[s]
        if st[1] == 0:
            st[0] = now
        else:
            lag = int((now - st[0] - st[1] * self.interval) * 1000)
            lag = max(lag, 0)
            self.r["lag_ms"][lag] = self.r["lag_ms"].get(lag, 0) + 1
        st[1] += 1
        self.r["events"] += 1

    def on_end(self, s, status, ok, keepalive):
        self.r["statuses"][str(status)] = self.r["statuses"].get(str(status), 0) + 1
        if ok:
            self.r["ok"] += 1
            self.r["done"] += 1
        elif status == 200:
            self.err("ended without [DONE]")
        self.end(s)

    def on_abort(self, s, why):
        self.err(why)
        self.end(s)

    def end(self, s):
        self.first.pop(s, None)
        self.open -= 1
        if s.transport is not None:
            s.transport.close()
        self.left -= 1
        if self.left == 0 and not self.finished.done():
            self.finished.set_result(None)

    async def one(self, due):
        delay = due - self.loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            _, s = await asyncio.wait_for(
                self.loop.create_connection(lambda: Stream(self), self.host, self.port), 10)
        except (OSError, asyncio.TimeoutError) as e:
            self.err(f"connect: {type(e).__name__}")
            self.left -= 1
            if self.left == 0 and not self.finished.done():
                self.finished.set_result(None)
            return
        self.open += 1
        self.r["peak_open"] = max(self.r["peak_open"], self.open)
        s.begin(self.req)

    async def run(self, n, offset, step, t0):
        self.r["streams"] = self.left = n
        tasks = [asyncio.ensure_future(self.one(t0 + offset + i * step)) for i in range(n)]
        deadline = self.a.ramp_s + self.a.events * self.interval + self.a.timeout_s
        try:
            await asyncio.wait_for(asyncio.shield(self.finished), deadline)
        except asyncio.TimeoutError:
            self.r["errors"]["still open at the deadline"] = self.open
        for t in tasks:
            t.cancel()
        return self.r


def hold_worker(a, w, start_at, q):
    gc.freeze()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    n = a.streams // a.procs + (1 if w < a.streams % a.procs else 0)
    step = a.ramp_s / a.streams * a.procs if a.streams else 0
    offset = a.ramp_s / a.streams * w if a.streams else 0
    h = Hold(a, w, loop)
    # start_at is a time.monotonic() instant; the loop's clock is monotonic too.
    t0 = loop.time() + (start_at - time.monotonic())
    r = loop.run_until_complete(h.run(n, offset, step, t0))
    ru = resource.getrusage(resource.RUSAGE_SELF)
    r["cpu_s"] = ru.ru_utime + ru.ru_stime
    q.put(r)


def hold(a):
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    start_at = time.monotonic() + 0.5
    procs = [ctx.Process(target=hold_worker, args=(a, w, start_at, q)) for w in range(a.procs)]
    for p in procs:
        p.start()
    results = [q.get() for _ in procs]
    for p in procs:
        p.join(10)
    total = {"streams": 0, "ok": 0, "events": 0, "done": 0, "statuses": {}, "errors": {},
             "peak_open": 0, "cpu_s": 0.0, "worker_cpu_s": []}
    lag = {}
    for r in results:
        for k in ("streams", "ok", "events", "done", "peak_open", "cpu_s"):
            total[k] += r[k]
        total["worker_cpu_s"].append(round(r["cpu_s"], 2))
        for k in ("statuses", "errors"):
            for kk, v in r[k].items():
                total[k][kk] = total[k].get(kk, 0) + v
        for kk, v in r["lag_ms"].items():
            lag[kk] = lag.get(kk, 0) + v
    total["expected_events"] = a.streams * a.events
    total["lag_ms"] = {f"p{q}": pct_hist(lag, q) for q in (50, 99, 99.9)}
    total["lag_ms"]["max"] = max(lag) if lag else None
    total["cpu_s"] = round(total["cpu_s"], 2)
    return total


def pct_hist(hist, q):
    n = sum(hist.values())
    if n == 0:
        return None
    want, seen = q / 100.0 * n, 0
    for k in sorted(hist):
        seen += hist[k]
        if seen >= want:
            return k
    return max(hist)


# --- ttfb -------------------------------------------------------------------------------------

class Paced:
    def __init__(self, a, loop):
        self.a, self.loop = a, loop
        self.req, self.host, self.port = request_bytes(a.url, a.header, a.events, a.interval_ms)
        self.idle = []
        self.conns = 0
        self.t = {}  # stream -> [sent_ns, first_byte_ns, first_event_ns, measuring]
        self.ttfb, self.first_event = [], []
        self.errors, self.statuses = {}, {}
        self.open = self.peak_open = self.started = self.ended = 0
        self.measuring = False
        self.drained = None

    def err(self, what):
        if self.measuring:
            self.errors[what] = self.errors.get(what, 0) + 1

    def on_sent(self, s):
        self.t[s] = [time.perf_counter_ns(), 0, 0, self.measuring]

    def on_bytes(self, s):
        t = self.t[s]
        if t[1] == 0:
            t[1] = time.perf_counter_ns()

    def on_event(self, s):
        t = self.t[s]
        if t[2] == 0:
            t[2] = time.perf_counter_ns()

    def on_end(self, s, status, ok, keepalive):
        t = self.t.pop(s)
        if t[3]:
            self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1
            if ok and t[2]:
                self.ttfb.append((t[1] - t[0]) / 1e6)
                self.first_event.append((t[2] - t[0]) / 1e6)
            elif status == 200:
                self.errors["ended without [DONE]"] = self.errors.get("ended without [DONE]", 0) + 1
        self.finish()
        if keepalive and s.transport is not None:
            self.idle.append(s)
        elif s.transport is not None:
            s.transport.close()

    def on_abort(self, s, why):
        t = self.t.pop(s, None)
        if t and t[3]:
            self.errors[why] = self.errors.get(why, 0) + 1
        self.finish()

    def finish(self):
        self.open -= 1
        self.ended += 1
        if self.drained is not None and self.open == 0 and not self.drained.done():
            self.drained.set_result(None)

    async def connect(self):
        _, s = await asyncio.wait_for(
            self.loop.create_connection(lambda: Stream(self), self.host, self.port), 5)
        self.conns += 1
        return s

    async def launch_new(self):
        try:
            s = await self.connect()
        except (OSError, asyncio.TimeoutError) as e:
            self.err(f"connect: {type(e).__name__}")
            self.open -= 1
            return
        s.begin(self.req)

    def launch(self):
        self.open += 1
        self.started += 1
        self.peak_open = max(self.peak_open, self.open)
        while self.idle:
            s = self.idle.pop()
            if s.transport is not None and not s.transport.is_closing():
                s.begin(self.req)
                return
        asyncio.ensure_future(self.launch_new())

    async def pace(self, seconds):
        gap = 1.0 / self.a.rate
        t0 = self.loop.time()
        n = int(seconds * self.a.rate)
        for i in range(n):
            due = t0 + i * gap
            delay = due - self.loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self.launch()
        return self.loop.time() - t0

    async def run(self):
        a = self.a
        # Open a pool first, so the measured part rarely connects.
        pool = max(4, int(a.rate * (a.events * a.interval_ms / 1000.0 + 0.05) * 1.5))
        for _ in range(pool):
            try:
                self.idle.append(await self.connect())
            except (OSError, asyncio.TimeoutError) as e:
                return {"errors": {f"connect: {type(e).__name__}": 1}}
        if a.warmup_s > 0:
            await self.pace(a.warmup_s)
        gc.collect()
        gc.disable()
        self.measuring = True
        conns0 = self.conns
        cpu0 = time.process_time()
        started0 = self.started
        elapsed = await self.pace(a.duration_s)
        self.measuring = False
        self.drained = self.loop.create_future()
        if self.open > 0:
            try:
                await asyncio.wait_for(self.drained, a.events * a.interval_ms / 1000.0 + a.timeout_s)
            except asyncio.TimeoutError:
                self.errors["still open at the deadline"] = self.open
        cpu = time.process_time() - cpu0
        gc.enable()
        for s in self.idle:
            if s.transport is not None:
                s.transport.close()
        return {
            "streams": self.started - started0, "ok": len(self.ttfb), "seconds": round(elapsed, 3),
            "rate": round((self.started - started0) / elapsed, 1) if elapsed else 0,
            "ttfb_ms": pcts(self.ttfb), "first_event_ms": pcts(self.first_event),
            "statuses": self.statuses, "errors": self.errors, "peak_open": self.peak_open,
            "pool": pool, "new_connections": self.conns - conns0, "cpu_s": round(cpu, 3)}


async def paced(a):
    return await Paced(a, asyncio.get_running_loop()).run()


def pcts(xs):
    if not xs:
        return {}
    xs = sorted(xs)
    pick = lambda q: xs[min(len(xs) - 1, int(q / 100.0 * len(xs)))]
    return {"p50": round(pick(50), 4), "p90": round(pick(90), 4), "p99": round(pick(99), 4),
            "max": round(xs[-1], 4), "mean": round(sum(xs) / len(xs), 4)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("mode", choices=["hold", "ttfb"])
    p.add_argument("--url", required=True)
    p.add_argument("--header", action="append", default=[], help="'name: value', repeatable")
    p.add_argument("--events", type=int, default=30, help="content events per stream")
    p.add_argument("--interval-ms", type=int, default=1000)
    p.add_argument("--timeout-s", type=float, default=30, help="grace after a stream's expected end")
    p.add_argument("--streams", type=int, default=1000)
    p.add_argument("--ramp-s", type=float, default=10)
    p.add_argument("--procs", type=int, default=4)
    p.add_argument("--rate", type=float, default=500)
    p.add_argument("--duration-s", type=float, default=10)
    p.add_argument("--warmup-s", type=float, default=2)
    a = p.parse_args()
    if a.mode == "hold":
        out = hold(a)
    else:
        out = asyncio.run(paced(a))
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
