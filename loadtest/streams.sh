#!/usr/bin/env bash
# keyway streaming load test: what LLM streaming (SSE) traffic costs a proxy, for
#   direct  - the client straight to the SSE upstream (the generator's own baseline),
#   keyway  - keyway, Portkey headers (x-portkey-provider: openai), key from the config,
#   bare    - a bare Pingora proxy inserting the same header (loadtest/bare_pingora.rs),
#   nginx   - a one-worker nginx reverse proxy inserting it, proxy_buffering off,
# every proxy with ONE worker thread/process. The upstream (streams/upstream.py) answers each
# chat-completion POST with text/event-stream, chunked, one OpenAI chat.completion.chunk event
# per EVENT_MS and then `data: [DONE]`; it answers 401 without the key, so a proxy that forgets
# the credential shows up as errors. Two phases:
#   hold - STREAMS concurrent streams ramped over RAMP_S seconds, each HOLD_S seconds long; the
#          client (streams/client.py, CLIENT_PROCS processes) reads and counts every event.
#          Per proxy: VmRSS idle / peak / after the streams closed, the proxy's CPU while every
#          stream is open (per stream per minute, and %), events received vs expected, errors,
#          event lateness, and a /proc/PID/smaps view at the peak.
#   ttfb - streams started at TTFB_RATE per second (open loop, kept-alive connections), each
#          TTFB_EVENTS events TTFB_INTERVAL_MS apart, TTFB_ROUNDS interleaved rounds of
#          TTFB_DURATION s: time from the request's write to the answer's first byte and to
#          the first event, p50/p99, and what each proxy adds over the direct run of the same
#          round (median over rounds).
# Only the proxy's own process CPU is charged to it (nginx: the worker).
#
# Usage: loadtest/streams.sh         (needs nginx, python3, curl, jq; run as root for ulimit)
#        Wrap measuring runs in `flock <lock file> loadtest/streams.sh` on shared hosts.
# Env:   PHASES="hold ttfb"  TARGETS="direct keyway bare nginx" (order = order within a round)
#        STREAMS=10000 HOLD_S=30 RAMP_S=10 EVENT_MS=1000 CLIENT_PROCS=4 SETTLE_S=5
#        TTFB_RATE=500 TTFB_ROUNDS=5 TTFB_DURATION=10 TTFB_WARMUP=2 TTFB_EVENTS=3
#        TTFB_INTERVAL_MS=50
#        KEYWAY_BIN (default ${CARGO_TARGET_DIR:-~/.cache/keyway/target}/dist/keyway)
#        BARE_BIN   (default .../dist/examples/bare-pingora)   neither is built by this script
#        OUT=loadtest/results/streams-latest.md  KEYWAY_RUST_LOG=warn  NGINX_BIN=nginx
#        PROXY_ENV="NAME=VALUE ..." extra environment of the two Pingora proxies (keyway, bare),
#        for diagnostics, e.g. PROXY_ENV=GLIBC_TUNABLES=glibc.malloc.mmap_threshold=65536
#        KEEP_WORK=1 keeps the run's directory (logs, configs, per-target JSON); KEEP_WORK_ON_FAIL=1
#        only when the run fails
#        NOFILE=1048576 (the open-file limit asked for; without CAP_SYS_RESOURCE the hard limit
#        caps it, and a proxy needs two descriptors per stream: STREAMS is then lowered to
#        what fits, and the report says so)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
S=$HERE/streams
TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/keyway/target}

PHASES=${PHASES:-"hold ttfb"}
TARGETS=${TARGETS:-"direct keyway bare nginx"}
STREAMS=${STREAMS:-10000}
HOLD_S=${HOLD_S:-30}
RAMP_S=${RAMP_S:-10}
EVENT_MS=${EVENT_MS:-1000}
CLIENT_PROCS=${CLIENT_PROCS:-4}
SETTLE_S=${SETTLE_S:-5}
TTFB_RATE=${TTFB_RATE:-500}
TTFB_ROUNDS=${TTFB_ROUNDS:-5}
TTFB_DURATION=${TTFB_DURATION:-10}
TTFB_WARMUP=${TTFB_WARMUP:-2}
TTFB_EVENTS=${TTFB_EVENTS:-3}
TTFB_INTERVAL_MS=${TTFB_INTERVAL_MS:-50}
KEYWAY_BIN=${KEYWAY_BIN:-$TARGET_DIR/dist/keyway}
BARE_BIN=${BARE_BIN:-$TARGET_DIR/dist/examples/bare-pingora}
OUT=${OUT:-$HERE/results/streams-latest.md}
KEYWAY_RUST_LOG=${KEYWAY_RUST_LOG:-warn}
NGINX_BIN=${NGINX_BIN:-}
NOFILE=${NOFILE:-1048576}
PROXY_ENV=${PROXY_ENV:-}
API_KEY=sk-streams-loadtest

