#!/usr/bin/env bash
# keyway load test: compares the same small chat-completion POST sent
#   direct  - straight to a fixed nginx upstream,
#   keyway  - through keyway (1 proxy thread),
#   nginx   - through a one-worker nginx reverse proxy that injects the key,
# in interleaved rounds (A B C, B C A, C A B, ...: see ORDER). Two phases:
#   throughput - wrk flat out: medians of req/s, p50/p99 latency, requests
#                per proxy-CPU-second, plus keyway's RSS;
#   latency    - a fixed offered load well below saturation (chat_paced.lua:
#                each connection waits a think time before every request):
#                medians of achieved req/s, p50/p90/p99, and the p99 the
#                proxy adds over the direct run of the same round. Flat out,
#                wrk, the upstream and the proxy fight over the same cores,
#                so p99 there is mostly queueing, not the proxy's own cost.
#
# Usage: loadtest/run.sh            (from anywhere; needs nginx, wrk, curl)
# Env:   PHASES="throughput latency" (either or both; always run in that order)
#        ROUNDS=3 DURATION=10        (throughput phase)
#        LAT_ROUNDS=3 LAT_DURATION=10 PACE_MS=10 (latency phase; PACE_MS is
#                                     the mean think time per request)
#        CONNECTIONS=32 WARMUP=1
#        TARGETS="direct keyway keyway_gwkey keyway_gwkey_api keyway_jwt keyway_key keyway_entra
#                 keyway_secret nginx"   (the default; order = order within a round)
#          keyway:       Portkey headers, static key from the config
#          keyway_gwkey: enforced posture, gateway API key + virtual key declared in the file
#          keyway_gwkey_api: the same requests, the virtual key created over the admin API
#                        (POST /v1/virtual-keys with an organisation owner key) once keyway is
#                        ready, so it lives in the SQLite store under KEYWAY_DATA_DIR
#          keyway_jwt:   enforced posture, RS256 JWT against a cached JWKS + virtual key
#          keyway_key:   an Azure front-door route, static api-key
#          keyway_entra: the same route, Entra token from a fake Entra (nginx) via the token cache
#          keyway_secret: the same route, api-key from a fake Vault (nginx) via the secret cache
#          keyway_cfg_single: Portkey headers, the upstream as one inline x-portkey-config
#                        target (provider, api_key, custom_host) instead of a [providers] table
#          keyway_cfg_fallback: that target first in a fallback config, a second target (the same
#                        upstream) behind it; the first always answers 200, so this is the cost of
#                        the strategy itself (goal: >= 0.95x keyway_cfg_single's req/s). Not in the
#                        default: TARGETS="keyway_cfg_single keyway_cfg_fallback"
#          bare, bare_key: a bare Pingora proxy (loadtest/bare_pingora.rs, built with keyway's
#                        own Pingora) that sends every request to the upstream with one header
#                        inserted: Authorization (bare, the path of `keyway`) or api-key
#                        (bare_key, the route path of `keyway_key`). keyway / bare is keyway's
#                        own cost over Pingora's.
#          keyway_tls, nginx_tls: `keyway` and `nginx` with wrk over TLS (HTTP/1.1; one P-256
#                        certificate made with the openssl CLI for the run, served by both). Not
#                        in the default: TARGETS="keyway_tls nginx_tls"
#          keyway_h2, nginx_h2: the same two over HTTP/2 (ALPN h2), driven by h2load (nghttp2) with
#                        H2_STREAMS (default 10) concurrent streams on each of the CONNECTIONS
#                        connections; latencies from h2load's per-request log. Throughput
#                        phase, SHAPE json/sse/download only. Not in the default:
#                        TARGETS="keyway_h2 nginx_h2"
#          base, base_key: `keyway` and `keyway_key` run by BASELINE_BIN (another build, e.g. the
#                        previous commit), for an A/B of two builds in the same rounds
#        ORDER=rotate    round R starts at the R-th target (A B C, B C A, ...), so places in the
#                        round even out over rounds; ORDER=fixed: TARGETS' order every round
#        PAIRED=1        throughput phase only: TARGETS taken two by two ("bare keyway bare_key
#                        keyway_key"), each pair driven at the same moment by two wrk runs of
#                        CONNECTIONS connections each, so both proxies meet the same contention
#                        from the rest of the machine; their requests per CPU-second compare
#                        within the pair. RSS under load is read once after each run; no perf
#                        profiles in this mode
#        PIN=1           the proxies on CPU 1 (every thread of each, from its start), wrk, the
#                        upstream nginx, perf and this script on CPU 0 (taskset): each proxy
#                        has a core to itself, so its CPU per request moves less with wrk's and
#                        the upstream's scheduling; the two-core split is PIN="0 1" (rest, proxy)
#        START_TRIES=150 how long (x 0.2 s) a proxy may take to answer after it starts
#        SHAPE=json      what every request and answer looks like:
#          json     - the ~160-byte chat POST, a ~330-byte JSON answer (default)
#          sse      - the same POST, answered as OpenAI's stream: text/event-stream, 9 events
#          upload   - a 1 MiB chat POST (images, audio, long prompts), the JSON answer
#          download - the small POST, a 1 MiB JSON answer
#        PROFILE=1       also sample every keyway and bare target with `perf record` during
#                        the last throughput round, and report where each pair's time per
#                        request goes, symbol by symbol (keyway minus bare, in µs per request;
#                        with base targets, keyway minus base too: where a build's time went)
#        PERF_ARGS="-F 1999"  perf record's sampling options (e.g. add --call-graph=dwarf)
#        PERF_KEEP=DIR   copy every perf.<target>.data there, for `perf report -i` afterwards
#        BARE_BIN=...    (default <target dir>/dist/examples/bare-pingora, built with keyway)
#        KEYWAY_BIN=...  (default ${CARGO_TARGET_DIR:-~/.cache/keyway/target}/dist/keyway,
#                         rebuilt with `cargo build --profile dist` unless NO_BUILD=1)
#        BASELINE_BIN=... (the binary of the base targets; may be KEYWAY_BIN itself)
#        KEYWAY_TOML=..., BASELINE_TOML=... TOML appended to the config of every keyway target
#                        (BASELINE_TOML: of the base targets): an A/B of settings, e.g.
#                        KEYWAY_TOML=$'[listener]\nread_buffer_bytes = 0'
#        KEYWAY_RUST_LOG=warn  OUT=loadtest/results/latest.md  NGINX_BIN=nginx
#
# Adding a keyway variant (e.g. gateway key, JWT): write a config template
# next to keyway.toml.in, add a `setup_target_<name>` function that calls
# `start_keyway <name> <template> <path> [wrk header...]`, and put <name> in TARGETS.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")

PHASES=${PHASES:-"throughput latency"}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
LAT_ROUNDS=${LAT_ROUNDS:-3}
LAT_DURATION=${LAT_DURATION:-10}
PACE_MS=${PACE_MS:-10}
CONNECTIONS=${CONNECTIONS:-32}
WARMUP=${WARMUP:-1}
TARGETS=${TARGETS:-"direct keyway keyway_gwkey keyway_gwkey_api keyway_jwt keyway_key keyway_entra keyway_secret nginx"}
OUT=${OUT:-$HERE/results/latest.md}
SHAPE=${SHAPE:-json}
PROFILE=${PROFILE:-}
ORDER=${ORDER:-rotate}
PAIRED=${PAIRED:-}
PIN=${PIN:-}
LAUNCH=()       # a command the proxies run under (loadtest/instructions.sh: valgrind)
START_TRIES=${START_TRIES:-150} # 0.2 s apart: how long a proxy may take to start
PIN_REST="" PIN_PROXY="" # CPUs for everything else and for the proxies (PIN)
PERF_ARGS=${PERF_ARGS:-"-F 1999"}
PERF_KEEP=${PERF_KEEP:-}
PERF_PID=""                # the perf record of the current round
SHAPE_HDR=""               # the header that selects the upstream's answer (sse, download)
SMOKE_MATCH='"chat.completion"' # what a proxied answer must contain
KEYWAY_RUST_LOG=${KEYWAY_RUST_LOG:-warn}
NGINX_BIN=${NGINX_BIN:-}
API_KEY=sk-loadtest
GATEWAY_KEY=kw-loadtest-gateway-key
OWNER_KEY=kw-loadtest-owner-key # an organisation owner: admin API only
LUA=$HERE/chat.lua # the flat-out script; SHAPE=upload's is chat_upload.lua
BODY_LUA=$LUA      # the request's script, also loaded by chat_paced.lua
LUA_PACED=$HERE/chat_paced.lua
RUN_THROUGHPUT="" # non-empty when PHASES has throughput
RUN_LATENCY=""    # non-empty when PHASES has latency

