# shellcheck shell=bash
# Shared helpers for scripts/kafka.sh and scripts/cassandra.sh.
#
# Sourced, never executed. Each service script sets SERVICE (a short name, used
# in messages and as the marker in the JVM's command line) before calling these.
#
# Layout (all overridable through the environment):
#   KOLBAK_SERVICES_DIR  cache root, default $HOME/.cache/kolbak-services
#     <name>-<version>/lib     jars assembled by Maven (reused once complete)
#     state/<name>/            config, data, pid file and log of the running server

set -euo pipefail

KOLBAK_SERVICES_DIR="${KOLBAK_SERVICES_DIR:-$HOME/.cache/kolbak-services}"

log() { printf '[%s] %s\n' "${SERVICE:-services}" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

require_cmd() {
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 || die "'$c' is required but not on PATH"
    done
}

now_s() { date +%s; }

# ---------------------------------------------------------------------------
# Java
# ---------------------------------------------------------------------------

# java_major <java-binary> -> prints the major version (8, 11, 17, 21, ...)
java_major() {
    local v
    v="$("$1" -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2; exit}')"
    v="${v#1.}"
    printf '%s\n' "${v%%.*}"
}

# find_java <allowed-majors...> -> prints the path of a java binary whose major
# version is one of the allowed ones. Order of preference: $<SERVICE>_JAVA (as
# passed in $SERVICE_JAVA), $JAVA_HOME/bin/java, java on PATH, then the
# alternatives registered with update-alternatives (Debian).
find_java() {
    local allowed=" $* " cand major
    local -a cands=()
    [[ -n "${SERVICE_JAVA:-}" ]] && cands+=("$SERVICE_JAVA")
    [[ -n "${JAVA_HOME:-}" ]] && cands+=("$JAVA_HOME/bin/java")
    command -v java >/dev/null 2>&1 && cands+=("$(command -v java)")
    if command -v update-alternatives >/dev/null 2>&1; then
        while IFS= read -r cand; do cands+=("$cand"); done \
            < <(update-alternatives --list java 2>/dev/null || true)
    fi
    for cand in "${cands[@]}"; do
        [[ -x "$cand" ]] || continue
        major="$(java_major "$cand" 2>/dev/null || true)"
        if [[ -n "$major" && "$allowed" == *" $major "* ]]; then
            printf '%s\n' "$cand"
            return 0
        fi
    done
    die "no Java with major version in {$*} found (tried: ${cands[*]:-none}); set JAVA_HOME"
}

# ---------------------------------------------------------------------------
# Maven assembly of a lib dir
# ---------------------------------------------------------------------------

# mvn_fetch_libs <lib-dir> <dependencies-xml>
# Writes a throwaway pom.xml with the given <dependency> elements and copies the
# runtime closure into <lib-dir>. Does nothing when <lib-dir>/.complete exists.
# The copy goes to a temporary sibling first and is renamed into place, so an
# interrupted run never leaves a half-filled lib dir behind.
MVN_DEPENDENCY_PLUGIN="${MVN_DEPENDENCY_PLUGIN:-org.apache.maven.plugins:maven-dependency-plugin:3.6.1}"
mvn_fetch_libs() {
    local lib_dir="$1" deps="$2"
    if [[ -f "$lib_dir/.complete" ]]; then
        return 0
    fi
    require_cmd mvn
    local parent work t0
    parent="$(dirname "$lib_dir")"
    mkdir -p "$parent"
    work="$(mktemp -d "$parent/.assemble.XXXXXX")"
    cat >"$work/pom.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<project>
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.kolbak.services</groupId>
  <artifactId>${SERVICE:-service}-assembly</artifactId>
  <version>0</version>
  <packaging>pom</packaging>
  <dependencies>
${deps}
  </dependencies>
</project>
EOF
    log "assembling $(basename "$parent") with Maven (first run only) ..."
    t0="$(now_s)"
    if ! (cd "$work" && mvn -q -B -f pom.xml \
            "${MVN_DEPENDENCY_PLUGIN}:copy-dependencies" \
            -DincludeScope=runtime \
            -DoutputDirectory="$work/lib" \
            -Dmdep.useRepositoryLayout=false >"$work/mvn.log" 2>&1); then
        tail -n 40 "$work/mvn.log" >&2 || true
        rm -rf "$work"
        die "Maven could not assemble $(basename "$parent")"
    fi
    touch "$work/lib/.complete"
    rm -rf "$lib_dir"
    mv "$work/lib" "$lib_dir"
    rm -rf "$work"
    log "assembled $(find "$lib_dir" -name '*.jar' | wc -l) jars into $lib_dir in $(( $(now_s) - t0 )) s"
}

# ---------------------------------------------------------------------------
# Processes and ports
# ---------------------------------------------------------------------------

# pid_alive <pid-file> <marker> -> true when the pid in the file is a live
# process whose command line contains <marker> (guards against pid reuse).
pid_alive() {
    local pidfile="$1" marker="$2" pid
    [[ -f "$pidfile" ]] || return 1
    pid="$(cat "$pidfile" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [[ -r "/proc/$pid/cmdline" ]] || return 1
    # zombies still have a /proc entry
    if [[ "$(awk '/^State:/ {print $2}' "/proc/$pid/status" 2>/dev/null)" == "Z" ]]; then
        return 1
    fi
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$marker"
}

read_pid() { cat "$1" 2>/dev/null || true; }

# port_open <host> <port> -> true when a TCP connect succeeds.
port_open() {
    local host="$1" port="$2"
    timeout 2 bash -c "exec 3<>/dev/tcp/$host/$port" >/dev/null 2>&1
}

# stop_pid <pid-file> <marker> <grace-seconds>
# SIGTERM, wait up to <grace-seconds>, then SIGKILL. Removes the pid file.
stop_pid() {
    local pidfile="$1" marker="$2" grace="$3" pid i
    if ! pid_alive "$pidfile" "$marker"; then
        rm -f "$pidfile"
        return 0
    fi
    pid="$(read_pid "$pidfile")"
    log "stopping pid $pid (SIGTERM, up to ${grace}s) ..."
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 4; i++)); do
        pid_alive "$pidfile" "$marker" || break
        sleep 0.25
    done
    if pid_alive "$pidfile" "$marker"; then
        log "pid $pid still alive after ${grace}s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 40; i++)); do
            pid_alive "$pidfile" "$marker" || break
            sleep 0.25
        done
    fi
    pid_alive "$pidfile" "$marker" && die "could not stop pid $pid"
    rm -f "$pidfile"
    log "stopped"
}