declare -A T_URL=()   # name -> URL the client posts to
declare -A T_PID=()   # name -> pid charged for the target (empty: direct)
declare -A T_HDRS=()  # name -> client headers, one per line
declare -A T_LOG=()   # name -> log to show when something fails
declare -A T_UP=()    # name -> upstream port of the target (one each)
STOP_LIST=()          # "pid:signal" of every process we started
BG_PIDS=()            # clients and samplers running in the background
USED_PORTS=" "
WORK=""
HOLD_STREAMS=""       # STREAMS, or fewer when the descriptor limit cannot hold them
UPSTREAM_PID=""

LOG_PREFIX=streams
# shellcheck source=lib.sh
. "$HERE/lib.sh"

# Stop everything we started (the background samplers and clients first).
cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${BG_PIDS[@]}"; do
        alive "$pid" && kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null || true
    done
    stop_tracked
    remove_work "$rc"
    exit "$rc"
}

fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
now() { date +%s.%N; }
# sleep_until T: sleep until the epoch time T (no-op when past).
sleep_until() {
    local d
    d=$(awk -v t="$1" -v n="$(now)" 'BEGIN { d = t - n; printf "%.3f", (d > 0 ? d : 0) }')
    sleep "$d"
}

# --- components --------------------------------------------------------------------------------

start_upstream() {
    local t ports=() args=()
    for t in $TARGETS; do
        free_port "T_UP[$t]"
        args+=(--port "${T_UP[$t]}")
    done
    python3 "$S/upstream.py" "${args[@]}" --key "$API_KEY" --events "$((HOLD_S * 1000 / EVENT_MS))" \
        --interval-ms "$EVENT_MS" </dev/null >"$WORK/upstream.out" 2>"$WORK/upstream.log" &
    UPSTREAM_PID=$!
    track "$UPSTREAM_PID" TERM
    local i
    for ((i = 0; i < 100; i++)); do
        alive "$UPSTREAM_PID" || { show_log "$WORK/upstream.log"; die "the upstream exited during start-up"; }
        grep -q ready "$WORK/upstream.out" 2>/dev/null && break
        sleep 0.1
    done
    ((i < 100)) || die "the upstream did not start within 10 s"
    log "upstream (pid $UPSTREAM_PID) on 127.0.0.1 ports ${T_UP[*]}"
}

# wait_http URL WHAT PID: bounded wait until URL answers any HTTP status.
wait_http() {
    local url=$1 what=$2 pid=$3 i code
    for ((i = 0; i < 100; i++)); do
        alive "$pid" || { show_log "${T_LOG[$what]:-}"; die "$what exited during start-up"; }
        code=$(curl -s -o /dev/null -m 1 -w '%{http_code}' "$url" 2>/dev/null || true)
        [[ $code =~ ^[1-5][0-9][0-9]$ ]] && return 0
        sleep 0.2
    done
    die "$what did not answer on $url within 20 s"
}

setup_target_direct() {
    T_URL[direct]=http://127.0.0.1:${T_UP[direct]}/v1/chat/completions
    T_PID[direct]=""
    T_HDRS[direct]="Authorization: Bearer $API_KEY"
    T_LOG[direct]=$WORK/upstream.log
}

