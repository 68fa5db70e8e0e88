#!/usr/bin/env bash
# Runs every keyway test: installs what is missing (tests/setup.sh), then the Rust unit and
# in-process end-to-end tests, then the interop suite (real OpenAI and Portkey SDKs against
# the built binary). The target directory and the venv live in a cache outside the clone
# (KEYWAY_CACHE, default ~/.cache/keyway) so reruns are incremental.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cache="${KEYWAY_CACHE:-$HOME/.cache/keyway}"

bash tests/setup.sh

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
# Link the system OpenSSL (libssl-dev from setup.sh) instead of compiling a vendored copy.
export OPENSSL_NO_VENDOR=1

# Every keyway log of this run is scanned for secrets at the end: start from an empty folder.
rm -rf "$CARGO_TARGET_DIR/tmp/keyway-logs"

echo "== cargo test (unit + end-to-end)"
# Tests that use the emulators setup.sh installed must run here, not skip.
KEYWAY_REQUIRE_INTEROP=1 cargo test --release --locked

echo "== interop (OpenAI and Portkey SDKs against the built binary)"
# The binary cargo test built for the end-to-end tests. A separate `cargo build --bin keyway`
# would compile Pingora, the AWS SDK and keyway a second time: dev-dependencies' features are
# unified into test builds only, so the two builds differ.
bin="$CARGO_TARGET_DIR/release/keyway"
[ -x "$bin" ] || { echo "run.sh: cargo test left no keyway binary at $bin" >&2; exit 1; }
# The last interop test scans every keyway log of this run (Rust and interop) for every secret
# the tests handed to keyway.
KEYWAY_BIN="$bin" \
KEYWAY_LOG_DIRS="$CARGO_TARGET_DIR/tmp/keyway-logs" \
    "$cache/venv/bin/python" -m pytest tests/interop -q -p no:cacheprovider
