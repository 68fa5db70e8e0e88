#!/usr/bin/env bash
# Instructions per request: each proxy of run.sh's targets runs under callgrind (valgrind) and
# is sent the same REQUESTS requests by h2load (HTTP/1.1, the loadtest's chat POST); its
# user-space instructions for them (every thread, libc and the allocator included), divided by
# REQUESTS. The count is the same from run to run whatever else the machine does, where
# requests per CPU-second (run.sh) move by several percent with the host's load: it is the
# measure that settles a 1% difference between keyway and bare Pingora, or between two builds.
# It leaves out the kernel (the TCP work, about half of a request's CPU here, the same for
# every proxy as long as they make the same system calls) and the cost of cache misses, so it
# complements run.sh's figures, it does not replace them.
#
# Usage: loadtest/instructions.sh   (needs valgrind, h2load, nginx, curl: tests/setup.sh)
# Env:   TARGETS="bare keyway bare_key keyway_key"  any of run.sh's targets with a process of
#                                   their own (keyway*, bare*, base*), in pairs "A B" compared
#                                   as B / A
#        REQUESTS=20000 WARM=2000   counted requests, and requests sent before the count
#                                   starts (connections, caches, the pool)
#        CONNECTIONS=8              h2load's connections
#        SHAPE=json|sse             as run.sh's
#        TOP=20                     functions listed per pair: the largest differences in
#                                   self instructions per request (callgrind_annotate), B - A
#        KEYWAY_BIN BASELINE_BIN BARE_BIN KEYWAY_TOML BASELINE_TOML NO_BUILD  as run.sh's
#        OUT=loadtest/results/instructions.md
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# This script's own defaults, taken before run.sh (sourced below) sets its own.
I_TARGETS=${TARGETS:-"bare keyway bare_key keyway_key"}
I_CONNECTIONS=${CONNECTIONS:-8}
I_OUT=${OUT:-$HERE/results/instructions.md}
# run.sh's targets, processes and helpers, without its main.
# shellcheck source=run.sh
. "$HERE/run.sh"
LOG_PREFIX=instructions

TARGETS=$I_TARGETS
CONNECTIONS=$I_CONNECTIONS
OUT=$I_OUT
REQUESTS=${REQUESTS:-20000}
WARM=${WARM:-2000}
TOP=${TOP:-20}
# Under valgrind a proxy starts 20-50x slower: up to 3 minutes.
START_TRIES=900
declare -A IR=() # target -> instructions per request

# send NAME N: N of the loadtest's POSTs to NAME, HTTP/1.1, CONNECTIONS at a time.
send() {
    local body=$WORK/instr.body out=$WORK/h2load.$1.out
    [[ -s $body ]] || sed -n "s/^wrk.body = '\(.*\)'$/\1/p" "$LUA" >"$body"
    [[ -s $body ]] || die "no wrk.body in $LUA"
    wrk_hdr_args "$1"
    timeout 1800 h2load --h1 -t1 -c"$CONNECTIONS" -n"$2" -d "$body" \
        -H 'content-type: application/json' "${WRK_HDR_ARGS[@]}" "${T_URL[$1]}" >"$out" 2>&1 ||
        { cat "$out" >&2; die "h2load failed against $1"; }
    grep -Eq "requests: $2 total, $2 started, $2 done, $2 succeeded" "$out" ||
        { cat "$out" >&2; die "not every request to $1 succeeded"; }
}

# count NAME: zero the counters, send REQUESTS, dump; IR[NAME] from the dump's total.
count() {
    local t=$1 pid=${T_PID[$1]} dump
    [[ -n $pid ]] || die "$t has no process of its own to count"
    send "$t" "$WARM"
    callgrind_control -z "$pid" >/dev/null || die "callgrind_control could not reach $t (pid $pid)"
    send "$t" "$REQUESTS"
    callgrind_control --dump="$t" "$pid" >/dev/null || die "callgrind_control could not dump $t"
    dump=$(find "$WORK" -maxdepth 1 -name "callgrind.$t.$pid.*" -newer "$WORK/h2load.$t.out" | sort | tail -1)
    [[ -n $dump ]] || dump=$(ls -t "$WORK"/callgrind."$t"."$pid".* | head -1)
    cp "$dump" "$WORK/dump.$t"
    IR[$t]=$(awk -v n="$REQUESTS" '/^(summary|totals):/ { print $2 / n; exit }' "$dump")
    [[ -n ${IR[$t]} ]] || die "no total in $dump"
    log "$t: ${IR[$t]} instructions per request"
}