# start_bg <pid-file> <log-file> <cmd...>
# Starts <cmd> detached (own session, stdin from /dev/null, stdout+stderr to
# <log-file>, immune to SIGHUP) and records its pid. The previous log is kept
# as <log-file>.1 so readiness checks only ever see the current run's lines.
start_bg() {
    local pidfile="$1" logfile="$2"
    shift 2
    [[ -f "$logfile" ]] && mv -f "$logfile" "$logfile.1"
    # setsid does not fork here (a child of a non-interactive shell is not a
    # process-group leader), so $! is the JVM's own pid.
    # The service lock's fd (see acquire_lock) must not leak into the server,
    # or the lock would stay held for as long as the server runs.
    if [[ -n "${KOLBAK_LOCK_FD:-}" ]]; then
        nohup setsid "$@" >"$logfile" 2>&1 </dev/null {KOLBAK_LOCK_FD}>&- &
    else
        nohup setsid "$@" >"$logfile" 2>&1 </dev/null &
    fi
    echo $! >"$pidfile"
}

# print_log_tail <log-file> [lines]
print_log_tail() {
    local logfile="$1" n="${2:-60}"
    if [[ -f "$logfile" ]]; then
        echo "----- last $n lines of $logfile -----" >&2
        tail -n "$n" "$logfile" >&2 || true
        echo "----- end of $logfile -----" >&2
    else
        echo "(no log file at $logfile)" >&2
    fi
}

# wait_ready <pid-file> <marker> <log-file> <timeout-s> <log-regex> <host> <port>
# Waits until the log matches <log-regex> (grep -E) AND <host>:<port> accepts
# connections. Fails early when the process dies. On failure prints the log tail
# and returns 1.
wait_ready() {
    local pidfile="$1" marker="$2" logfile="$3" timeout_s="$4" regex="$5" host="$6" port="$7"
    local deadline logged=0
    deadline=$(( $(now_s) + timeout_s ))
    while :; do
        if ! pid_alive "$pidfile" "$marker"; then
            log "process exited before becoming ready"
            print_log_tail "$logfile" 80
            return 1
        fi
        if (( ! logged )) && grep -qE -- "$regex" "$logfile" 2>/dev/null; then
            logged=1
        fi
        if (( logged )) && port_open "$host" "$port"; then
            return 0
        fi
        if (( $(now_s) >= deadline )); then
            log "not ready after ${timeout_s}s (log line seen: $logged)"
            print_log_tail "$logfile" 80
            return 1
        fi
        sleep 0.5
    done
}

# acquire_lock <lock-file> -> takes an exclusive flock held until the script
# exits, so two concurrent invocations for the same service do not race.
acquire_lock() {
    local lockfile="$1"
    mkdir -p "$(dirname "$lockfile")"
    exec {KOLBAK_LOCK_FD}>"$lockfile"
    flock -w 900 "$KOLBAK_LOCK_FD" || die "timed out waiting for lock $lockfile"
}

# rss_kb <pid> -> resident set size in KiB
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# ensure_ports_free <host> <port...> -> dies when any port is already taken
# (by a process that is not the one this script manages).
ensure_ports_free() {
    local host="$1" p
    shift
    for p in "$@"; do
        if port_open "$host" "$p"; then
            die "port $host:$p is already in use by another process (not started by this script); stop it or pick another port"
        fi
    done
}
