#!/usr/bin/env python3
"""Client of loadtest/idle_conns.sh: opens N keep-alive connections to keyway, sends one
chat-completion request on each (reading its whole answer), holds them all idle, and reports
keyway's VmRSS (from /proc/PID/status) before, while held and after they are closed.

Usage: idle_conns.py PORT KEYWAY_PID N HOLD_S SETTLE_S [REQUESTS]
REQUESTS (default 1): requests per connection before it is held; 0 holds connections that never
sent a byte (what a connect-and-hold client costs). Prints one JSON object on stdout."""

import json
import socket
import sys
import time

BODY = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
REQUEST = (
    b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n"
    b"content-type: application/json\r\nx-portkey-provider: openai\r\n"
    b"content-length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY
)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def one_request(sock):
    """Sends the request and reads the answer (Content-Length framed); its status."""
    sock.sendall(REQUEST)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("closed before the answer's header")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("closed before the answer's body")
        rest += chunk
    return status


def main():
    port, pid, n, hold_s, settle_s = (int(a) for a in sys.argv[1:6])
    requests = int(sys.argv[6]) if len(sys.argv) > 6 else 1
    before = rss_kib(pid)
    socks, failed = [], 0
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            if all(one_request(s) == 200 for _ in range(requests)):
                socks.append(s)
                continue
        except (OSError, RuntimeError):
            pass
        failed += 1
        s.close()
    time.sleep(hold_s)
    held = rss_kib(pid)
    # Every connection still open from keyway's side: one more request on a sample.
    sample_ok = sum(one_request(s) == 200 for s in socks[:: max(1, len(socks) // 20)])
    for s in socks:
        s.close()
    time.sleep(settle_s)
    after = rss_kib(pid)
    per_conn = (held - before) * 1024 / len(socks) if socks else 0
    print(json.dumps({
        "connections": len(socks),
        "failed": failed,
        "rss_kib_before": before,
        "requests_per_connection": requests,
        "rss_kib_held": held,
        "rss_kib_after_close": after,
        "bytes_per_connection": round(per_conn),
        "sample_reused_ok": sample_ok,
    }))


if __name__ == "__main__":
    main()
