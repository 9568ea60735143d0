#!/usr/bin/env bash
# Quick start: installs what is missing, builds Kolbak (release) and runs `kolbak standalone`
# on 127.0.0.1:8080 with its data in ./kolbak-data. Extra arguments go to `kolbak standalone`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked --bin kolbak
exec target/release/kolbak standalone "$@"