setup_target_keyway() {
    local listen metrics admin dir=$WORK/keyway pid i
    [[ -x $KEYWAY_BIN ]] || die "KEYWAY_BIN=$KEYWAY_BIN is not an executable (build it with cargo build --profile dist)"
    free_port listen
    free_port metrics
    free_port admin
    mkdir -p "$dir"
    render "$S/keyway.toml.in" "$dir/keyway.toml" LISTEN_PORT="$listen" METRICS_PORT="$metrics" \
        UPSTREAM_PORT="${T_UP[keyway]}" API_KEY="$API_KEY"
    "$KEYWAY_BIN" --check-config --config "$dir/keyway.toml" >"$dir/check.log" 2>&1 ||
        { show_log "$dir/check.log"; die "keyway rejected $dir/keyway.toml"; }
    # shellcheck disable=SC2086 # PROXY_ENV is a list of NAME=VALUE words
    env $PROXY_ENV RUST_LOG=$KEYWAY_RUST_LOG KEYWAY_DATA_DIR=$dir/data "$KEYWAY_BIN" --config "$dir/keyway.toml" \
        --threads 1 --listen "127.0.0.1:$listen" --metrics-listen "127.0.0.1:$metrics" \
        --admin-listen "127.0.0.1:$admin" </dev/null >"$dir/keyway.log" 2>&1 &
    pid=$!
    track "$pid" INT # SIGINT: Pingora's fast shutdown (SIGTERM drains for the grace period)
    T_LOG[keyway]=$dir/keyway.log
    for ((i = 0; i < 150; i++)); do
        alive "$pid" || { show_log "$dir/keyway.log"; die "keyway exited during start-up"; }
        curl -fs -m 1 -o /dev/null "http://127.0.0.1:$metrics/readyz" 2>/dev/null && break
        sleep 0.2
    done
    ((i < 150)) || { show_log "$dir/keyway.log"; die "keyway not ready (/readyz) within 30 s"; }
    T_URL[keyway]=http://127.0.0.1:$listen/v1/chat/completions
    T_PID[keyway]=$pid
    T_HDRS[keyway]="x-portkey-provider: openai"
    log "keyway on 127.0.0.1:$listen (pid $pid)"
}

setup_target_bare() {
    local listen dir=$WORK/bare pid
    [[ -x $BARE_BIN ]] || die "BARE_BIN=$BARE_BIN is not an executable (cargo build --profile dist --example bare-pingora)"
    free_port listen
    mkdir -p "$dir"
    # shellcheck disable=SC2086
    env $PROXY_ENV "$BARE_BIN" --listen "127.0.0.1:$listen" --upstream "127.0.0.1:${T_UP[bare]}" \
        --header "authorization: Bearer $API_KEY" --threads 1 </dev/null >"$dir/bare.log" 2>&1 &
    pid=$!
    track "$pid" INT
    T_LOG[bare]=$dir/bare.log
    wait_http "http://127.0.0.1:$listen/" bare "$pid"
    T_URL[bare]=http://127.0.0.1:$listen/v1/chat/completions
    T_PID[bare]=$pid
    T_HDRS[bare]=""
    log "bare Pingora on 127.0.0.1:$listen (pid $pid)"
}

