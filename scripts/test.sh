#!/usr/bin/env bash
# Runs the whole test suite: installs what is missing, starts the services the tests need,
# then runs every test of the workspace. CI runs exactly this (after fmt and clippy).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The chart: installs a pinned helm when missing, then helm lint and helm template.
scripts/helm.sh
# Real services for the integration tests (Kafka and Cassandra assembled from Maven Central
# jars, kube-apiserver and etcd built from Go modules; all cached).
scripts/kafka.sh up >/dev/null
scripts/cassandra.sh up >/dev/null
# A real kube-apiserver + etcd unless KUBECONFIG already names a cluster to test against.
if [[ -z "${KUBECONFIG:-}" ]]; then
    scripts/kube.sh up >/dev/null
    eval "$(scripts/kube.sh env)"
fi
export KOLBAK_KAFKA_BROKERS="${KOLBAK_KAFKA_BROKERS:-127.0.0.1:9092}"
export KOLBAK_CASSANDRA_NODES="${KOLBAK_CASSANDRA_NODES:-127.0.0.1:9042}"
cargo test --workspace --locked --all-targets "$@"