# Target registry, filled by the setup_target_* functions.
declare -A T_LABEL=()  # name -> row label
declare -A T_KIND=()   # name -> direct | proxy | keyway
declare -A T_URL=()    # name -> URL wrk hits
declare -A T_PID=()    # name -> pid whose CPU is charged to the target (empty: none)
declare -A T_HDRS=()   # name -> extra request headers, one per line
declare -A T_LOG=()    # name -> log file to show when something fails
declare -A T_ADMIN=()  # keyway target -> its admin API base URL
declare -A RSS_IDLE=() # keyway target -> idle VmRSS (KiB)
declare -A RSS_MAX=()  # keyway target -> max VmRSS seen under load (KiB)

declare -A T_BIN=()    # keyway target -> binary, when not KEYWAY_BIN
declare -A T_TOML=()   # keyway target -> TOML appended to its config (e.g. its [tls])
declare -A T_CLIENT=() # name -> h2load when driven over HTTP/2 (default: wrk)
H2_STREAMS=${H2_STREAMS:-10}

STOP_LIST=()   # "pid:signal" for every process we started, in start order
USED_PORTS=" "
SAMPLER_PID="" # background RSS sampler of the current keyway round
WRK_PID=""     # the wrk (under timeout) currently running
WORK=""
UPSTREAM_PORT=""

LOG_PREFIX=loadtest
# shellcheck source=lib.sh
. "$HERE/lib.sh"

# --- process bookkeeping -----------------------------------------------------

# The targets in round R's order. ORDER=rotate (the default) starts round R one target further
# along (A B C, B C A, C A B, ...), so no target always runs right after the same one: with a
# fixed order, the same two builds differed by up to 5% with the order swapped.
round_order() {
    local r=$1 i n
    local -a list
    read -r -a list <<<"$TARGETS"
    n=${#list[@]}
    if [[ $ORDER == fixed ]]; then
        echo "${list[*]}"
        return
    fi
    for ((i = 0; i < n; i++)); do printf '%s ' "${list[(r - 1 + i) % n]}"; done
}

# Stop everything we started (the current wrk, sampler and perf first).
cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in $WRK_PID $SAMPLER_PID $PERF_PID; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    stop_tracked
    remove_work "$rc"
    exit "$rc"
}

# wait_http URL WHAT PID: bounded wait until URL answers any HTTP status.
wait_http() {
    local url=$1 what=$2 pid=$3 i code
    for ((i = 0; i < START_TRIES; i++)); do
        alive "$pid" || die "$what exited during start-up"
        code=$(curl -s -o /dev/null -m 1 -w '%{http_code}' "$url" 2>/dev/null || true)
        [[ $code =~ ^[1-5][0-9][0-9]$ ]] && return 0
        sleep 0.2
    done
    die "$what did not answer on $url within $((START_TRIES / 5)) s"
}

# --- components --------------------------------------------------------------