# worker_connections above the descriptor limit, so the limit bounds the streams held, as for
# keyway and bare Pingora: nginx starts closing connections that wait for a request ("N
# worker_connections are not enough, reusing connections") once fewer than 1/16 of its
# connection slots are free, i.e. hundreds of streams short of worker_connections.
setup_target_nginx() {
    local port prefix=$WORK/nginx master i stat rest f pid worker=""
    [[ -n $NGINX_BIN ]] || NGINX_BIN=$(command -v nginx || echo /usr/sbin/nginx)
    [[ -x $NGINX_BIN ]] || die "no nginx (apt-get install nginx-light)"
    free_port port
    mkdir -p "$prefix"
    render "$S/nginx-proxy.conf.in" "$prefix/nginx.conf" PREFIX="$prefix" PORT="$port" \
        API_KEY="$API_KEY" UPSTREAM_PORT="${T_UP[nginx]}" NOFILE="$(ulimit -n)" \
        WORKER_CONNECTIONS="$(($(ulimit -n) * 16 / 15 + 64))"
    T_LOG[nginx]=$prefix/error.log
    "$NGINX_BIN" -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/error.log" \
        </dev/null >"$prefix/stdout.log" 2>&1 &
    master=$!
    track "$master" TERM
    wait_http "http://127.0.0.1:$port/" nginx "$master"
    for ((i = 0; i < 50; i++)); do
        for stat in /proc/[0-9]*/stat; do
            pid=${stat#/proc/} pid=${pid%/stat}
            { read -r rest <"$stat"; } 2>/dev/null || continue
            rest=${rest##*) }
            read -ra f <<<"$rest"
            [[ ${f[1]} == "$master" ]] && worker=$pid && break
        done
        [[ -z $worker ]] || break
        sleep 0.1
    done
    [[ -n $worker ]] || { show_log "$prefix/error.log"; die "no worker process under nginx ($master)"; }
    track "$worker" TERM
    T_URL[nginx]=http://127.0.0.1:$port/v1/chat/completions
    T_PID[nginx]=$worker
    T_HDRS[nginx]=""
    log "nginx on 127.0.0.1:$port (master $master, worker $worker)"
}

# hdr_args NAME: fills HDR_ARGS with --header options for the client (or -H for curl: $2).
hdr_args() {
    local h flag=${2:---header}
    HDR_ARGS=()
    while IFS= read -r h; do
        if [[ -n $h ]]; then HDR_ARGS+=("$flag" "$h"); fi
    done <<<"${T_HDRS[$1]}"
}

# One short stream per target before measuring: the whole chain must deliver the upstream's
# events and [DONE], or the numbers would measure error paths.
smoke_test() {
    local t=$1 body=$WORK/smoke.$1 code
    hdr_args "$t" -H
    code=$(curl -sN -m 10 -o "$body" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
        -H 'x-lt-events: 3' -H 'x-lt-interval-ms: 20' "${HDR_ARGS[@]}" \
        --data '{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}' \
        "${T_URL[$t]}" || true)
    if [[ $code != 200 ]] || [[ $(grep -c '^data: {' "$body") != 3 ]] || ! grep -q '^data: \[DONE\]' "$body"; then
        log "smoke test for $t: HTTP $code, body: $(head -c 400 "$body" 2>/dev/null)"
        show_log "${T_LOG[$t]:-}"
        die "target $t does not pass the upstream's stream through"
    fi
}

# --- the descriptor limit ---------------------------------------------------------------------

# Raise the open-file limit as far as allowed; a proxy holds two descriptors per stream (client
# and upstream side) plus its own, so lower HOLD_STREAMS to what every proxy can hold.
raise_nofile() {
    ulimit -n "$NOFILE" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    log "open-file limit: $(ulimit -n) (asked for $NOFILE; hard limit $(ulimit -Hn))"
}

fit_streams() {
    local t pid most=0 n fit
    for t in $TARGETS; do
        pid=${T_PID[$t]}
        [[ -n $pid ]] || continue
        n=$(fd_count "$pid")
        ((n > most)) && most=$n
    done
    # 16 spare descriptors for what a proxy opens on its own while running (logs, pools, ...)
    fit=$((($(ulimit -n) - most - 16) / 2))
    HOLD_STREAMS=$STREAMS
    if ((STREAMS > fit)); then
        HOLD_STREAMS=$fit
        log "WARNING: $STREAMS streams need $((2 * STREAMS + most + 16)) descriptors in one proxy; the limit is $(ulimit -n) (no CAP_SYS_RESOURCE to raise it). Holding $HOLD_STREAMS streams instead."
    fi
    FD_IDLE_MAX=$most
}

# --- hold --------------------------------------------------------------------------------------

# sampler PID FILE: VmRSS every 0.25 s while PID and the client live; bounded by the run length.
sampler() {
    local pid=$1 file=$2 client=$3 i max=$(((HOLD_S + RAMP_S + 120) * 4))
    for ((i = 0; i < max; i++)); do
        alive "$client" || break
        echo "$(rss_kib "$pid")" >>"$file"
        sleep 0.25
    done
}

# snapshot PID DIR: where the memory is at the peak: smaps_rollup, the largest mappings, fds,
# threads, and the kernel's TCP memory (socket buffers are not in a process's RSS).
snapshot() {
    local pid=$1 dir=$2
    mkdir -p "$dir"
    cp "/proc/$pid/smaps_rollup" "$dir/smaps_rollup" 2>/dev/null || true
    awk '/^[0-9a-f]+-[0-9a-f]+ / { name = ($6 == "" ? "[anon]" : $6); range = $1 }
         /^Rss:/ { if ($2 > 0) printf "%d %s %s\n", $2, name, range }' "/proc/$pid/smaps" 2>/dev/null |
        sort -rn | head -n 12 >"$dir/top-mappings" || true
    awk '/^[0-9a-f]+-[0-9a-f]+ / { name = ($6 == "" ? "[anon]" : $6) }
         /^Rss:/ { s[name] += $2 } END { for (n in s) printf "%d %s\n", s[n], n }' "/proc/$pid/smaps" 2>/dev/null |
        sort -rn | head -n 8 >"$dir/by-name" || true
    fd_count "$pid" >"$dir/fds"
    awk '/^Threads:/ { print $2 }' "/proc/$pid/status" >"$dir/threads" 2>/dev/null || true
    grep '^TCP:' /proc/net/sockstat >"$dir/sockstat" 2>/dev/null || true
}

hold_target() {
    local t=$1 pid=${T_PID[$1]} dir=$WORK/hold/$1 t0 cpu0=0 cpu_a=0 cpu_b=0 cpu1=0 client spid
    local rss_idle=0 rss_end=0 rss_after=0 rss_peak=0 win_a win_b win_s
    mkdir -p "$dir"
    hdr_args "$t"
    if [[ -n $pid ]]; then
        rss_idle=$(rss_kib "$pid")
        cpu0=$(cpu_ticks "$pid")
    fi
    log "hold $t: $HOLD_STREAMS streams ramped over ${RAMP_S} s, ${HOLD_S} s each, $CLIENT_PROCS client processes"
    t0=$(now)
    python3 "$S/client.py" hold --url "${T_URL[$t]}" "${HDR_ARGS[@]}" --streams "$HOLD_STREAMS" \
        --ramp-s "$RAMP_S" --procs "$CLIENT_PROCS" --events "$((HOLD_S * 1000 / EVENT_MS))" \
        --interval-ms "$EVENT_MS" --timeout-s 60 >"$dir/client.json" 2>"$dir/client.log" &
    client=$!
    BG_PIDS+=("$client")
    if [[ -n $pid ]]; then
        sampler "$pid" "$dir/rss" "$client" &
        spid=$!
        BG_PIDS+=("$spid")
        # Every stream is open from RAMP_S (the last start) to HOLD_S - EVENT_MS (the first end);
        # measure CPU inside that window, a second in from each edge. The client starts 0.5 s late.
        win_a=$(awk -v t="$t0" -v r="$RAMP_S" 'BEGIN { printf "%.3f", t + 0.5 + r + 1 }')
        win_b=$(awk -v t="$t0" -v h="$HOLD_S" -v e="$EVENT_MS" 'BEGIN { printf "%.3f", t + 0.5 + h - e / 1000 - 1 }')
        sleep_until "$win_a"
        cpu_a=$(cpu_ticks "$pid")
        win_s=$(now)
        sleep_until "$(awk -v a="$win_a" -v b="$win_b" 'BEGIN { printf "%.3f", (a + b) / 2 }')"
        snapshot "$pid" "$dir/peak"
        sleep_until "$win_b"
        cpu_b=$(cpu_ticks "$pid")
        win_s=$(awk -v a="$win_s" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }')
    fi
    wait "$client" || { cat "$dir/client.log" >&2; die "the hold client failed for $t"; }
    if [[ -n $pid ]]; then
        alive "$pid" || { show_log "${T_LOG[$t]}"; die "$t died during the hold"; }
        cpu1=$(cpu_ticks "$pid")
        rss_end=$(rss_kib "$pid")
        sleep "$SETTLE_S"
        rss_after=$(rss_kib "$pid")
        wait "$spid" 2>/dev/null || true
        rss_peak=$(sort -n "$dir/rss" | tail -n 1)
    fi
    jq -c --arg t "$t" --argjson pid "${pid:-null}" --argjson hz "$CLK_TCK" \
        --argjson idle "$rss_idle" --argjson peak "${rss_peak:-0}" --argjson rend "$rss_end" \
        --argjson after "$rss_after" --argjson c0 "$cpu0" --argjson ca "$cpu_a" --argjson cb "$cpu_b" \
        --argjson c1 "$cpu1" --argjson win "${win_s:-0}" --argjson streams "$HOLD_STREAMS" \
        --arg fds "$(cat "$dir/peak/fds" 2>/dev/null || echo)" \
        --arg threads "$(cat "$dir/peak/threads" 2>/dev/null || echo)" \
        --arg rollup "$(grep -E '^(Rss|Anonymous|Private_Dirty|Shared_Clean|Private_Clean):' "$dir/peak/smaps_rollup" 2>/dev/null || true)" \
        --arg top "$(cat "$dir/peak/top-mappings" 2>/dev/null || true)" \
        --arg byname "$(cat "$dir/peak/by-name" 2>/dev/null || true)" \
        --arg sockstat "$(cat "$dir/peak/sockstat" 2>/dev/null || true)" \
        '{target: $t, streams: $streams, client: ., proxy: (if $pid == null then null else {
            rss_idle_kib: $idle, rss_peak_kib: $peak, rss_end_kib: $rend, rss_after_kib: $after,
            cpu_total_s: (($c1 - $c0) / $hz), cpu_window_s: (($cb - $ca) / $hz), window_s: $win,
            fds_at_peak: $fds, threads: $threads, smaps_rollup: $rollup, top_mappings: $top,
            by_name: $byname, sockstat: $sockstat} end)}' "$dir/client.json" >>"$WORK/hold.jsonl"
    log "hold $t: $(jq -c '{ok, events, expected_events, statuses, errors, lag_ms, cpu_s, peak_open}' "$dir/client.json")"
    [[ -z $pid ]] || log "hold $t: RSS idle $rss_idle KiB, peak $rss_peak KiB, after $rss_after KiB; CPU in the window $(((cpu_b - cpu_a))) ticks over ${win_s} s"
}

