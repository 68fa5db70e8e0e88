#!/usr/bin/env python3
"""The markdown report of loadtest/streams.sh: reads WORK/meta.json, WORK/hold.jsonl and
WORK/ttfb.jsonl (as the script writes them) and prints the report on stdout.

    report.py WORK
"""

import json
import os
import statistics
import sys

KEYWAY_RSS_GOAL_MB = 100       # whole process, at the peak of the hold phase (MB = 10^6 bytes)
KEYWAY_ADDED_P50_GOAL_MS = 0.2  # TTFB added over direct, median over rounds

LABEL = {"direct": "upstream directly", "keyway": "keyway", "bare": "bare Pingora",
         "nginx": "nginx proxy"}


def lines(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(x) for x in f if x.strip()]


def mib(kib):
    return f"{kib / 1024:.1f}"


def mb(kib):
    return kib * 1024 / 1e6


def fmt(v, f="{:.3f}"):
    return "—" if v is None else f.format(v)


def errors_of(c):
    bad = sum(v for k, v in c.get("statuses", {}).items() if k != "200")
    return bad + sum(c.get("errors", {}).values())


def errors_text(c):
    parts = [f"HTTP {k}: {v}" for k, v in sorted(c.get("statuses", {}).items()) if k != "200"]
    parts += [f"{k}: {v}" for k, v in sorted(c.get("errors", {}).items())]
    return ", ".join(parts) or "0"