# start_nginx NAME TEMPLATE PORT [KEY=VALUE...]: run one nginx (master + one
# worker) in its own prefix; sets NGINX_WORKER_PID, the process doing the work.
start_nginx() {
    local name=$1 tmpl=$2 port=$3 prefix master i pid ppid stat rest f
    shift 3
    prefix=$WORK/$name
    mkdir -p "$prefix"
    render "$tmpl" "$prefix/nginx.conf" PREFIX="$prefix" PORT="$port" API_KEY="$API_KEY" \
        WORKER_CONNECTIONS=$((CONNECTIONS * 4 > 1024 ? CONNECTIONS * 4 : 1024)) "$@"
    # -e: the start-up error log, before the config's error_log takes over.
    "$NGINX_BIN" -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/error.log" \
        </dev/null >"$prefix/stdout.log" 2>&1 &
    master=$!
    track "$master" TERM
    wait_http "http://127.0.0.1:$port/" "nginx $name" "$master"
    NGINX_WORKER_PID=""
    for ((i = 0; i < 50; i++)); do
        for stat in /proc/[0-9]*/stat; do
            pid=${stat#/proc/} pid=${pid%/stat}
            { read -r rest <"$stat"; } 2>/dev/null || continue
            rest=${rest##*) }
            read -ra f <<<"$rest"
            ppid=${f[1]}
            [[ $ppid == "$master" ]] && NGINX_WORKER_PID=$pid && break
        done
        [[ -z $NGINX_WORKER_PID ]] || break
        sleep 0.1
    done
    [[ -n $NGINX_WORKER_PID ]] || { show_log "$prefix/error.log"; die "no worker process under nginx $name ($master)"; }
    # If the master dies before the worker, the worker must still go.
    track "$NGINX_WORKER_PID" TERM
    T_LOG[$name]=$prefix/error.log
    log "nginx $name on 127.0.0.1:$port (master $master, worker $NGINX_WORKER_PID)"
}

start_upstream() {
    [[ -z $UPSTREAM_PORT ]] || return 0
    free_port UPSTREAM_PORT
    "$HERE/make-jwt.sh" "$WORK"
    mkdir -p "$WORK/upstream"
    # SHAPE=download's answer: a chat completion whose content is 1 MiB of text.
    awk 'BEGIN { s = "abcdefghijklmnopqrstuvwxyz012345"; while (length(s) < 1048576) s = s s
        printf "{\"id\":\"chatcmpl-loadtest\",\"object\":\"chat.completion\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"%s\"},\"finish_reason\":\"stop\"}]}", s }' \
        >"$WORK/upstream/download.json"
    # nginx's worker (an unprivileged user when started as root) reads the file itself.
    chmod 755 "$WORK" "$WORK/upstream"
    chmod 644 "$WORK/upstream/download.json"
    start_nginx upstream "$HERE/nginx-upstream.conf.in" "$UPSTREAM_PORT" JWKS_JSON="$(<"$WORK/jwks.json")"
}

# Locate (or build) the keyway binary once, only if a keyway target is used.
keyway_bin() {
    [[ -z ${KEYWAY_RESOLVED:-} ]] || return 0
    local target_dir=${CARGO_TARGET_DIR:-$HOME/.cache/keyway/target}
    if [[ -n ${KEYWAY_BIN:-} ]]; then
        [[ -x $KEYWAY_BIN ]] || die "KEYWAY_BIN=$KEYWAY_BIN is not an executable"
    else
        # The production build: the `dist` profile (fat LTO, one codegen unit).
        KEYWAY_BIN=$target_dir/dist/keyway
        if [[ -z ${NO_BUILD:-} ]]; then
            command -v cargo >/dev/null || die "no cargo to build keyway (or set KEYWAY_BIN)"
            log "building keyway (--profile dist) into $target_dir"
            # Two builds: an example is built with the dev-dependencies' features, which must
            # not leak into the binary measured.
            (cd "$ROOT" && export CARGO_TARGET_DIR=$target_dir OPENSSL_NO_VENDOR=1 &&
                cargo build --profile dist --locked --bin keyway &&
                cargo build --profile dist --locked --example bare-pingora) >&2
        fi
        [[ -x $KEYWAY_BIN ]] || die "$KEYWAY_BIN is missing (NO_BUILD set, or the build failed)"
    fi
    BARE_BIN=${BARE_BIN:-$(dirname "$KEYWAY_BIN")/examples/bare-pingora}
    KEYWAY_RESOLVED=1
}

# sha256_hash KEY: a gateway key's hash as the config wants it.
sha256_hash() { printf 'sha256:%s' "$(printf '%s' "$1" | sha256sum | cut -d' ' -f1)"; }

# start_keyway NAME TEMPLATE PATH [HEADER...]: render TEMPLATE (placeholders
# LISTEN_PORT, METRICS_PORT, UPSTREAM_PORT, API_KEY, GATEWAY_KEY_HASH,
# OWNER_KEY_HASH), start keyway with one proxy thread and its admin API on a
# port of its own (T_ADMIN[NAME]), wait for /readyz (configured credentials
# hold their tokens) and register it as target NAME, driven at PATH; the
# HEADERs are sent by wrk with every request.
start_keyway() {
    local name=$1 tmpl=$2 path=$3 listen metrics admin dir cfg pid i hdr
    shift 3
    keyway_bin
    start_upstream
    free_port listen
    free_port metrics
    free_port admin
    dir=$WORK/$name
    mkdir -p "$dir"
    cfg=$dir/keyway.toml
    render "$tmpl" "$cfg" LISTEN_PORT="$listen" METRICS_PORT="$metrics" \
        UPSTREAM_PORT="$UPSTREAM_PORT" API_KEY="$API_KEY" GATEWAY_KEY_HASH="$(sha256_hash "$GATEWAY_KEY")" \
        OWNER_KEY_HASH="$(sha256_hash "$OWNER_KEY")"
    local bin=${T_BIN[$name]:-$KEYWAY_BIN}
    # Extra TOML for an A/B of settings: BASELINE_TOML for the base targets, KEYWAY_TOML for
    # the others.
    if [[ -n ${T_BIN[$name]:-} ]]; then
        printf '\n%s\n' "${BASELINE_TOML:-}" >>"$cfg"
    else
        printf '\n%s\n' "${KEYWAY_TOML:-}" >>"$cfg"
    fi
    printf '\n%s\n' "${T_TOML[$name]:-}" >>"$cfg"
    "$bin" --check-config --config "$cfg" >"$dir/check.log" 2>&1 ||
        { show_log "$dir/check.log"; die "keyway rejected $cfg"; }
    RUST_LOG=$KEYWAY_RUST_LOG KEYWAY_DATA_DIR=$dir/data "${LAUNCH[@]}" "$bin" --config "$cfg" --threads 1 \
        --listen "127.0.0.1:$listen" --metrics-listen "127.0.0.1:$metrics" \
        --admin-listen "127.0.0.1:$admin" \
        </dev/null >"$dir/keyway.log" 2>&1 &
    pid=$!
    # SIGINT is Pingora's fast shutdown (SIGTERM would drain for minutes).
    track "$pid" INT
    T_LOG[$name]=$dir/keyway.log
    T_ADMIN[$name]=http://127.0.0.1:$admin
    for ((i = 0; i < START_TRIES; i++)); do
        alive "$pid" || { show_log "$dir/keyway.log"; die "keyway $name exited during start-up"; }
        curl -fs -m 1 -o /dev/null "http://127.0.0.1:$metrics/readyz" 2>/dev/null && break
        sleep 0.2
    done
    ((i < START_TRIES)) || { show_log "$dir/keyway.log"; die "keyway $name: not ready (/readyz) within $((START_TRIES / 5)) s"; }
    hdr=$(printf '%s\n' "$@")
    register_target "$name" "$name" keyway "http://127.0.0.1:$listen$path" "$pid" "$hdr"
    sleep 1 # let start-up allocations settle before the idle sample
    RSS_IDLE[$name]=$(rss_kib "$pid")
    RSS_MAX[$name]=0
    log "keyway $name on 127.0.0.1:$listen (metrics $metrics, admin $admin, pid $pid, idle RSS ${RSS_IDLE[$name]} KiB)"
}

# register_target NAME LABEL KIND URL CPU_PID HEADERS; with PIN, CPU_PID's threads move to the
# proxies' CPU.
register_target() {
    T_LABEL[$1]=$2 T_KIND[$1]=$3 T_URL[$1]=$4 T_PID[$1]=$5 T_HDRS[$1]=$6
    if [[ -n $PIN_PROXY && -n $5 ]]; then
        taskset -apc "$PIN_PROXY" "$5" >/dev/null || die "taskset: could not pin $1 (pid $5) to CPU $PIN_PROXY"
    fi
}

# --- targets -----------------------------------------------------------------

setup_target_direct() {
    start_upstream
    # The upstream insists on the key, so the direct client sends it itself.
    register_target direct "upstream directly" direct \
        "http://127.0.0.1:$UPSTREAM_PORT/v1/chat/completions" "" "Authorization: Bearer $API_KEY"
    T_LOG[direct]=${T_LOG[upstream]}
}

setup_target_nginx() {
    local port
    start_upstream
    free_port port
    start_nginx nginx "$HERE/nginx-proxy.conf.in" "$port" UPSTREAM_PORT="$UPSTREAM_PORT"
    register_target nginx "nginx proxy" proxy \
        "http://127.0.0.1:$port/v1/chat/completions" "$NGINX_WORKER_PID" ""
}

# start_bare NAME PATH HEADER: the bare Pingora proxy, one thread, inserting HEADER.
start_bare() {
    local name=$1 path=$2 header=$3 listen dir pid
    keyway_bin
    [[ -x $BARE_BIN ]] || die "$BARE_BIN is missing (build it: cargo build --profile dist --example bare-pingora)"
    start_upstream
    free_port listen
    dir=$WORK/$name
    mkdir -p "$dir"
    "${LAUNCH[@]}" "$BARE_BIN" --listen "127.0.0.1:$listen" --upstream "127.0.0.1:$UPSTREAM_PORT" \
        --header "$header" --threads 1 </dev/null >"$dir/bare.log" 2>&1 &
    pid=$!
    track "$pid" INT
    T_LOG[$name]=$dir/bare.log
    wait_http "http://127.0.0.1:$listen/" "bare Pingora $name" "$pid"
    register_target "$name" "bare Pingora ($name)" bare "http://127.0.0.1:$listen$path" "$pid" ""
    RSS_IDLE[$name]=$(rss_kib "$pid")
    RSS_MAX[$name]=0
    log "bare Pingora $name on 127.0.0.1:$listen (pid $pid, idle RSS ${RSS_IDLE[$name]} KiB)"
}

setup_target_bare() {
    start_bare bare /v1/chat/completions "authorization: Bearer $API_KEY"
}

setup_target_bare_key() {
    start_bare bare_key "$AZURE_PATH" "api-key: $API_KEY"
}

setup_target_keyway() {
    start_keyway keyway "$HERE/keyway.toml.in" /v1/chat/completions "x-portkey-provider: openai"
}

# The enforced posture: a gateway API key and a virtual key (compare with `keyway`, open).
# keyway_gwkey and keyway_gwkey_api send exactly these headers.
GWKEY_HEADERS=("x-portkey-api-key: $GATEWAY_KEY" "x-portkey-virtual-key: lt-openai")
setup_target_keyway_gwkey() {
    start_keyway keyway_gwkey "$HERE/keyway-gwkey.toml.in" /v1/chat/completions "${GWKEY_HEADERS[@]}"
}

# The same, with the virtual key created over the admin API instead of declared in the file.
setup_target_keyway_gwkey_api() {
    start_keyway keyway_gwkey_api "$HERE/keyway-gwkey-api.toml.in" /v1/chat/completions "${GWKEY_HEADERS[@]}"
    create_virtual_key keyway_gwkey_api \
        '{"name":"loadtest openai","slug":"lt-openai","provider":"openai","key":"'"$API_KEY"'","workspace_id":"lt"}'
}

# create_virtual_key NAME BODY: POST BODY to target NAME's /v1/virtual-keys with
# the owner key, insist on 200, then wait (bounded) until the target's own
# request (its URL and headers) answers 200 through the proxy.
create_virtual_key() {
    local t=$1 body=$2 out code i args=() h
    out=$WORK/$t/admin-create-vk.json
    code=$(curl -s -m 10 -o "$out" -w '%{http_code}' -X POST \
        -H "x-portkey-api-key: $OWNER_KEY" -H 'Content-Type: application/json' \
        --data "$body" "${T_ADMIN[$t]}/v1/virtual-keys" || true)
    if [[ $code != 200 ]]; then
        log "admin API POST /v1/virtual-keys for $t: HTTP $code, body: $(head -c 500 "$out" 2>/dev/null)"
        show_log "${T_LOG[$t]}"
        die "could not create the virtual key of $t over the admin API"
    fi
    log "$t: virtual key created over the admin API: $(head -c 300 "$out")"
    while IFS= read -r h; do
        if [[ -n $h ]]; then args+=(-H "$h"); fi
    done <<<"${T_HDRS[$t]}"
    for ((i = 0; i < 50; i++)); do
        alive "${T_PID[$t]}" || { show_log "${T_LOG[$t]}"; die "keyway $t exited after the admin API call"; }
        code=$(curl -s -m 2 -o "$WORK/$t/vk-probe" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
            "${args[@]}" --data '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}' \
            "${T_URL[$t]}" || true)
        [[ $code == 200 ]] && break
        sleep 0.2
    done
    if [[ $code != 200 ]]; then
        log "last answer through $t: HTTP $code, body: $(head -c 300 "$WORK/$t/vk-probe" 2>/dev/null)"
        show_log "${T_LOG[$t]}"
        die "$t: the virtual key created over the admin API did not serve a request within 10 s"
    fi
    ((i == 0)) || log "$t: the new virtual key served its first request after $i retries"
}

# The enforced posture: an RS256 JWT checked against the cached JWKS on every request.
setup_target_keyway_jwt() {
    start_keyway keyway_jwt "$HERE/keyway-jwt.toml.in" /v1/chat/completions \
        "Authorization: Bearer $(<"$WORK/token.txt")" "x-portkey-virtual-key: lt-openai"
}

# The Azure front-door route, static api-key: the baseline for keyway_entra.
AZURE_PATH="/openai/deployments/lt/chat/completions?api-version=2024-10-21"
setup_target_keyway_key() {
    start_keyway keyway_key "$HERE/keyway-route-key.toml.in" "$AZURE_PATH"
}

# The same route with an Entra token from the fake Entra in the upstream nginx.
setup_target_keyway_entra() {
    start_keyway keyway_entra "$HERE/keyway-entra.toml.in" "$AZURE_PATH"
}

# The same route with its api-key mapped from a Vault KV v2 secret (fake Vault in the nginx).
setup_target_keyway_secret() {
    start_keyway keyway_secret "$HERE/keyway-secret.toml.in" "$AZURE_PATH"
}

# The upstream as an inline x-portkey-config target (keyway_cfg_single and the first target of
# keyway_cfg_fallback); needs UPSTREAM_PORT (start_upstream).
cfg_target() {
    printf '{"provider":"openai","api_key":"%s","custom_host":"http://127.0.0.1:%s/v1"}' \
        "$API_KEY" "$UPSTREAM_PORT"
}

setup_target_keyway_cfg_single() {
    start_upstream
    start_keyway keyway_cfg_single "$HERE/keyway-cfg.toml.in" /v1/chat/completions \
        "x-portkey-config: $(cfg_target)"
}

# Fallback over two targets on the same upstream: the first answers every request. Checked once
# before measuring (x-portkey-last-used-option-index), else the run would time the second target.
setup_target_keyway_cfg_fallback() {
    local t hdrs code
    start_upstream
    t=$(cfg_target)
    start_keyway keyway_cfg_fallback "$HERE/keyway-cfg.toml.in" /v1/chat/completions \
        "x-portkey-config: {\"strategy\":{\"mode\":\"fallback\"},\"targets\":[$t,$t]}"
    hdrs=$WORK/keyway_cfg_fallback/probe.headers
    wrk_hdr_args keyway_cfg_fallback
    code=$(curl -s -m 5 -D "$hdrs" -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
        "${WRK_HDR_ARGS[@]}" --data '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}' \
        "${T_URL[keyway_cfg_fallback]}" || true)
    if [[ $code != 200 ]] || ! tr -d '\r' <"$hdrs" | grep -qixF 'x-portkey-last-used-option-index: config.targets[0]'; then
        log "keyway_cfg_fallback probe: HTTP $code, headers: $(tr -d '\r' <"$hdrs" 2>/dev/null | tr '\n' ' ')"
        show_log "${T_LOG[keyway_cfg_fallback]}"
        die "keyway_cfg_fallback: the first target did not answer (expected x-portkey-last-used-option-index: config.targets[0])"
    fi
}

# tls_pair: a CA and a P-256 certificate for 127.0.0.1 it issued, made once per run in
# $WORK/tls and served by both TLS targets (wrk does not verify it).
TLS_DIR=""
tls_pair() {
    [[ -z $TLS_DIR ]] || return 0
    TLS_DIR=$WORK/tls
    mkdir -p "$TLS_DIR"
    printf 'subjectAltName=IP:127.0.0.1\n' >"$TLS_DIR/ext.cnf"
    {
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
            -subj "/CN=keyway loadtest CA" -keyout "$TLS_DIR/ca.key" -out "$TLS_DIR/ca.crt" &&
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
                -keyout "$TLS_DIR/tls.key" -out "$TLS_DIR/tls.csr" &&
            openssl x509 -req -days 2 -in "$TLS_DIR/tls.csr" -CA "$TLS_DIR/ca.crt" \
                -CAkey "$TLS_DIR/ca.key" -CAcreateserial -extfile "$TLS_DIR/ext.cnf" \
                -out "$TLS_DIR/tls.crt"
    } >"$TLS_DIR/openssl.log" 2>&1 || { show_log "$TLS_DIR/openssl.log"; die "openssl could not make the TLS certificate"; }
}

# keyway_over_tls NAME: keyway with a TLS listener beside its clear one; the client is pointed
# at the TLS one.
keyway_over_tls() {
    local name=$1 tls_port
    tls_pair
    free_port tls_port
    T_TOML[$name]=$(printf '[tls]\nlisten = "127.0.0.1:%s"\ncert_file = "%s"\nkey_file = "%s"\n' \
        "$tls_port" "$TLS_DIR/tls.crt" "$TLS_DIR/tls.key")
    start_keyway "$name" "$HERE/keyway.toml.in" /v1/chat/completions "x-portkey-provider: openai"
    T_URL[$name]=https://127.0.0.1:$tls_port/v1/chat/completions
}
setup_target_keyway_tls() { keyway_over_tls keyway_tls; }
setup_target_keyway_h2() {
    keyway_over_tls keyway_h2
    T_CLIENT[keyway_h2]=h2load
}

# nginx_over_tls NAME LABEL HTTP2: nginx's TLS proxy, HTTP2 "http2" to offer h2 by ALPN.
nginx_over_tls() {
    local port
    tls_pair
    start_upstream
    free_port port
    # wait_http's plain request gets nginx's 400 from the TLS port: an answer all the same.
    start_nginx "$1" "$HERE/nginx-proxy-tls.conf.in" "$port" UPSTREAM_PORT="$UPSTREAM_PORT" \
        CERT="$TLS_DIR/tls.crt" KEY="$TLS_DIR/tls.key" HTTP2="$3"
    register_target "$1" "$2" proxy \
        "https://127.0.0.1:$port/v1/chat/completions" "$NGINX_WORKER_PID" ""
}
setup_target_nginx_tls() { nginx_over_tls nginx_tls "nginx proxy (TLS)" ""; }
setup_target_nginx_h2() {
    nginx_over_tls nginx_h2 "nginx proxy (TLS, HTTP/2)" http2
    T_CLIENT[nginx_h2]=h2load
}

# The same two variants run by another build (BASELINE_BIN): an A/B of two commits.
baseline_bin() {
    [[ -n ${BASELINE_BIN:-} && -x $BASELINE_BIN ]] || die "targets base and base_key need BASELINE_BIN (an executable)"
}
setup_target_base() {
    baseline_bin
    T_BIN[base]=$BASELINE_BIN
    start_keyway base "$HERE/keyway.toml.in" /v1/chat/completions "x-portkey-provider: openai"
}
setup_target_base_key() {
    baseline_bin
    T_BIN[base_key]=$BASELINE_BIN
    start_keyway base_key "$HERE/keyway-route-key.toml.in" "$AZURE_PATH"
}

# --- measuring ---------------------------------------------------------------

# wrk_hdr_args NAME: fills WRK_HDR_ARGS with -H options for the target.
wrk_hdr_args() {
    local h
    WRK_HDR_ARGS=()
    while IFS= read -r h; do
        if [[ -n $h ]]; then WRK_HDR_ARGS+=(-H "$h"); fi
    done <<<"${T_HDRS[$1]}"
    if [[ -n $SHAPE_HDR ]]; then WRK_HDR_ARGS+=(-H "$SHAPE_HDR"); fi
}

# One request per target before measuring: the whole chain must return the
# canned completion, or the numbers would measure error paths.
smoke_test() {
    local t=$1 body code ca=()
    wrk_hdr_args "$t"
    body=$WORK/smoke.$t
    # The TLS targets' certificate is verified here (wrk does not verify).
    if [[ ${T_URL[$t]} == https://* ]]; then ca=(--cacert "$TLS_DIR/ca.crt"); fi
    code=$(curl -s -m 5 -o "$body" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
        "${ca[@]}" "${WRK_HDR_ARGS[@]}" --data '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}' \
        "${T_URL[$t]}" || true)
    if [[ $code != 200 ]] || ! grep -qF "$SMOKE_MATCH" "$body"; then
        log "smoke test for $t: HTTP $code, body: $(head -c 300 "$body" 2>/dev/null)"
        show_log "${T_LOG[$t]:-}"
        die "target $t does not return the upstream's completion"
    fi
}

# parse_wrk FILE: prints "rps p50_ms p99_ms total_requests errors p90_ms"
# (p90 last, so callers that predate it read the same fields).
parse_wrk() {
    awk '
        function ms(v) {
            if (v ~ /us$/) return v / 1000
            if (v ~ /ms$/) return v + 0
            if (v ~ /m$/)  return v * 60000
            if (v ~ /h$/)  return v * 3600000
            if (v ~ /s$/)  return v * 1000
            return -1
        }
        /^ *50% /                 { p50 = ms($2) }
        /^ *90% /                 { p90 = ms($2) }
        /^ *99% /                 { p99 = ms($2) }
        / requests in /           { total = $1 }
        /^Requests\/sec:/         { rps = $2 }
        /^ *Non-2xx or 3xx/       { errors += $NF }
        /^ *Socket errors:/       { gsub(/,/, ""); errors += $4 + $6 + $8 + $10 }
        END {
            if (rps == "" || p50 == "" || p90 == "" || p99 == "" || total == "") exit 1
            printf "%s %.4f %.4f %d %d %.4f\n", rps, p50, p99, total, errors, p90
        }' "$1"
}

# run_h2load NAME SECONDS OUTFILE: the HTTP/2 targets' flat-out run, the same POST as chat.lua's;
# every request's duration goes to OUTFILE.log (parse_wrk reads its percentiles from there).
run_h2load() {
    local body=$WORK/h2.body
    command -v h2load >/dev/null || die "h2load not found: run tests/setup.sh (nghttp2-client)"
    [[ $SHAPE != upload ]] || die "the HTTP/2 targets send chat.lua's small POST: SHAPE=upload is not supported"
    sed -n "s/^wrk.body = '\(.*\)'$/\1/p" "$LUA" >"$body"
    [[ -s $body ]] || die "no wrk.body in $LUA"
    wrk_hdr_args "$1"
    timeout $(($2 + 30)) h2load -t1 -c"$CONNECTIONS" -m"$H2_STREAMS" -D"$2" -d "$body" \
        -H 'content-type: application/json' "${WRK_HDR_ARGS[@]}" --log-file="$3.log" \
        "${T_URL[$1]}" >"$3" 2>&1 &
    WRK_PID=$!
    if ! wait "$WRK_PID"; then
        WRK_PID=""
        cat "$3" >&2
        die "h2load failed against $1"
    fi
    WRK_PID=""
}

# parse_h2load FILE: parse_wrk's fields from h2load's summary and its per-request log
# (FILE.log: start µs, status, duration µs).
parse_h2load() {
    local pcts
    pcts=$(cut -f3 "$1.log" | sort -n | awk '{ d[NR] = $1 } END {
        if (NR == 0) exit 1
        printf "%.4f %.4f %.4f", d[int(NR * 0.5) + 1] / 1000, d[int(NR * 0.9) + 1] / 1000, d[int(NR * 0.99) + 1] / 1000
    }') || return 1
    awk -v pcts="$pcts" '
        /^finished in /  { rps = $4 }
        /^requests: /    { total = $2; errors = $10 + $12 + $14 }
        /^status codes: / { errors += $5 + $7 + $9 }
        END {
            split(pcts, p, " ")
            if (rps == "" || total == "") exit 1
            printf "%s %.4f %.4f %d %d %.4f\n", rps, p[1], p[3], total, errors, p[2]
        }' "$1"
}

# run_wrk NAME SECONDS OUTFILE [SCRIPT]: SCRIPT defaults to the flat-out
# chat.lua; PACE_MS is only read by chat_paced.lua. wrk runs in the
# background and we `wait` for it, because bash only runs the INT/TERM traps
# (cleanup) once a foreground command has finished.
run_wrk() {
    if [[ ${T_CLIENT[$1]:-} == h2load ]]; then
        [[ -z ${4:-} ]] || die "the HTTP/2 targets run in the throughput phase only"
        run_h2load "$1" "$2" "$3"
        return
    fi
    wrk_hdr_args "$1"
    PACE_MS=$PACE_MS LT_BODY=$BODY_LUA timeout $(($2 + 30)) wrk -t1 -c"$CONNECTIONS" -d"$2s" --latency -s "${4:-$LUA}" \
        "${WRK_HDR_ARGS[@]}" "${T_URL[$1]}" >"$3" 2>&1 &
    WRK_PID=$!
    if ! wait "$WRK_PID"; then
        WRK_PID=""
        cat "$3" >&2
        die "wrk failed against $1"
    fi
    WRK_PID=""
}

# measure NAME ROUND: one wrk run; appends a line to $WORK/rounds:
# name round rps p50 p99 total errors cpu_seconds req_per_cpu_s
measure() {
    local t=$1 r=$2 pid=${T_PID[$1]} out=$WORK/wrk.$1.$2 c0=0 c1 cpu=- max
    if [[ -n $pid ]]; then
        alive "$pid" || { show_log "${T_LOG[$t]:-}"; die "$t died"; }
        c0=$(cpu_ticks "$pid")
    fi
    if [[ ${T_KIND[$t]} == keyway || ${T_KIND[$t]} == bare ]]; then
        # RSS under load: sample once a second; the loop ends on its own
        # when wrk does, so nothing is left behind.
        (for ((i = 0; i < DURATION; i++)); do sleep 1; rss_kib "$pid"; done) >"$WORK/rss.$t.$r" &
        SAMPLER_PID=$!
    fi
    if [[ -n $PROFILE && $r == "$ROUNDS" && ( ${T_KIND[$t]} == keyway || ${T_KIND[$t]} == bare ) ]]; then
        # Self time per symbol; the first second is left out (wrk connecting).
        # shellcheck disable=SC2086 # PERF_ARGS is a list of options
        (sleep 1 && exec perf record -q $PERF_ARGS -p "$pid" -o "$WORK/perf.$t.data" -- sleep $((DURATION > 3 ? DURATION - 2 : 1))) \
            >"$WORK/perf.$t.log" 2>&1 &
        PERF_PID=$!
    fi
    run_wrk "$t" "$DURATION" "$out"
    if [[ -n $PERF_PID ]]; then
        wait "$PERF_PID" || { cat "$WORK/perf.$t.log" >&2; die "perf record failed for $t"; }
        PERF_PID=""
        if [[ -n $PERF_KEEP ]]; then mkdir -p "$PERF_KEEP" && cp "$WORK/perf.$t.data" "$PERF_KEEP/"; fi
    fi
    if [[ -n $pid ]]; then
        c1=$(cpu_ticks "$pid")
        cpu=$(awk -v d=$((c1 - c0)) -v hz="$CLK_TCK" 'BEGIN { printf "%.3f", d / hz }')
    fi
    if [[ -n $SAMPLER_PID ]]; then
        wait "$SAMPLER_PID" || true
        SAMPLER_PID=""
        rss_kib "$pid" >>"$WORK/rss.$t.$r"
        max=$(sort -n "$WORK/rss.$t.$r" | tail -n 1)
        if ((max > RSS_MAX[$t])); then RSS_MAX[$t]=$max; fi
    fi
    record_round "$t" "$r" "$out" "$cpu"
}

# record_round NAME ROUND OUTPUT CPU_SECONDS: parses the client's OUTPUT and appends the
# round's line to $WORK/rounds (CPU_SECONDS `-`: the target has no process of its own).
record_round() {
    local t=$1 r=$2 out=$3 cpu=$4 rpc=- line rps p50 p99 total errors
    if [[ ${T_CLIENT[$t]:-} == h2load ]]; then
        line=$(parse_h2load "$out") || { cat "$out" >&2; die "could not parse h2load output for $t"; }
    else
        line=$(parse_wrk "$out") || { cat "$out" >&2; die "could not parse wrk output for $t"; }
    fi
    read -r rps p50 p99 total errors _ <<<"$line"
    [[ $cpu == - ]] || rpc=$(awk -v n="$total" -v c="$cpu" 'BEGIN { if (c > 0) printf "%.0f", n / c; else print "-" }')
    ((errors == 0)) || log "WARNING: $t round $r: $errors non-2xx responses or socket errors"
    echo "$t $r $rps $p50 $p99 $total $errors $cpu $rpc" >>"$WORK/rounds"
    log "round $r $t: $rps req/s, p50 $p50 ms, p99 $p99 ms, proxy CPU ${cpu} s, req/CPU-s $rpc, errors $errors"
}

# measure_pair A B ROUND: A and B driven at the same moment (PAIRED=1); a line each in $WORK/rounds
# as `measure` writes them, the CPU of each proxy counted over the same window.
measure_pair() {
    local a=$1 b=$2 r=$3 t pid cpu max
    local -A c0=() wrk=()
    for t in "$a" "$b"; do
        pid=${T_PID[$t]}
        [[ -n $pid ]] || die "PAIRED=1 needs proxies with a process of their own ($t has none)"
        alive "$pid" || { show_log "${T_LOG[$t]:-}"; die "$t died"; }
        c0[$t]=$(cpu_ticks "$pid")
    done
    for t in "$a" "$b"; do
        run_wrk "$t" "$DURATION" "$WORK/wrk.$t.$r" &
        wrk[$t]=$!
    done
    for t in "$a" "$b"; do wait "${wrk[$t]}" || die "wrk failed against $t"; done
    for t in "$a" "$b"; do
        cpu=$(awk -v d=$(($(cpu_ticks "${T_PID[$t]}") - c0[$t])) -v hz="$CLK_TCK" 'BEGIN { printf "%.3f", d / hz }')
        max=$(rss_kib "${T_PID[$t]}")
        if ((max > ${RSS_MAX[$t]:-0})); then RSS_MAX[$t]=$max; fi
        record_round "$t" "$r" "$WORK/wrk.$t.$r" "$cpu"
    done
}

# measure_latency NAME ROUND: one paced wrk run; appends a line to
# $WORK/lat_rounds:
# name round rps p50 p90 p99 total errors cpu_seconds cpu_percent
# The proxy's CPU share shows how close to saturation the offered load is.
measure_latency() {
    local t=$1 r=$2 pid=${T_PID[$1]} out=$WORK/lat.$1.$2 c0=0 c1 cpu=- pct=- line
    local rps p50 p90 p99 total errors
    if [[ -n $pid ]]; then
        alive "$pid" || { show_log "${T_LOG[$t]:-}"; die "$t died"; }
        c0=$(cpu_ticks "$pid")
    fi
    run_wrk "$t" "$LAT_DURATION" "$out" "$LUA_PACED"
    if [[ -n $pid ]]; then
        c1=$(cpu_ticks "$pid")
        cpu=$(awk -v d=$((c1 - c0)) -v hz="$CLK_TCK" 'BEGIN { printf "%.3f", d / hz }')
        pct=$(awk -v c="$cpu" -v s="$LAT_DURATION" 'BEGIN { printf "%.1f", 100 * c / s }')
    fi
    line=$(parse_wrk "$out") || { cat "$out" >&2; die "could not parse wrk output for $t"; }
    read -r rps p50 p99 total errors p90 <<<"$line"
    ((errors == 0)) || log "WARNING: $t latency round $r: $errors non-2xx responses or socket errors"
    echo "$t $r $rps $p50 $p90 $p99 $total $errors $cpu $pct" >>"$WORK/lat_rounds"
    log "latency round $r $t: $rps req/s, p50 $p50 ms, p90 $p90 ms, p99 $p99 ms, proxy CPU $pct %, errors $errors"
}

# --- reporting ---------------------------------------------------------------

# Rounds files: $WORK/rounds (throughput, columns as written by measure)
# and $WORK/lat_rounds (latency, columns as written by measure_latency).

# median_of FORMAT: median of the numbers on stdin, printf'd; "-" when none.
median_of() {
    sort -g | awk -v f="$1" '{ v[NR] = $1 } END {
        if (NR == 0) { print "-"; exit }
        printf f "\n", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# median NAME COLUMN [FILE]: median over rounds of one column of a rounds
# file ($WORK/rounds by default).
median() {
    awk -v t="$1" -v c="$2" '$1 == t && $c != "-" { print $c }' "${3:-$WORK/rounds}" | median_of %s
}

# added_p99 NAME [FILE COLUMN]: median over rounds of (NAME p99 - direct p99
# of that round); pairing by round cancels drift between rounds.
added_p99() {
    awk -v t="$1" -v c="${3:-5}" '$1 == "direct" { d[$2] = $c } $1 == t { p[$2] = $c }
        END { for (r in p) if (r in d) print p[r] - d[r] }' "${2:-$WORK/rounds}" | median_of %.3f
}

# ratio_of A B COLUMN [FORMAT]: median of A's COLUMN / median of B's ("—" when either is missing).
ratio_of() {
    awk -v a="$(median "$1" "$3")" -v b="$(median "$2" "$3")" -v f="${4:-%.3f}" \
        'BEGIN { if (a != "-" && b != "-" && b > 0) printf f "\n", a / b; else print "—" }'
}

# round_ratio A B COLUMN: the median over rounds of A's value / B's value in the same round
# (pairing by round cancels what drifts between rounds on a shared machine).
round_ratio() {
    awk -v a="$1" -v b="$2" -v c="$3" '$1 == a && $c != "-" { x[$2] = $c } $1 == b && $c != "-" { y[$2] = $c }
        END { for (r in x) if ((r in y) && y[r] > 0) print x[r] / y[r] }' "$WORK/rounds" | median_of %.3f
}

mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

fmt() { # FORMAT VALUE: printf unless the value is missing
    # shellcheck disable=SC2059 # the format is always one of ours
    if [[ $2 == - ]]; then echo "—"; else printf "$1" "$2"; fi
}

report() {
    local t errs k ratio cpu verdict pair
    echo "| target | req/s | p50 ms | p99 ms | req per proxy CPU-s | errors |"
    echo "|---|---:|---:|---:|---:|---:|"
    for t in $TARGETS; do
        errs=$(awk -v t="$t" '$1 == t { s += $7 } END { print s + 0 }' "$WORK/rounds")
        printf '| %s | %s | %s | %s | %s | %s |\n' "${T_LABEL[$t]}" \
            "$(fmt %.0f "$(median "$t" 3)")" "$(fmt %.3f "$(median "$t" 4)")" \
            "$(fmt %.3f "$(median "$t" 5)")" "$(fmt %.0f "$(median "$t" 9)")" "$errs"
    done
    echo
    for t in $TARGETS; do
        [[ ${T_KIND[$t]} == keyway ]] || continue
        if [[ -n ${T_KIND[nginx]:-} ]]; then
            ratio=$(ratio_of "$t" nginx 9 %.2f)
            echo "- $t/nginx ratio of req per proxy CPU-s: $ratio"
        fi
    done
    for pair in "keyway bare" "keyway_key bare_key" "keyway_cfg_single bare" "keyway_gwkey bare" "keyway_jwt bare" "keyway_entra bare_key" "keyway_secret bare_key"; do
        set -- $pair
        [[ -n ${T_KIND[$1]:-} && -n ${T_KIND[$2]:-} ]] || continue
        ratio=$(ratio_of "$1" "$2" 9)
        verdict=$(awk -v r="$ratio" 'BEGIN { if (r == "—") print "—"; else if (r >= 0.95) print "meets the ≥ 0.95 goal"; else print "BELOW the ≥ 0.95 goal" }')
        echo "- $1 / $2 (keyway over bare Pingora), req per proxy CPU-s: $ratio — $verdict; median of the rounds' own ratios: $(round_ratio "$1" "$2" 9); req/s: $(ratio_of "$1" "$2" 3)"
    done
    for t in bare bare_key; do
        [[ -n ${T_KIND[$t]:-} && -n ${T_KIND[nginx]:-} ]] || continue
        echo "- $t/nginx ratio of req per proxy CPU-s: $(ratio_of "$t" nginx 9 %.2f)"
    done
    for t in $TARGETS; do
        [[ ${T_KIND[$t]} != direct && -n ${T_KIND[direct]:-} ]] || continue
        echo "- $t p99 added latency (median over rounds of $t p99 − direct p99): $(added_p99 "$t") ms"
    done
    for t in keyway_gwkey keyway_jwt; do
        [[ -n ${T_KIND[$t]:-} && -n ${T_KIND[keyway]:-} ]] || continue
        ratio=$(ratio_of "$t" keyway 3)
        echo "- $t/keyway ratio of req/s (enforced posture vs open): $ratio"
    done
    if [[ -n ${T_KIND[keyway_gwkey_api]:-} && -n ${T_KIND[keyway_gwkey]:-} ]]; then
        ratio=$(ratio_of keyway_gwkey_api keyway_gwkey 3)
        cpu=$(ratio_of keyway_gwkey_api keyway_gwkey 9)
        verdict=$(awk -v r="$ratio" 'BEGIN { if (r == "—") print "—"; else if (r >= 0.97) print "meets the ≥ 0.97 goal"; else print "BELOW the ≥ 0.97 goal" }')
        echo "- keyway_gwkey_api / keyway_gwkey ratio of req/s (virtual key created over the admin API vs declared in the file): $ratio — $verdict; req per proxy CPU-s: $cpu"
    fi
    if [[ -n ${T_KIND[keyway_cfg_fallback]:-} && -n ${T_KIND[keyway_cfg_single]:-} ]]; then
        ratio=$(ratio_of keyway_cfg_fallback keyway_cfg_single 3)
        cpu=$(ratio_of keyway_cfg_fallback keyway_cfg_single 9)
        verdict=$(awk -v r="$ratio" 'BEGIN { if (r == "—") print "—"; else if (r >= 0.95) print "meets the ≥ 0.95 goal"; else print "BELOW the ≥ 0.95 goal" }')
        echo "- keyway_cfg_fallback / keyway_cfg_single ratio of req/s (fallback config whose first target answers vs that target alone): $ratio — $verdict; req per proxy CPU-s: $cpu"
    fi
    for pair in "keyway base" "keyway_key base_key"; do
        set -- $pair
        [[ -n ${T_KIND[$1]:-} && -n ${T_KIND[$2]:-} ]] || continue
        ratio=$(ratio_of "$1" "$2" 3)
        cpu=$(ratio_of "$1" "$2" 9)
        echo "- $1/$2 (this build / BASELINE_BIN): $ratio req/s, $cpu req per proxy CPU-s"
    done
    if [[ -n ${T_KIND[keyway_entra]:-} && -n ${T_KIND[keyway_key]:-} ]]; then
        ratio=$(ratio_of keyway_entra keyway_key 3)
        echo "- keyway_entra/keyway_key ratio of req/s (token from the cache vs a static key): $ratio"
        echo "- token requests the fake Entra received during the run: $(wc -l <"$WORK/upstream/entra-requests.log" 2>/dev/null || echo 0)"
    fi
    if [[ -n ${T_KIND[keyway_secret]:-} && -n ${T_KIND[keyway_key]:-} ]]; then
        ratio=$(ratio_of keyway_secret keyway_key 3)
        echo "- keyway_secret/keyway_key ratio of req/s (key from the secret cache vs a static key): $ratio"
        echo "- secret reads the fake Vault received during the run: $(wc -l <"$WORK/upstream/vault-requests.log" 2>/dev/null || echo 0)"
    fi
    for k in $TARGETS; do
        [[ ${T_KIND[$k]} == keyway || ${T_KIND[$k]} == bare ]] || continue
        echo "- $k RSS: idle $(mib "${RSS_IDLE[$k]}") MiB, under load (max) $(mib "${RSS_MAX[$k]}") MiB"
    done
}

# perf_symbols NAME: "symbol share" lines of target NAME's profile (self time, percent).
perf_symbols() {
    perf report -i "$WORK/perf.$1.data" --no-children --sort sym --stdio -q --percent-limit 0.01 2>/dev/null |
        awk 'NF >= 3 && $1 ~ /%$/ { p = $1; sub(/%$/, "", p); $1 = ""; $2 = ""; sub(/^ +/, ""); print $0 "\t" p }'
}

# profile_report: for each keyway/bare pair that ran, the CPU time per request of each symbol
# (its share of the profile × the target's CPU-seconds per request in the profiled round), and
# the symbols where keyway spends the most time over bare Pingora.
profile_report() {
    local pair a b ua ub
    for pair in "keyway bare" "keyway_key bare_key" "keyway base" "keyway_key base_key"; do
        set -- $pair
        a=$1 b=$2
        [[ -f $WORK/perf.$a.data && -f $WORK/perf.$b.data ]] || continue
        # µs of CPU per request in the profiled (last) round.
        ua=$(awk -v t="$a" -v r="$ROUNDS" '$1 == t && $2 == r && $9 > 0 { printf "%.3f", 1e6 / $9 }' "$WORK/rounds")
        ub=$(awk -v t="$b" -v r="$ROUNDS" '$1 == t && $2 == r && $9 > 0 { printf "%.3f", 1e6 / $9 }' "$WORK/rounds")
        echo
        echo "### Where $a spends its time over $b (perf, round $ROUNDS)"
        echo
        echo "CPU per request: $a $ua µs, $b $ub µs. Symbols by the time they take per request in"
        echo "$a minus in $b (self time; kernel symbols included):"
        echo
        echo "| symbol | $a µs/req | $b µs/req | extra µs/req |"
        echo "|---|---:|---:|---:|"
        perf_symbols "$a" >"$WORK/sym.$a"
        perf_symbols "$b" >"$WORK/sym.$b"
        awk -F'\t' -v ua="$ua" -v ub="$ub" '
            FNR == NR { pa[$1] += $2; next }
            { pb[$1] += $2 }
            END {
                for (s in pa) all[s] = 1
                for (s in pb) all[s] = 1
                for (s in all) {
                    x = pa[s] * ua / 100; y = pb[s] * ub / 100
                    printf "%s\t%.3f\t%.3f\t%.3f\n", s, x, y, x - y
                }
            }' "$WORK/sym.$a" "$WORK/sym.$b" | sort -t$'\t' -k4,4gr >"$WORK/sym.$a.diff"
        # The 20 symbols where keyway spends the most over bare, then the 8 where it spends the
        # least (awk, not head: an early-closed pipe would fail the run under pipefail).
        awk -F'\t' -v n="$(wc -l <"$WORK/sym.$a.diff")" 'NR <= 20 || NR > n - 8 {
                if (NR > 20 && !gap++) print "| … | | | |"
                s = $1; gsub(/\|/, "\\|", s); if (length(s) > 90) s = substr(s, 1, 87) "..."
                printf "| `%s` | %s | %s | %s |\n", s, $2, $3, $4 }' "$WORK/sym.$a.diff"
    done
}

# offered_load: one line saying what the latency phase offers. Each
# connection does think time + response time per request, so the rate
# actually offered is a bit below the nominal CONNECTIONS * 1000 / PACE_MS.
offered_load() {
    local max="no limit (PACE_MS=0)"
    ((PACE_MS == 0)) || max="≤ $((CONNECTIONS * 1000 / PACE_MS)) req/s"
    echo "$CONNECTIONS connections, think time uniform 0–$((2 * PACE_MS)) ms (mean $PACE_MS ms) before every request: offered load $max"
}

lat_report() {
    local t rf=$WORK/lat_rounds errs added verdict
    echo "| target | achieved req/s | p50 ms | p90 ms | p99 ms | p99 added ms | proxy CPU % | errors |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
    for t in $TARGETS; do
        errs=$(awk -v t="$t" '$1 == t { s += $8 } END { print s + 0 }' "$rf")
        added=-
        if [[ ${T_KIND[$t]} != direct && -n ${T_KIND[direct]:-} ]]; then added=$(added_p99 "$t" "$rf" 6); fi
        printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "${T_LABEL[$t]}" \
            "$(fmt %.0f "$(median "$t" 3 "$rf")")" "$(fmt %.3f "$(median "$t" 4 "$rf")")" \
            "$(fmt %.3f "$(median "$t" 5 "$rf")")" "$(fmt %.3f "$(median "$t" 6 "$rf")")" \
            "$(fmt %.3f "$added")" "$(fmt %.1f "$(median "$t" 10 "$rf")")" "$errs"
    done
    echo
    echo "- offered: $(offered_load)"
    for t in $TARGETS; do
        [[ ${T_KIND[$t]} != direct && -n ${T_KIND[direct]:-} ]] || continue
        added=$(added_p99 "$t" "$rf" 6)
        verdict=$(awk -v a="$added" 'BEGIN { if (a == "-") print "—"; else if (a < 1) print "under the 1 ms goal"; else print "NOT under the 1 ms goal" }')
        echo "- $t p99 added latency at this load (median over rounds of $t p99 − direct p99 of the same round): $(fmt %s "$added") ms — $verdict"
    done
}

lat_raw_table() {
    echo "| target | round | req/s | p50 ms | p90 ms | p99 ms | requests | errors | proxy CPU s | proxy CPU % |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    awk '{ printf "| %s | %s | %.0f | %.3f | %.3f | %.3f | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 }' "$WORK/lat_rounds"
}

raw_table() {
    echo "| target | round | req/s | p50 ms | p99 ms | requests | errors | proxy CPU s | req per CPU-s |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    awk '{ printf "| %s | %s | %.0f | %.3f | %.3f | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9 }' "$WORK/rounds"
}

shape_words() {
    case $SHAPE in
        json) echo "~$(grep -o "wrk.body = '[^']*'" "$LUA" | sed "s/^wrk.body = '//; s/'\$//" | wc -c) B chat POST, ~330 B JSON answer" ;;
        sse) echo "the small chat POST answered by a 9-event text/event-stream of ~1.9 KB" ;;
        upload) echo "1 MiB chat POST, ~330 B JSON answer" ;;
        download) echo "the small chat POST, 1 MiB JSON answer" ;;
    esac
}

