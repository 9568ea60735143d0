#!/usr/bin/env bash
# Runs the whole test suite: installs what is missing, starts the services the tests need,
# then runs every test of the workspace. CI runs exactly this (after fmt and clippy).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The chart: installs a pinned helm when missing, then helm lint and helm template.
scripts/helm.sh
cargo test --workspace --locked --all-targets "$@"
