#!/usr/bin/env bash
# Lints and renders the Helm chart charts/kolbak, installing a pinned helm first when missing.
#
#   scripts/helm.sh            install helm if needed, then `helm lint` and `helm template`
#                              (default values and every values override in charts/kolbak/ci/)
#   scripts/helm.sh install    only make sure the pinned helm is installed; print its path
#   scripts/helm.sh path       print the path of the helm binary the scripts use (no install)
#
# helm is built from the Go module proxy (`go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION`)
# into $KOLBAK_TOOLS_DIR/bin (default $HOME/.cache/kolbak-tools/bin); a helm already on PATH is
# used only when it is the pinned version. Installing is idempotent and needs Go >= the
# version helm's go.mod asks for (checked below; no toolchain download: GOTOOLCHAIN=local).
# helm lint and helm template need no cluster. Any failure exits non-zero.
#
# Environment: HELM_VERSION (default v3.22.0), KOLBAK_TOOLS_DIR, HELM (use this binary as is),
# KUBE_VERSION (the Kubernetes version templates render for, default 1.35.0; the chart needs
# >= 1.30).
set -euo pipefail
cd "$(dirname "$0")/.."

HELM_VERSION="${HELM_VERSION:-v3.22.0}"
# The `go` directive of helm's go.mod at HELM_VERSION (v3.22.0 needs Go 1.26).
HELM_GO_MIN="${HELM_GO_MIN:-1.26}"
KOLBAK_TOOLS_DIR="${KOLBAK_TOOLS_DIR:-$HOME/.cache/kolbak-tools}"
TOOLS_BIN="$KOLBAK_TOOLS_DIR/bin"
CHART=charts/kolbak
KUBE_VERSION="${KUBE_VERSION:-1.35.0}"

log() { printf '[helm] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# helm_version <binary> -> prints its version, e.g. v3.22.0 (empty when it does not run)
helm_version() { "$1" version --template '{{.Version}}' 2>/dev/null || true; }

# version_at_least <have> <want> -> true when dotted version have >= want
version_at_least() {
    [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" == "$2" ]]
}

# find_helm -> prints the path of a helm binary of the pinned version, if there is one
find_helm() {
    if [[ -n "${HELM:-}" ]]; then
        printf '%s\n' "$HELM"
        return 0
    fi
    local cand
    for cand in "$TOOLS_BIN/helm" "$(command -v helm 2>/dev/null || true)"; do
        [[ -n "$cand" && -x "$cand" ]] || continue
        if [[ "$(helm_version "$cand")" == "$HELM_VERSION" ]]; then
            printf '%s\n' "$cand"
            return 0
        fi
    done
    return 1
}

install_helm() {
    command -v go >/dev/null 2>&1 || die "helm $HELM_VERSION is missing and Go is not installed (apt-get install golang-go, or https://go.dev/dl/)"
    local go_version
    go_version="$(GOTOOLCHAIN=local go env GOVERSION)"
    go_version="${go_version#go}"
    version_at_least "$go_version" "$HELM_GO_MIN" \
        || die "helm $HELM_VERSION needs Go >= $HELM_GO_MIN, found $go_version; set HELM_VERSION to an older release or upgrade Go"
    mkdir -p "$TOOLS_BIN"
    log "installing helm $HELM_VERSION with Go $go_version into $TOOLS_BIN (first run only; takes a few minutes) ..."
    # Version information helm prints is normally set by its Makefile through -ldflags.
    local ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
    GOTOOLCHAIN=local GOBIN="$TOOLS_BIN" CGO_ENABLED=0 \
        go install -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" \
        || die "go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION failed"
    [[ "$(helm_version "$TOOLS_BIN/helm")" == "$HELM_VERSION" ]] \
        || die "installed helm reports version '$(helm_version "$TOOLS_BIN/helm")', expected $HELM_VERSION"
}

ensure_helm() {
    find_helm || { install_helm && printf '%s\n' "$TOOLS_BIN/helm"; }
}

check_chart() {
    local helm="$1" values
    local -a overrides=()
    while IFS= read -r values; do overrides+=("$values"); done \
        < <(find "$CHART/ci" -name '*-values.yaml' 2>/dev/null | sort)
    log "helm lint $CHART (helm $(helm_version "$helm"))"
    "$helm" lint --strict "$CHART" >&2
    log "helm template $CHART (Kubernetes $KUBE_VERSION)"
    "$helm" template kolbak "$CHART" --namespace kolbak --kube-version "$KUBE_VERSION" \
        --include-crds >/dev/null
    for values in "${overrides[@]}"; do
        log "helm lint + template $CHART -f $values"
        "$helm" lint --strict "$CHART" -f "$values" >&2
        "$helm" template kolbak "$CHART" --namespace kolbak --kube-version "$KUBE_VERSION" \
            --include-crds -f "$values" >/dev/null
    done
    log "chart OK (${#overrides[@]} values override(s) checked)"
}

case "${1:-check}" in
    check) check_chart "$(ensure_helm)" ;;
    install) ensure_helm ;;
    path) find_helm || die "helm $HELM_VERSION is not installed; run scripts/helm.sh install" ;;
    *) die "unknown command '$1' (expected: check, install, path)" ;;
esac