environment() {
    local rev
    rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "no commit")
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "- host: $(nproc --all) CPUs, kernel $(uname -r), $(uname -m)"
    echo "- wrk: $( (wrk -v 2>&1 || true) | head -n 1 | awk '{ print $1, $2 }')"
    echo "- nginx: $("$NGINX_BIN" -v 2>&1 | sed 's/^nginx version: //')"
    if [[ -n ${KEYWAY_RESOLVED:-} ]]; then
        echo "- keyway: $KEYWAY_BIN (built $(date -u -r "$KEYWAY_BIN" '+%Y-%m-%d %H:%M UTC'), repo at $rev), RUST_LOG=$KEYWAY_RUST_LOG"
        if [[ -n ${BASELINE_BIN:-} ]]; then
            echo "- baseline (targets base, base_key): $BASELINE_BIN (built $(date -u -r "$BASELINE_BIN" '+%Y-%m-%d %H:%M UTC'))"
        fi
    fi
    echo "- run: targets \"$TARGETS\", phases \"$PHASES\", wrk -t1 -c$CONNECTIONS, ${WARMUP} s flat-out warm-up per target, SHAPE=$SHAPE ($(shape_words)), CLK_TCK $CLK_TCK"
    if [[ -n ${KEYWAY_RESOLVED:-} && -x ${BARE_BIN:-} ]]; then
        echo "- bare Pingora: $BARE_BIN (built $(date -u -r "$BARE_BIN" '+%Y-%m-%d %H:%M UTC'))"
    fi
    if [[ -n $RUN_THROUGHPUT ]]; then
        echo "- throughput phase: $ROUNDS interleaved rounds × ${DURATION} s, flat out (no think time), order $ORDER${PAIRED:+, paired: two targets at a time}"
    fi
    if [[ -n $RUN_LATENCY ]]; then
        echo "- latency phase: $LAT_ROUNDS interleaved rounds × ${LAT_DURATION} s, $(offered_load) ($(basename "$LUA_PACED"))"
    fi
    if [[ -n $PIN_PROXY ]]; then
        echo "- pinned (PIN): each proxy on CPU $PIN_PROXY, wrk, the upstream nginx and the rest on CPU $PIN_REST; numbers are medians over rounds"
    else
        echo "- every process shares the same $(nproc) cores: wrk, the upstream nginx and the proxy; numbers are medians over rounds"
    fi
}

