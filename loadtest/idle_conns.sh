#!/usr/bin/env bash
# What an idle keep-alive client connection costs keyway: N connections, one request each
# (through keyway to a fixed nginx upstream), then held idle; keyway's VmRSS is read from
# /proc/PID/status before, while they are held and after they are closed. Reports bytes per
# connection. keyway runs with the default [listener] and [limits] (plus EXTRA_TOML).
#
# Usage: loadtest/idle_conns.sh        (needs nginx, python3, curl)
# Env:   N=10000 HOLD_S=2 SETTLE_S=5 REQUESTS=1 (0: connections that never send a byte)
#        KEYWAY_BIN (default $CARGO_TARGET_DIR/release/keyway)
#        EXTRA_TOML='[listener]\nread_buffer_bytes = 65536' for an A/B, NGINX_BIN=nginx
#        KEEP_WORK=1 keeps the run's directory.
# keyway and the client are separate processes, each needing N descriptors: the open-file
# limit (ulimit -n) is raised to its hard limit, and N must fit under it.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=loadtest/lib.sh
. "$HERE/lib.sh"
LOG_PREFIX=idle
STOP_LIST=()
USED_PORTS=" "

N=${N:-10000}
HOLD_S=${HOLD_S:-2}
SETTLE_S=${SETTLE_S:-5}
REQUESTS=${REQUESTS:-1}
NGINX_BIN=${NGINX_BIN:-nginx}
KEYWAY_BIN=${KEYWAY_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/keyway/target}/release/keyway}
require_uint N 1
require_uint HOLD_S 0
require_uint SETTLE_S 0
require_uint REQUESTS 0
[[ -x $KEYWAY_BIN ]] || die "KEYWAY_BIN=$KEYWAY_BIN is not an executable"

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
(($(ulimit -n) >= N + 64)) || die "N=$N does not fit the open-file limit $(ulimit -n)"

WORK=$(mktemp -d /tmp/keyway-idle.XXXXXX)
cleanup() {
    local rc=$?
    stop_tracked
    remove_work "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_http() {
    local url=$1 what=$2 pid=$3 i code
    for ((i = 0; i < 100; i++)); do
        alive "$pid" || die "$what exited during start-up"
        code=$(curl -s -o /dev/null -m 1 -w '%{http_code}' "$url" 2>/dev/null || true)
        [[ $code == 200 ]] && return 0
        sleep 0.2
    done
    die "$what did not answer 200 on $url within 20 s"
}

free_port UPSTREAM_PORT
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    keepalive_requests 10000000;
    server {
        listen 127.0.0.1:$UPSTREAM_PORT;
        location / {
            default_type application/json;
            return 200 '{"id":"chatcmpl-idle","object":"chat.completion","choices":[]}';
        }
    }
}
CONF
"$NGINX_BIN" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" \
    </dev/null >"$WORK/nginx/stdout.log" 2>&1 &
track $! TERM
wait_http "http://127.0.0.1:$UPSTREAM_PORT/" nginx $!

free_port LISTEN_PORT
free_port METRICS_PORT
free_port ADMIN_PORT
printf '[providers.openai]\nbase_url = "http://127.0.0.1:%s/v1"\napi_key = "sk-idle"\n%b\n' \
    "$UPSTREAM_PORT" "${EXTRA_TOML:-}" >"$WORK/keyway.toml"
RUST_LOG=warn KEYWAY_DATA_DIR=$WORK/data "$KEYWAY_BIN" --config "$WORK/keyway.toml" --threads 1 \
    --listen "127.0.0.1:$LISTEN_PORT" --metrics-listen "127.0.0.1:$METRICS_PORT" \
    --admin-listen "127.0.0.1:$ADMIN_PORT" </dev/null >"$WORK/keyway.log" 2>&1 &
KEYWAY_PID=$!
track "$KEYWAY_PID" KILL
wait_http "http://127.0.0.1:$METRICS_PORT/readyz" keyway "$KEYWAY_PID"

log "holding $N idle keep-alive connections to keyway (pid $KEYWAY_PID)"
RESULT=$(python3 "$HERE/idle_conns.py" "$LISTEN_PORT" "$KEYWAY_PID" "$N" "$HOLD_S" "$SETTLE_S" "$REQUESTS") ||
    { show_log "$WORK/keyway.log"; die "the client failed"; }
GAUGE=$(curl -s "http://127.0.0.1:$METRICS_PORT/metrics" | awk '$1 == "keyway_client_connections" { print $2 }')
log "keyway_client_connections after close: ${GAUGE:-?}"
echo "$RESULT"
