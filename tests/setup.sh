#!/usr/bin/env bash
# Installs what keyway's build, load tests and interop tests need. Idempotent:
# apt packages only when missing, the Python venv only when its requirements change.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${KEYWAY_CACHE:-$HOME/.cache/keyway}"
venv="$cache/venv"
reqs="$here/interop/requirements.txt"
python="${PYTHON:-python3}"

say() { echo "setup: $*"; }
die() { echo "setup: ERROR: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || SUDO=sudo
SUDO="${SUDO:-}"

# A trial venv is the only reliable test: Debian's python3 has a venv module
# whose ensurepip is removed unless python3-venv is installed.
venv_works() {
    local t
    t="$(mktemp -d)"
    "$python" -m venv "$t/v" >/dev/null 2>&1
    local rc=$?
    rm -rf "$t"
    return $rc
}

# postgresql (Debian's PostgreSQL 15): the throwaway database servers of the end-to-end tests
# (tests/common/postgres.rs), each on its own port and temporary directory.
# prometheus (Debian's 2.42): promtool checks and unit-tests conf/prometheus, and the server
# scrapes two keyways in tests/interop/test_deploy.py.
# openssl (the CLI) and curl: the TLS tests make their certificates with one and speak HTTP/2
# and HTTP/1.1 with the other (tests/tls.rs, tests/shutdown.rs, tests/interop/test_tls_sdk.py).
# nghttp2-client (h2load): the load test's HTTP/2 targets (loadtest/run.sh keyway_h2, nginx_h2)
# and loadtest/instructions.sh's client; valgrind (callgrind): that script's instruction counts.
want=(cmake pkg-config libssl-dev perl make gcc nginx-light wrk postgresql prometheus openssl curl nghttp2-client valgrind)
if [ -x "$venv/bin/python" ]; then
    : # an existing venv proves venv support
elif ! venv_works; then
    want+=(python3-venv)
fi
# Node.js runs the OpenID provider of the JWT interop tests (tests/interop/oidc).
command -v node >/dev/null && command -v npm >/dev/null || want+=(nodejs npm)

missing=()
for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
    command -v apt-get >/dev/null || die "apt-get not found; install manually: ${missing[*]}"
    say "installing ${missing[*]}"
    # Keep the package scripts from starting a system nginx, PostgreSQL (Debian's `main`
    # cluster on 5432) or Prometheus (:9090): the tests run their own on ephemeral ports.
    prc=/usr/sbin/policy-rc.d
    if [ -e "$prc" ]; then
        $SUDO mv "$prc" "$prc.keyway-saved"
        trap '$SUDO mv -f "$prc.keyway-saved" "$prc"' EXIT
    else
        trap '$SUDO rm -f "$prc"' EXIT
    fi
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$prc" >/dev/null
    $SUDO chmod 755 "$prc"

    $SUDO apt-get update -qq || die "apt-get update failed"
    $SUDO env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || die "apt-get install failed for: ${missing[*]}"

    if [[ " ${missing[*]} " == *" nginx-light "* ]] && [ -d /run/systemd/system ]; then
        $SUDO systemctl disable --now nginx >/dev/null 2>&1 || true
    fi
    if [[ " ${missing[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
        $SUDO systemctl disable --now prometheus prometheus-node-exporter >/dev/null 2>&1 || true
    fi
else
    say "system packages present"
fi

command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || die "nginx binary not found after install"
command -v wrk >/dev/null || die "wrk not found after install"
pg_bin=/usr/lib/postgresql/15/bin
[ -x "$pg_bin/initdb" ] || die "$pg_bin/initdb not found after install: the tests need PostgreSQL 15 (Debian's postgresql package)"
command -v promtool >/dev/null || die "promtool not found after install (Debian's prometheus package)"
command -v prometheus >/dev/null || die "prometheus not found after install (Debian's prometheus package)"

[ -f "$reqs" ] || die "missing $reqs"
# The stamp covers the interpreter too, so a Python upgrade rebuilds the venv.
stamp_val="$({ cat "$reqs"; "$python" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)"
stamp="$venv/.keyway-requirements.sha256"

if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$stamp_val" ]; then
    say "python venv up to date: $venv"
else
    say "building python venv: $venv"
    rm -rf "$venv"
    mkdir -p "$cache"
    "$python" -m venv "$venv" || die "could not create venv at $venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$reqs" \
        || die "pip install -r $reqs failed"
    echo "$stamp_val" > "$stamp"
fi

"$venv/bin/python" -c 'import openai, portkey_ai, pytest, boto3, jwt, moto, ministack, hvac, yaml' \
    || die "venv is missing a package"
# The AWS emulators the entraFederated interop tests start (tests/interop/aws_servers.py).
# kubernetes-validate checks conf/k8s against Kubernetes' own schemas (test_deploy.py).
for tool in ministack moto_server kubernetes-validate; do
    [ -x "$venv/bin/$tool" ] || die "venv is missing the $tool command"
done
# oidc-provider (npm, OpenID Certified) for the JWT interop tests, pinned by
# tests/interop/oidc/package-lock.json and installed outside the repository; reinstalled only
# when the lock file changes.
oidc_src="$here/interop/oidc"
oidc="$cache/oidc"
node_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
[ "$node_major" -ge 20 ] || die "Node.js 20 or later is needed for oidc-provider (found: $(node --version 2>/dev/null || echo none))"
oidc_stamp_val="$(cat "$oidc_src/package.json" "$oidc_src/package-lock.json" | sha256sum | cut -d' ' -f1)"
oidc_stamp="$oidc/.keyway-lock.sha256"
if [ -d "$oidc/node_modules/oidc-provider" ] && [ "$(cat "$oidc_stamp" 2>/dev/null)" = "$oidc_stamp_val" ]; then
    say "oidc-provider up to date: $oidc"
else
    say "installing oidc-provider into $oidc"
    mkdir -p "$oidc"
    cp "$oidc_src/package.json" "$oidc_src/package-lock.json" "$oidc/"
    npm ci --prefix "$oidc" --no-audit --no-fund --loglevel=error >/dev/null \
        || die "npm ci --prefix $oidc failed"
    echo "$oidc_stamp_val" > "$oidc_stamp"
fi
node --input-type=module -e "await import('$oidc/node_modules/oidc-provider/lib/index.js')" 2>/dev/null \
    || die "oidc-provider in $oidc does not load"

# rusty_vault (crates.io; binary rvault): the Vault API server of the secret-manager interop
# tests (tests/interop/vault_server.py). No HashiCorp Vault or OpenBao binary is in any registry
# reachable here. Built from source (~8 min) into the cache, outside the clone, with its own
# target directory; rebuilt only when missing or of another version.
rvault_version=0.2.1
tools="$cache/tools"
rvault="$tools/bin/rvault"
rvault_installed() {
    # `rvault --version` prints "rusty_vault 0.2.1"; cargo's .crates.toml says the same.
    [ -x "$rvault" ] && [ "$("$rvault" --version 2>/dev/null)" = "rusty_vault $rvault_version" ]
}
if rvault_installed; then
    say "rusty_vault $rvault_version present: $rvault"
else
    command -v cargo >/dev/null || die "cargo not found: needed to build rusty_vault"
    say "building rusty_vault $rvault_version into $tools (takes ~8 min)"
    mkdir -p "$tools"
    CARGO_TARGET_DIR="$cache/tools-target" \
        cargo install --locked --quiet rusty_vault --version "$rvault_version" --root "$tools" --force \
        || die "cargo install rusty_vault $rvault_version failed"
    rvault_installed || die "$rvault does not report rusty_vault $rvault_version"
fi

say "ok (run interop tests: $venv/bin/python -m pytest tests/interop -q)"
