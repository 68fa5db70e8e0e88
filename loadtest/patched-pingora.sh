#!/usr/bin/env bash
# An experiment, not a fork: measure what two Pingora 0.9.1 patches buy keyway in requests per
# proxy CPU-second. The published pingora-core and pingora-proxy are copied out of the cargo
# registry, the chosen patches (loadtest/pingora-patches/<letter>-*.patch) are applied to the
# copy, and a snapshot of this working tree is built against it with
#   cargo build --profile dist --config 'patch.crates-io.pingora-core.path="…"' (and pingora-proxy)
# into a target dir of its own. The same snapshot is also built as is (the stock build), so the
# A/B differs in the patches only, even while others keep editing src/. Nothing in the
# repository, its Cargo.lock or the main target dir changes. Then loadtest/run.sh runs the stock
# binary (BASELINE_BIN, targets base/base_key) and the patched one (KEYWAY_BIN, targets
# keyway/keyway_key) in the same interleaved rounds.
#
#   a - the upstream request header and a small body leave in one write (client.rs, proxy_h1.rs)
#   b - no 64 KiB body buffer for an upstream response body already read with its header (body.rs)
#
# Usage: loadtest/patched-pingora.sh
# Env:   PATCHES="a b"          patches to apply (letters), e.g. PATCHES=a or PATCHES=b
#        ROUNDS=7 DURATION=6 PHASES=throughput
#        TARGETS="keyway base keyway_key base_key"   order within a round (run.sh's targets)
#        SWAP=1                 run a second time with each keyway*/base* pair swapped in TARGETS
#        NO_BUILD=1             rerun with the binaries of an earlier build of the same PATCHES
#                               (the stock binary of its snapshot is kept beside them)
#        NO_RUN=1               build only
#        REUSE_TREE=1           build from the snapshot of an earlier call (WORK_DIR/tree) and
#                               reuse its stock build, e.g. to try one patch at a time against
#                               the same source; otherwise the working tree is snapshot afresh
#        STOCK_BIN=...          use this unpatched keyway instead of the snapshot built as is
#                               (e.g. the main dist build); copied next to the patched binaries
#                               first, so a rebuild cannot swap it mid-run
#        PATCHED_TARGET_DIR=/root/.cache/keyway/target-patched
#        WORK_DIR=/tmp/keyway-patched   snapshot (tree/), stock build (stock/), patched builds
#                               (<letters>/), results (results/)
#        LOCK_FILE=...          hold `flock LOCK_FILE` around each load run (not the build), so
#                               runs of several people never overlap on one machine
#        Anything else run.sh reads (CONNECTIONS, WARMUP, SHAPE, ...) is passed through.
#
# Prints each run's result lines and the patched/stock ratios (keyway/base, keyway_key/base_key:
# req/s and req per proxy CPU-second; > 1 means the patched build does better).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")

PATCHES=${PATCHES:-"a b"}
ROUNDS=${ROUNDS:-7}
DURATION=${DURATION:-6}
PHASES=${PHASES:-throughput}
TARGETS=${TARGETS:-"keyway base keyway_key base_key"}
PATCHED_TARGET_DIR=${PATCHED_TARGET_DIR:-/root/.cache/keyway/target-patched}
WORK_DIR=${WORK_DIR:-/tmp/keyway-patched}
PINGORA_VERSION=0.9.1