def hold_section(meta, rows):
    out = []
    n_goal, n = meta["streams"], meta["hold_streams"]
    events = meta["hold_s"] * 1000 // meta["event_ms"]
    out.append(f"## Holding {n} concurrent SSE streams, one worker each\n")
    out.append(f"{n} streams ramped evenly over {meta['ramp_s']} s, each {events} events "
               f"{meta['event_ms']} ms apart then `data: [DONE]` ({meta['hold_s']} s per stream), "
               f"read by {meta['procs']} client processes. Every stream is open at once from "
               f"{meta['ramp_s']} s to {meta['hold_s'] - meta['event_ms'] / 1000:g} s; the proxy's CPU "
               f"is measured inside that window (a second in from each edge), so it is the cost of "
               f"holding streams and passing ~{round(n * 1000 / meta['event_ms'])} events/s, not of "
               f"opening them.\n")
    if n < n_goal:
        out.append(f"**Fewer streams than asked for:** {n_goal} streams need "
                   f"{2 * n_goal + meta['fd_idle'] + 16} descriptors in one proxy process (client "
                   f"side + upstream side + its own {meta['fd_idle']}); the open-file limit here is "
                   f"{meta['nofile']} and cannot be raised (no CAP_SYS_RESOURCE), so every target "
                   f"held {n}. The RSS column \"at {n_goal}\" extrapolates linearly from the "
                   f"measured per-stream growth.\n")
    out.append("| target | events received / expected | streams ended with [DONE] | errors | "
               "RSS idle MiB | RSS peak MiB | RSS after MiB | KiB per stream (peak − idle) | "
               f"RSS at {n_goal} streams MiB | CPU % while holding | CPU-s per stream per minute | "
               "proxy CPU-s whole run | event lateness p99 / max ms | client CPU-s |")
    out.append("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        c, p = r["client"], r["proxy"]
        lag = c.get("lag_ms", {})
        cells = [LABEL.get(r["target"], r["target"]), f"{c['events']} / {c['expected_events']}",
                 f"{c['done']} / {c['streams']}", errors_text(c)]
        if p:
            per = (p["rss_peak_kib"] - p["rss_idle_kib"]) / max(1, r["streams"])
            at_goal = p["rss_idle_kib"] + per * n_goal
            pct = 100 * p["cpu_window_s"] / p["window_s"] if p["window_s"] else None
            per_min = (p["cpu_window_s"] / r["streams"] * 60 / p["window_s"]) if p["window_s"] else None
            cells += [mib(p["rss_idle_kib"]), mib(p["rss_peak_kib"]), mib(p["rss_after_kib"]),
                      f"{per:.1f}", mib(at_goal), fmt(pct, "{:.1f}"), fmt(per_min, "{:.5f}"),
                      f"{p['cpu_total_s']:.2f}"]
        else:
            cells += ["—"] * 8
        cells += [f"{fmt(lag.get('p99'), '{}')} / {fmt(lag.get('max'), '{}')}", f"{c['cpu_s']:.1f}"]
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    out.append("- events: content events (`data: {...}`) counted by the client; [DONE] counted "
               "separately. Lateness: arrival of event k after the stream's first event minus "
               "k × interval (the generator's and the path's queueing).")
    out.append("- RSS is VmRSS of the proxy process (nginx: its one worker), sampled every 0.25 s; "
               f"after = {meta.get('settle_s', 'a few')} s after the last stream closed. Kernel socket "
               "buffers are not in RSS (TCP pages at the peak are listed below).")
    for r in rows:
        if r["target"] == "keyway" and r["proxy"]:
            p = r["proxy"]
            per = (p["rss_peak_kib"] - p["rss_idle_kib"]) / max(1, r["streams"])
            at_goal = p["rss_idle_kib"] + per * n_goal
            peak_mb = mb(max(p["rss_peak_kib"], at_goal if n < n_goal else 0))
            verdict = ("meets" if peak_mb < KEYWAY_RSS_GOAL_MB
                       else f"MISSES by {peak_mb - KEYWAY_RSS_GOAL_MB:.1f} MB")
            basis = f"peak {mb(p['rss_peak_kib']):.1f} MB"
            if n < n_goal:
                basis += f" at {n} streams, {mb(at_goal):.1f} MB extrapolated to {n_goal}"
            out.append(f"- keyway, whole process: {basis} — {verdict} the < {KEYWAY_RSS_GOAL_MB} MB goal")
    out.append("")
    out.append("### Where each proxy's memory is at the peak (/proc/PID/smaps)\n")
    for r in rows:
        p = r["proxy"]
        if not p:
            continue
        out.append(f"**{LABEL.get(r['target'], r['target'])}** — {p['fds_at_peak']} descriptors, "
                   f"{p['threads']} threads; kernel: `{p['sockstat']}`\n")
        out.append("```")
        out.append(p["smaps_rollup"])
        out.append("-- RSS KiB by mapping name --")
        out.append(p["by_name"])
        out.append("-- largest single mappings (RSS KiB, name, range) --")
        out.append(p["top_mappings"])
        out.append("```\n")
    return out


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def ttfb_section(meta, rows):
    out = []
    targets = meta["targets"].split()
    rounds = sorted({r["round"] for r in rows})
    by = {(r["target"], r["round"]): r for r in rows}
    out.append(f"## Added time to first byte on a stream, {meta['rate']:g} new streams/s\n")
    out.append(f"{len(rounds)} interleaved rounds ({' '.join(targets)}) of {meta['dur']} s after "
               f"{meta['warm']} s of warm-up at the same rate; streams of {meta['tev']} events "
               f"{meta['tint']} ms apart on kept-alive connections (pool opened before the round). "
               "TTFB: the request's write to the answer's first byte; first event: to the first "
               "complete `data:` event. Added: target − direct of the same round, median over "
               "rounds.\n")
    out.append("| target | achieved streams/s | TTFB p50 ms | TTFB p99 ms | added p50 ms | "
               "added p99 ms | first event p50 ms | first event p99 ms | added first-event p50 ms | "
               "proxy CPU % | errors |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")

    def metric(t, r, k, q):
        row = by.get((t, r))
        return row["client"].get(k, {}).get(q) if row else None

    def added(t, k, q):
        d = [metric(t, r, k, q) - metric("direct", r, k, q) for r in rounds
             if metric(t, r, k, q) is not None and metric("direct", r, k, q) is not None]
        return median(d)

    for t in targets:
        rs = [by[(t, r)] for r in rounds if (t, r) in by]
        if not rs:
            continue
        errs = {}
        for x in rs:
            for k, v in x["client"].get("statuses", {}).items():
                if k != "200":
                    errs[f"HTTP {k}"] = errs.get(f"HTTP {k}", 0) + v
            for k, v in x["client"].get("errors", {}).items():
                errs[k] = errs.get(k, 0) + v
        has_direct = t != "direct" and "direct" in targets
        cells = [LABEL.get(t, t), fmt(median([x["client"].get("rate") for x in rs]), "{:.0f}"),
                 fmt(median([metric(t, r, "ttfb_ms", "p50") for r in rounds])),
                 fmt(median([metric(t, r, "ttfb_ms", "p99") for r in rounds])),
                 fmt(added(t, "ttfb_ms", "p50") if has_direct else None),
                 fmt(added(t, "ttfb_ms", "p99") if has_direct else None),
                 fmt(median([metric(t, r, "first_event_ms", "p50") for r in rounds])),
                 fmt(median([metric(t, r, "first_event_ms", "p99") for r in rounds])),
                 fmt(added(t, "first_event_ms", "p50") if has_direct else None),
                 fmt(median([x["proxy_cpu_pct"] for x in rs]), "{:.1f}"),
                 ", ".join(f"{k}: {v}" for k, v in errs.items()) or "0"]
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    if "keyway" in targets and "direct" in targets:
        a = added("keyway", "ttfb_ms", "p50")
        if a is not None:
            verdict = ("meets" if a < KEYWAY_ADDED_P50_GOAL_MS
                       else f"MISSES by {a - KEYWAY_ADDED_P50_GOAL_MS:.3f} ms")
            out.append(f"- keyway added TTFB p50: {a:.3f} ms — {verdict} the < "
                       f"{KEYWAY_ADDED_P50_GOAL_MS} ms goal")
        for t in ("bare", "nginx"):
            if t in targets:
                b = added(t, "ttfb_ms", "p50")
                if a is not None and b is not None:
                    out.append(f"- keyway − {LABEL[t]} added TTFB p50: {a - b:+.3f} ms")
    out.append("")
    out.append("### Every round\n")
    out.append("| target | round | streams/s | streams ok | TTFB p50 | p90 | p99 | max | first event p50 | "
               "p99 | new connections | proxy CPU % | client CPU-s | errors |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rounds:
        for t in targets:
            x = by.get((t, r))
            if not x:
                continue
            c = x["client"]
            tt, fe = c.get("ttfb_ms", {}), c.get("first_event_ms", {})
            out.append("| " + " | ".join([
                LABEL.get(t, t), str(r), fmt(c.get("rate"), "{:.0f}"), str(c.get("ok")),
                fmt(tt.get("p50")), fmt(tt.get("p90")), fmt(tt.get("p99")), fmt(tt.get("max")),
                fmt(fe.get("p50")), fmt(fe.get("p99")), str(c.get("new_connections")),
                fmt(x["proxy_cpu_pct"], "{:.1f}"), fmt(c.get("cpu_s"), "{:.2f}"),
                errors_text(c)]) + " |")
    return out


def main():
    work = sys.argv[1]
    with open(os.path.join(work, "meta.json")) as f:
        meta = json.load(f)
    hold = lines(os.path.join(work, "hold.jsonl"))
    ttfb = lines(os.path.join(work, "ttfb.jsonl"))
    out = ["# keyway streaming load test (SSE)", ""]
    out.append(f"- date: {meta['date']}")
    out.append(f"- host: {meta['host']}; every process (client, upstream, proxy) shares these cores")
    out.append(f"- keyway: {meta['keyway']} (built {meta['keyway_built']}, repo at {meta['rev']}), "
               f"RUST_LOG={meta['rust_log']}, --threads 1")
    out.append(f"- bare Pingora: {meta['bare']} (built {meta['bare_built']}), --threads 1")
    out.append(f"- nginx: {meta['nginx']}, 1 worker, proxy_buffering off; {meta['python']} "
               "client and upstream (standard library asyncio)")
    out.append(f"- run: targets \"{meta['targets']}\", phases \"{meta['phases']}\", open-file limit "
               f"{meta['nofile']}")
    out.append(f"- load average (1/5/15 min) at the start: {meta.get('load_start', '?')}, at the end: "
               f"{meta.get('load_end', '?')}; compiler processes running at the end: {meta.get('busy', '?')}")
    if meta.get("proxy_env"):
        out.append(f"- extra environment of keyway and bare Pingora: `{meta['proxy_env']}`")
    if meta.get("upstream"):
        out.append(f"- upstream totals: `{meta['upstream']}`")
    out.append("")
    if hold:
        out += hold_section(meta, hold)
    if ttfb:
        out += ttfb_section(meta, ttfb)
    print("\n".join(out))


if __name__ == "__main__":
    main()
