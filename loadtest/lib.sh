# Shared helpers of the load-test scripts (run.sh, streams.sh), sourced by them. A script sets
# LOG_PREFIX, STOP_LIST=() and USED_PORTS=" " first, and defines its own cleanup (which calls
# stop_tracked) and the traps.

log() { printf '[%s] %s\n' "$LOG_PREFIX" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
alive() { kill -0 "$1" 2>/dev/null; }

# track PID SIGNAL: stop PID with SIGNAL when the script ends.
track() { STOP_LIST+=("$1:$2"); }

# stop_tracked: stop everything tracked, newest first. A polite signal first, then SIGKILL after
# a bounded wait: keyway's graceful SIGTERM drain can take minutes, and a load test has nothing
# worth draining.
stop_tracked() {
    local i entry pid sig n
    for ((i = ${#STOP_LIST[@]} - 1; i >= 0; i--)); do
        entry=${STOP_LIST[i]}
        pid=${entry%%:*} sig=${entry#*:}
        alive "$pid" || continue
        kill -s "$sig" "$pid" 2>/dev/null || true
        n=0
        while alive "$pid" && ((n++ < 50)); do sleep 0.1; done
        if alive "$pid"; then
            log "pid $pid ignored SIG$sig; killing it"
            kill -s KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
}

# remove_work RC: delete WORK unless KEEP_WORK (or KEEP_WORK_ON_FAIL and a failure) says keep it.
remove_work() {
    [[ -n ${WORK:-} && -d $WORK ]] || return 0
    if [[ -n ${KEEP_WORK:-} || ($1 -ne 0 && -n ${KEEP_WORK_ON_FAIL:-}) ]]; then
        log "keeping $WORK for inspection"
    else
        rm -rf "$WORK"
    fi
}

# Show the tail of a log when a component misbehaves.
show_log() {
    [[ -f $1 ]] || return 0
    log "--- last lines of $1 ---"
    tail -n 20 "$1" >&2 || true
}

# --- small helpers -----------------------------------------------------------

require_uint() {
    [[ ${!1} =~ ^[0-9]+$ && ${!1} -ge $2 ]] || die "$1 must be an integer >= $2 (got '${!1}')"
}

# free_port VAR: a port on 127.0.0.1 nobody listens on, outside the ephemeral
# range when possible, so wrk's own client sockets cannot collide with it.
free_port() {
    local var=$1 eph_lo eph_hi lo hi p i
    read -r eph_lo eph_hi </proc/sys/net/ipv4/ip_local_port_range
    if ((eph_lo > 11000)); then
        lo=10000 hi=$((eph_lo - 1))
    elif ((eph_hi < 64000)); then
        lo=$((eph_hi + 1)) hi=65535
    else
        lo=10000 hi=65535
    fi
    for ((i = 0; i < 200; i++)); do
        p=$((lo + (RANDOM * 32768 + RANDOM) % (hi - lo + 1)))
        [[ $USED_PORTS == *" $p "* ]] && continue
        if command -v ss >/dev/null; then
            [[ -z $(ss -Htln "sport = :$p" 2>/dev/null) ]] || continue
        else
            # No ss: a refused connect means nobody listens there.
            (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
        fi
        USED_PORTS+="$p "
        printf -v "$var" '%s' "$p"
        return 0
    done
    die "no free port found on 127.0.0.1"
}

# render SRC DST KEY=VALUE...: copy a template, replacing @KEY@ with VALUE.
render() {
    local src=$1 dst=$2 kv args=()
    shift 2
    for kv in "$@"; do args+=(-e "s|@${kv%%=*}@|${kv#*=}|g"); done
    sed "${args[@]}" "$src" >"$dst"
    ! grep -n '@[A-Z_]*@' "$dst" >/dev/null || die "unfilled placeholder in $dst: $(grep -o '@[A-Z_]*@' "$dst" | head -1)"
}

# cpu_ticks PID: user+system clock ticks of the whole process (all threads).
# The comm field may contain spaces, so split after the last ')'.
cpu_ticks() {
    local stat rest f
    stat=$(<"/proc/$1/stat") || die "process $1 is gone"
    rest=${stat##*) }
    read -ra f <<<"$rest"
    echo $((f[11] + f[12])) # fields 14 (utime) and 15 (stime)
}

rss_kib() {
    awk '/^VmRSS:/ { print $2; found = 1 } END { if (!found) print 0 }' "/proc/$1/status" 2>/dev/null || echo 0
}