log() { printf '[patched-pingora] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# PATCH_FILES: the patch file of each letter in PATCHES, in the order given.
PATCH_FILES=()
for letter in $PATCHES; do
    [[ $letter =~ ^[a-z]$ ]] || die "PATCHES takes single letters (got '$letter')"
    f=$(compgen -G "$HERE/pingora-patches/$letter-*.patch" | head -n 1 || true)
    [[ -n $f ]] || die "no loadtest/pingora-patches/$letter-*.patch"
    PATCH_FILES+=("$f")
done
((${#PATCH_FILES[@]} > 0)) || die "PATCHES is empty"

# registry_crate NAME: where cargo unpacked NAME-PINGORA_VERSION (sets CRATE_DIR).
registry_crate() {
    CRATE_DIR=$(compgen -G "${CARGO_HOME:-$HOME/.cargo}/registry/src/*/$1-$PINGORA_VERSION" | head -n 1 || true)
    [[ -n $CRATE_DIR ]] || die "$1 $PINGORA_VERSION is not in the cargo registry (run a normal build first)"
}

# snapshot: the working tree as it is (tracked and untracked files, minus ignored ones such as
# target/) into WORK_DIR/tree.
snapshot() {
    rm -rf "$WORK_DIR/tree" "$WORK_DIR/stock"
    mkdir -p "$WORK_DIR/tree"
    (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard) |
        (cd "$ROOT" && tar --null --ignore-failed-read -T - -cf -) | tar -xf - -C "$WORK_DIR/tree"
    log "snapshot of $ROOT in $WORK_DIR/tree"
}

# cargo_dist DIR [ARGS...]: the dist build of keyway + bare-pingora in DIR, into
# PATCHED_TARGET_DIR; the binaries are copied to DIR/../bin.
cargo_dist() {
    local dir=$1
    shift
    log "building keyway + bare-pingora (--profile dist) in $dir into $PATCHED_TARGET_DIR"
    (cd "$dir" && CARGO_TARGET_DIR=$PATCHED_TARGET_DIR OPENSSL_NO_VENDOR=1 \
        cargo build --profile dist --bin keyway --example bare-pingora "$@") >&2
    mkdir -p "$dir/../bin"
    cp "$PATCHED_TARGET_DIR/dist/keyway" "$PATCHED_TARGET_DIR/dist/examples/bare-pingora" "$dir/../bin/"
}

# build_stock: the snapshot as it is, with the published Pingora (its own Cargo.lock, --locked).
build_stock() {
    rm -rf "$WORK_DIR/stock"
    mkdir -p "$WORK_DIR/stock"
    cp -r "$WORK_DIR/tree" "$WORK_DIR/stock/keyway"
    cargo_dist "$WORK_DIR/stock/keyway" --locked
    log "stock binaries: $WORK_DIR/stock/bin/keyway, $WORK_DIR/stock/bin/bare-pingora"
}

# build_patched SET_DIR: patched Pingora + a copy of the snapshot under SET_DIR/src.
build_patched() {
    local set_dir=$1 crate f
    rm -rf "$set_dir"
    mkdir -p "$set_dir/src"
    for crate in pingora-core pingora-proxy; do
        registry_crate "$crate"
        cp -r "$CRATE_DIR" "$set_dir/src/"
    done
    for f in "${PATCH_FILES[@]}"; do
        log "applying $(basename "$f")"
        patch -d "$set_dir/src" -p1 --forward --quiet <"$f" || die "$(basename "$f") does not apply"
    done
    cp -r "$WORK_DIR/tree" "$set_dir/src/keyway"
    # Not --locked: the [patch] turns the two crates into path dependencies in the copy's lock.
    cargo_dist "$set_dir/src/keyway" \
        --config "patch.crates-io.pingora-core.path=\"$set_dir/src/pingora-core-$PINGORA_VERSION\"" \
        --config "patch.crates-io.pingora-proxy.path=\"$set_dir/src/pingora-proxy-$PINGORA_VERSION\""
    # A patch that cargo silently ignored would make the whole A/B meaningless.
    ! grep -A2 '^name = "pingora-core"' "$set_dir/src/keyway/Cargo.lock" | grep -q '^source' ||
        die "cargo did not use the patched pingora-core (see $set_dir/src/keyway/Cargo.lock)"
    log "patched binaries: $set_dir/src/bin/keyway, $set_dir/src/bin/bare-pingora"
}

# swap_pairs TARGETS: keyway<->base, keyway_key<->base_key, in place.
swap_pairs() {
    local t out=()
    for t in $1; do
        case $t in
            keyway) out+=(base) ;; base) out+=(keyway) ;;
            keyway_key) out+=(base_key) ;; base_key) out+=(keyway_key) ;;
            *) out+=("$t") ;;
        esac
    done
    echo "${out[*]}"
}

# run_once TARGETS OUT: one run.sh run, under LOCK_FILE when set.
run_once() {
    local targets=$1 out=$2 cmd
    cmd=(env NO_BUILD=1 KEYWAY_BIN="$PATCHED_BIN/keyway" BASELINE_BIN="$PATCHED_BIN/keyway-stock"
        BARE_BIN="$PATCHED_BIN/bare-pingora" TARGETS="$targets" ROUNDS="$ROUNDS"
        DURATION="$DURATION" PHASES="$PHASES" OUT="$out" "$HERE/run.sh")
    # run.sh's own report goes to stderr with its log; stdout carries the summary below
    log "run: TARGETS=\"$targets\" ROUNDS=$ROUNDS DURATION=$DURATION PHASES=\"$PHASES\" -> $out"
    if [[ -n ${LOCK_FILE:-} ]]; then
        flock "$LOCK_FILE" "${cmd[@]}" >&2
    else
        "${cmd[@]}" >&2
    fi
    echo "== patches: $PATCHES; TARGETS=\"$targets\" ($out)"
    # the medians table only (the per-round table follows under the next heading)
    awk '/^## / { n++ } n == 1 && /^\| (keyway|base|keyway_key|base_key) \|/' "$out"
    grep -E '^- (keyway/base|keyway_key/base_key) ' "$out" |
        sed 's|(this build / BASELINE_BIN)|(patched / stock)|'
}

SET_DIR=$WORK_DIR/$(printf '%s' "$PATCHES" | tr -d ' ')
PATCHED_BIN=$SET_DIR/src/bin
if [[ -z ${NO_BUILD:-} ]]; then
    if [[ -z ${REUSE_TREE:-} || ! -d $WORK_DIR/tree ]]; then
        snapshot
    fi
    if [[ -z ${STOCK_BIN:-} && ! -x $WORK_DIR/stock/bin/keyway ]]; then
        build_stock
    fi
    build_patched "$SET_DIR"
    if [[ -z ${STOCK_BIN:-} ]]; then
        # the stock build of the same snapshot travels with the patched binaries
        cp "$WORK_DIR/stock/bin/keyway" "$PATCHED_BIN/keyway-stock"
    fi
fi
[[ -x $PATCHED_BIN/keyway ]] || die "$PATCHED_BIN/keyway is missing (build without NO_BUILD)"
if [[ -n ${STOCK_BIN:-} ]]; then
    [[ -x $STOCK_BIN ]] || die "STOCK_BIN=$STOCK_BIN is not an executable"
    cp "$STOCK_BIN" "$PATCHED_BIN/keyway-stock"
fi
[[ -x $PATCHED_BIN/keyway-stock ]] || die "no stock binary for $SET_DIR (build without NO_BUILD, or set STOCK_BIN)"
[[ -z ${NO_RUN:-} ]] || exit 0

mkdir -p "$WORK_DIR/results"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
run_once "$TARGETS" "$WORK_DIR/results/${SET_DIR##*/}-$stamp-1.md"
if [[ -n ${SWAP:-} ]]; then
    run_once "$(swap_pairs "$TARGETS")" "$WORK_DIR/results/${SET_DIR##*/}-$stamp-2.md"
fi