# Let TIME_WAIT and the upstream's timers of one run drain before the next target starts.
pause_between() { sleep "$SETTLE_S"; }

# --- ttfb --------------------------------------------------------------------------------------

ttfb_target() {
    local t=$1 r=$2 pid=${T_PID[$1]} c0=0 c1=0 dir=$WORK/ttfb
    mkdir -p "$dir"
    hdr_args "$t"
    [[ -z $pid ]] || c0=$(cpu_ticks "$pid")
    python3 "$S/client.py" ttfb --url "${T_URL[$t]}" "${HDR_ARGS[@]}" --rate "$TTFB_RATE" \
        --duration-s "$TTFB_DURATION" --warmup-s "$TTFB_WARMUP" --events "$TTFB_EVENTS" \
        --interval-ms "$TTFB_INTERVAL_MS" --timeout-s 10 >"$dir/$t.$r.json" 2>"$dir/$t.$r.log" ||
        { cat "$dir/$t.$r.log" >&2; die "the ttfb client failed for $t"; }
    if [[ -n $pid ]]; then
        alive "$pid" || { show_log "${T_LOG[$t]}"; die "$t died"; }
        c1=$(cpu_ticks "$pid")
    fi
    jq -c --arg t "$t" --argjson r "$r" --argjson cpu "$(((c1 - c0)))" --argjson hz "$CLK_TCK" \
        --argjson dur "$((TTFB_DURATION + TTFB_WARMUP))" --argjson charged "$([[ -n $pid ]] && echo true || echo false)" \
        '{target: $t, round: $r, client: ., proxy_cpu_pct: (if $charged then 100 * $cpu / $hz / $dur else null end)}' \
        "$dir/$t.$r.json" >>"$WORK/ttfb.jsonl"
    log "ttfb round $r $t: $(jq -c '{rate, ok, ttfb_ms: .ttfb_ms.p50, p99: .ttfb_ms.p99, first_event_p50: .first_event_ms.p50, errors, new_connections}' "$dir/$t.$r.json")"
}

