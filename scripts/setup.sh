#!/usr/bin/env bash
# Installs what building and testing Kolbak needs, skipping whatever is already there.
# Safe to run any number of times. Needs a Rust toolchain (rustup) and, for missing Debian
# packages, root or sudo.
set -euo pipefail

log() { printf '[setup] %s\n' "$*" >&2; }

sudo_cmd() {
    if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

# Debian packages: a C toolchain for the bundled SQLite (and later librdkafka), cmake,
# pkg-config, Python for the official Standard Webhooks verifier, curl and jq for the quick start,
# Java 17 and Maven for the real Kafka and Cassandra servers, Go to build helm.
need_pkgs=()
for pair in cc:build-essential cmake:cmake pkg-config:pkg-config python3:python3 curl:curl jq:jq java:openjdk-17-jdk-headless mvn:maven go:golang-go; do
    cmd=${pair%%:*} pkg=${pair#*:}
    command -v "$cmd" >/dev/null 2>&1 || need_pkgs+=("$pkg")
done
if ! python3 -m pip --version >/dev/null 2>&1; then need_pkgs+=(python3-pip); fi
if ((${#need_pkgs[@]})); then
    log "installing Debian packages: ${need_pkgs[*]}"
    sudo_cmd apt-get update -qq
    sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

command -v cargo >/dev/null 2>&1 || { log "ERROR: cargo not found; install Rust with rustup first"; exit 1; }
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    log "adding rustfmt and clippy"
    rustup component add rustfmt clippy
fi

# The official Standard Webhooks verifier checks our signatures in the tests.
if ! python3 -c 'import standardwebhooks' >/dev/null 2>&1; then
    log "installing the standardwebhooks Python package"
    python3 -m pip install --quiet --disable-pip-version-check standardwebhooks 2>/dev/null \
        || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages standardwebhooks
fi
log "prerequisites present"