# functions A B: the TOP functions by self instructions per request, B minus A.
functions() {
    local a=$1 b=$2 f
    for f in "$a" "$b"; do
        # One line per function: "Ir (pct)  file:function [object]". The thread entry points
        # carry the whole total (every thread's cost rolls up to them): left out.
        callgrind_annotate --auto=no --threshold=100 --inclusive=no "$WORK/dump.$f" 2>/dev/null |
            awk -v n="$REQUESTS" '/^ *[0-9,]+ \( *[0-9.]+%\)  / {
                v = $1; gsub(",", "", v); pct = $2 $3; gsub(/[()% ]/, "", pct)
                if (pct + 0 >= 99) next
                line = $0; sub(/^ *[0-9,]+ \( *[0-9.]+%\)  /, "", line); sub(/ \[[^]]*\]$/, "", line)
                sub(/^(\?\?\?|[^ ]*\.(rs|c|h|S|cc|cpp)):/, "", line)
                print line "\t" v / n }' >"$WORK/fn.$f"
    done
    awk -F'\t' -v top="$TOP" 'FNR == NR { a[$1] += $2; next } { b[$1] += $2 }
        END {
            for (k in a) if (!(k in b)) b[k] = 0
            for (k in b) {
                d = b[k] - (k in a ? a[k] : 0)
                printf "%.1f\t%.1f\t%.1f\t%.1f\t%s\n", d < 0 ? -d : d, (k in a ? a[k] : 0), b[k], d, k
            }
        }' "$WORK/fn.$a" "$WORK/fn.$b" | sort -t$'\t' -k1,1gr | cut -f2- |
        awk -F'\t' -v top="$TOP" 'NR <= top { n = $4; gsub(/\|/, "\\|", n); if (length(n) > 110) n = substr(n, 1, 107) "..."; printf "| `%s` | %s | %s | %+.1f |\n", n, $1, $2, $3 }'
}

instructions_main() {
    local t a b i
    local -a list
    command -v valgrind >/dev/null || die "valgrind not found: run tests/setup.sh"
    command -v callgrind_control >/dev/null || die "callgrind_control not found (valgrind)"
    command -v h2load >/dev/null || die "h2load not found: run tests/setup.sh (nghttp2-client)"
    require_uint REQUESTS 1
    require_uint WARM 0
    require_uint CONNECTIONS 1
    require_uint TOP 0
    case $SHAPE in
        json) ;;
        sse) SHAPE_HDR="x-loadtest-shape: sse" SMOKE_MATCH="data: [DONE]" ;;
        *) die "SHAPE is json or sse here (got '$SHAPE')" ;;
    esac
    read -r -a list <<<"$TARGETS"
    ((${#list[@]} % 2 == 0)) || die "TARGETS are compared two by two: give an even number"
    if [[ " $TARGETS" == *" keyway"* || " $TARGETS" == *" base"* ]]; then keyway_bin; fi
    if [[ -z $NGINX_BIN ]]; then NGINX_BIN=$(command -v nginx || echo /usr/sbin/nginx); fi
    trap cleanup EXIT
    trap 'log "interrupted; stopping everything"; exit 130' INT
    trap 'log "terminated; stopping everything"; exit 143' TERM
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/keyway-instructions.XXXXXX")
    chmod 755 "$WORK"
    # Every thread's instructions in one total; the dumps land in $WORK.
    # --trace-children: a KEYWAY_BIN that is a wrapper script (e.g. one setting _RJEM_MALLOC_CONF)
    # is followed into the binary it runs.
    LAUNCH=(valgrind --tool=callgrind --quiet --trace-children=yes "--callgrind-out-file=$WORK/callgrind.%q{KW_TARGET}.%p")
    for t in "${list[@]}"; do
        KW_TARGET=$t
        export KW_TARGET
        "setup_target_$t"
        smoke_test "$t"
        count "$t"
    done
    mkdir -p "$(dirname "$OUT")"
    {
        echo "# Instructions per request (callgrind)"
        echo
        echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); $(valgrind --version); $(h2load --version 2>/dev/null | head -1)"
        echo "- keyway: ${KEYWAY_BIN:-} (repo at $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'))"
        if [[ -n ${BASELINE_BIN:-} ]]; then echo "- baseline (base, base_key): $BASELINE_BIN"; fi
        echo "- bare Pingora: ${BARE_BIN:-}"
        echo "- $REQUESTS counted requests after $WARM, h2load --h1 -c$CONNECTIONS, SHAPE=$SHAPE; user-space instructions of every thread of the proxy"
        echo
        echo "| target | instructions per request |"
        echo "|---|---:|"
        for t in "${list[@]}"; do printf '| %s | %.0f |\n' "$t" "${IR[$t]}"; done
        echo
        for ((i = 0; i < ${#list[@]}; i += 2)); do
            a=${list[i]} b=${list[i + 1]}
            echo "- $b / $a: $(awk -v x="${IR[$b]}" -v y="${IR[$a]}" 'BEGIN { printf "%.3f", x / y }') ($(awk -v x="${IR[$b]}" -v y="${IR[$a]}" 'BEGIN { printf "%+.0f", x - y }') instructions per request)"
        done
        if ((TOP > 0)); then
            for ((i = 0; i < ${#list[@]}; i += 2)); do
                a=${list[i]} b=${list[i + 1]}
                echo
                echo "## $b against $a: the functions whose self instructions per request differ most"
                echo
                echo "| function | $a | $b | $b − $a |"
                echo "|---|---:|---:|---:|"
                functions "$a" "$b"
            done
        fi
    } >"$OUT"
    cat "$OUT"
    log "results written to $OUT"
}

instructions_main "$@"