# --- main --------------------------------------------------------------------------------------

main() {
    local t r p run_hold="" run_ttfb="" missing=()
    for p in $PHASES; do
        case $p in
            hold) run_hold=1 ;;
            ttfb) run_ttfb=1 ;;
            *) die "unknown phase '$p' in PHASES (known: hold ttfb)" ;;
        esac
    done
    [[ -n $run_hold$run_ttfb ]] || die "PHASES is empty"
    require_uint STREAMS 1
    require_uint HOLD_S 3
    require_uint RAMP_S 0
    require_uint EVENT_MS 10
    require_uint CLIENT_PROCS 1
    require_uint SETTLE_S 0
    require_uint TTFB_ROUNDS 1
    require_uint TTFB_DURATION 1
    require_uint TTFB_WARMUP 0
    require_uint TTFB_EVENTS 1
    require_uint TTFB_INTERVAL_MS 0
    [[ $TTFB_RATE =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "TTFB_RATE must be a number (got '$TTFB_RATE')"
    ((HOLD_S * 1000 >= (RAMP_S + 3) * 1000 + EVENT_MS)) ||
        die "HOLD_S must exceed RAMP_S by at least 3 s plus one event, or no stream-holding window is left to measure"
    for t in $TARGETS; do
        declare -F "setup_target_$t" >/dev/null || die "unknown target '$t' (known: direct keyway bare nginx)"
    done
    for p in python3 curl jq ss; do command -v "$p" >/dev/null || missing+=("$p"); done
    ((${#missing[@]} == 0)) || die "missing: ${missing[*]}"
    CLK_TCK=$(getconf CLK_TCK)

    trap cleanup EXIT
    trap 'log "interrupted; stopping everything"; exit 130' INT
    trap 'log "terminated; stopping everything"; exit 143' TERM
    raise_nofile
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/keyway-streams.XXXXXX")
    : >"$WORK/hold.jsonl"
    : >"$WORK/ttfb.jsonl"

    LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
    start_upstream
    for t in $TARGETS; do "setup_target_$t"; done
    for t in $TARGETS; do smoke_test "$t"; done
    sleep 1 # let start-up allocations settle before idle samples
    fit_streams

    if [[ -n $run_hold ]]; then
        for t in $TARGETS; do
            hold_target "$t"
            pause_between
        done
    fi
    if [[ -n $run_ttfb ]]; then
        for ((r = 1; r <= TTFB_ROUNDS; r++)); do
            for t in $TARGETS; do ttfb_target "$t" "$r"; done
        done
    fi

    mkdir -p "$(dirname "$OUT")"
    kill -USR1 "$UPSTREAM_PID" 2>/dev/null && sleep 0.3
    jq -n --arg date "$(date -u '+%Y-%m-%d %H:%M:%S UTC')" --arg host "$(nproc) CPUs, kernel $(uname -r), $(uname -m)" \
        --arg nginx "$("${NGINX_BIN:-nginx}" -v 2>&1 | sed 's/^nginx version: //' || true)" \
        --arg python "$(python3 --version 2>&1)" --arg keyway "$KEYWAY_BIN" \
        --arg keyway_built "$(date -u -r "$KEYWAY_BIN" '+%Y-%m-%d %H:%M UTC' 2>/dev/null || echo -)" \
        --arg bare "$BARE_BIN" --arg bare_built "$(date -u -r "$BARE_BIN" '+%Y-%m-%d %H:%M UTC' 2>/dev/null || echo -)" \
        --arg rev "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo none)" \
        --arg targets "$TARGETS" --arg phases "$PHASES" --argjson streams "$STREAMS" \
        --argjson hold_streams "$HOLD_STREAMS" --argjson hold_s "$HOLD_S" --argjson ramp_s "$RAMP_S" \
        --argjson event_ms "$EVENT_MS" --argjson settle_s "$SETTLE_S" --argjson procs "$CLIENT_PROCS" --arg nofile "$(ulimit -n)" \
        --argjson fd_idle "${FD_IDLE_MAX:-0}" --argjson rate "$TTFB_RATE" --argjson rounds "$TTFB_ROUNDS" \
        --argjson dur "$TTFB_DURATION" --argjson warm "$TTFB_WARMUP" --argjson tev "$TTFB_EVENTS" \
        --argjson tint "$TTFB_INTERVAL_MS" --arg rust_log "$KEYWAY_RUST_LOG" \
        --arg load_start "$LOAD_START" --arg load_end "$(cut -d' ' -f1-3 /proc/loadavg)" \
        --arg proxy_env "$PROXY_ENV" --arg busy "$(pgrep -c -x rustc || true)" \
        --arg upstream "$(tail -n 1 "$WORK/upstream.log" 2>/dev/null || true)" \
        '$ARGS.named' >"$WORK/meta.json"
    python3 "$S/report.py" "$WORK" >"$OUT"
    cat "$OUT"
    log "results written to $OUT"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    main "$@"
fi