# --- main --------------------------------------------------------------------

main() {
    local -a pairs
    local i
    local t r p missing=()
    for p in $PHASES; do
        case $p in
            throughput) RUN_THROUGHPUT=1 ;;
            latency) RUN_LATENCY=1 ;;
            *) die "unknown phase '$p' in PHASES (known: throughput latency)" ;;
        esac
    done
    [[ -n $RUN_THROUGHPUT$RUN_LATENCY ]] || die "PHASES is empty"
    [[ $ORDER == rotate || $ORDER == fixed ]] || die "unknown ORDER '$ORDER' (known: rotate fixed)"
    if [[ -n $PAIRED ]]; then
        [[ -z $RUN_LATENCY && -z $PROFILE ]] || die "PAIRED=1 runs the throughput phase only, without PROFILE"
        (($(wc -w <<<"$TARGETS") % 2 == 0)) || die "PAIRED=1 takes TARGETS two by two: give an even number"
    fi
    case $SHAPE in
        json) ;;
        sse) SHAPE_HDR="x-loadtest-shape: sse" SMOKE_MATCH="data: [DONE]" ;;
        download) SHAPE_HDR="x-loadtest-shape: download" ;;
        upload) LUA=$HERE/chat_upload.lua BODY_LUA=$HERE/chat_upload.lua ;;
        *) die "unknown SHAPE '$SHAPE' (known: json sse upload download)" ;;
    esac
    if [[ -n $PIN ]]; then
        [[ $PIN == 1 ]] && PIN="0 1"
        read -r PIN_REST PIN_PROXY _ <<<"$PIN"
        [[ $PIN_REST =~ ^[0-9]+$ && $PIN_PROXY =~ ^[0-9]+$ && $PIN_REST != "$PIN_PROXY" ]] ||
            die "PIN is 1 or two different CPU numbers, \"REST PROXY\" (got '$PIN')"
        command -v taskset >/dev/null || die "PIN needs taskset (util-linux)"
        # Everything started from here on (upstream, wrk, perf) inherits CPU $PIN_REST.
        taskset -pc "$PIN_REST" $$ >/dev/null || die "taskset: could not pin the script to CPU $PIN_REST"
    fi
    require_uint ROUNDS 1
    require_uint DURATION 1
    require_uint LAT_ROUNDS 1
    require_uint LAT_DURATION 1
    require_uint PACE_MS 0
    require_uint CONNECTIONS 1
    require_uint WARMUP 0
    [[ -n ${TARGETS// /} ]] || die "TARGETS is empty"

    if [[ -z $NGINX_BIN ]]; then
        NGINX_BIN=$(command -v nginx || true)
        [[ -n $NGINX_BIN || ! -x /usr/sbin/nginx ]] || NGINX_BIN=/usr/sbin/nginx
    fi
    [[ -n $NGINX_BIN ]] || missing+=(nginx-light)
    command -v wrk >/dev/null || missing+=(wrk)
    command -v curl >/dev/null || missing+=(curl)
    if [[ -n $PROFILE ]]; then command -v perf >/dev/null || missing+=(linux-perf); fi
    if ((${#missing[@]})); then
        log "missing: ${missing[*]}"
        log "install with: apt-get install -y ${missing[*]}   (or: bash tests/setup.sh, if present)"
        exit 1
    fi
    for t in $TARGETS; do
        declare -F "setup_target_$t" >/dev/null ||
            die "unknown target '$t' (known: $(declare -F | awk '$3 ~ /^setup_target_/ { sub(/^setup_target_/, "", $3); printf "%s ", $3 }'))"
    done
    CLK_TCK=$(getconf CLK_TCK)
    # Find or build keyway before starting anything else.
    if [[ " $TARGETS" == *" keyway"* ]]; then keyway_bin; fi

    trap cleanup EXIT
    trap 'log "interrupted; stopping everything"; exit 130' INT
    trap 'log "terminated; stopping everything"; exit 143' TERM
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/keyway-loadtest.XXXXXX")
    : >"$WORK/rounds"
    : >"$WORK/lat_rounds"

    for t in $TARGETS; do "setup_target_$t"; done
    for t in $TARGETS; do smoke_test "$t"; done
    if ((WARMUP > 0)); then
        for t in $TARGETS; do run_wrk "$t" "$WARMUP" "$WORK/warmup.$t"; done
    fi

    if [[ -n $RUN_THROUGHPUT ]]; then
        for ((r = 1; r <= ROUNDS; r++)); do
            if [[ -n $PAIRED ]]; then
                read -r -a pairs <<<"$TARGETS"
                for ((i = 0; i + 1 < ${#pairs[@]}; i += 2)); do
                    measure_pair "${pairs[i]}" "${pairs[i + 1]}" "$r"
                done
            else
                for t in $(round_order "$r"); do measure "$t" "$r"; done
            fi
        done
    fi
    if [[ -n $RUN_LATENCY ]]; then
        for ((r = 1; r <= LAT_ROUNDS; r++)); do
            for t in $(round_order "$r"); do measure_latency "$t" "$r"; done
        done
    fi

    mkdir -p "$(dirname "$OUT")"
    {
        echo "# keyway load test"
        echo
        environment
        summaries "##"
        if [[ -n $RUN_THROUGHPUT ]]; then
            echo
            echo "## Every round: throughput, flat out"
            echo
            raw_table
        fi
        if [[ -n $RUN_LATENCY ]]; then
            echo
            echo "## Every round: latency at a fixed offered load"
            echo
            lat_raw_table
        fi
    } >"$OUT"
    summaries "#"
    echo
    log "results written to $OUT"
}

# summaries HEADING_PREFIX: the median tables of the phases that ran.
summaries() {
    if [[ -n $RUN_THROUGHPUT ]]; then
        echo
        echo "$1 Throughput, flat out (no think time): medians over $ROUNDS rounds"
        echo
        report
        if [[ -n $PROFILE ]]; then profile_report; fi
    fi
    if [[ -n $RUN_LATENCY ]]; then
        echo
        echo "$1 Latency at a fixed offered load ($(offered_load)): medians over $LAT_ROUNDS rounds"
        echo
        lat_report
    fi
}

# Sourcing the file (for tests of the helpers) must not start a run.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    main "$@"
fi
