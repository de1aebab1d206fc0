# Shared helpers of Berth's benchmarks (sourced, not run). Needs: hyperfine, curl.
# shellcheck shell=bash

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BERTH=${BERTH:-$REPO/target/release/berth}
TEST_IMAGE=${TEST_IMAGE:-$REPO/target/release/berth-test-image}
RESULTS=${RESULTS:-$REPO/bench/results}
mkdir -p "$RESULTS"

die() { echo "bench: $*" >&2; exit 1; }

# The dockerd to compare with: bench/dockerd.sh's (it prints both names) or docker's default.
DK_HOST=${BENCH_DOCKER_HOST:-${DOCKER_BENCH_HOST:-}}

need_tools() {
    for t in hyperfine curl; do
        command -v "$t" >/dev/null || die "$t is missing (apt-get install $t)"
    done
    if [ ! -x "$BERTH" ] || [ ! -x "$TEST_IMAGE" ]; then
        (cd "$REPO" && cargo build --release -p berth -p berth-testkit) || die "build failed"
    fi
}

# wait_ping SOCKET [SECONDS]: polls GET /_ping until it answers.
wait_ping() {
    local sock=$1 deadline=$(( $(date +%s%N) + ${2:-10} * 1000000000 ))
    until curl -sf --unix-socket "$sock" http://berth/_ping >/dev/null 2>&1; do
        [ "$(date +%s%N)" -lt "$deadline" ] || return 1
        sleep 0.002
    done
}

# Whether a docker daemon answers on its default socket (the docker figures are skipped otherwise).
# BENCH_DOCKER_HOST picks another dockerd (e.g. one whose data root is on the benchmark's fs).
docker_available() {
    command -v docker >/dev/null && DOCKER_HOST=$DK_HOST docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}

# purge DIR: kills shims and container processes under DIR, unmounts everything under it, removes it.
purge() {
    local dir=$1 f p m
    for f in "$dir"/exec/containers/*/shim.pid; do
        if [ -f "$f" ]; then kill -9 "$(cat "$f")" 2>/dev/null || true; fi
    done
    for p in /proc/[0-9]*; do
        case "$(readlink "$p/root" 2>/dev/null || true)$(readlink "$p/cwd" 2>/dev/null || true)" in
            *"$dir"*) kill -9 "${p#/proc/}" 2>/dev/null || true ;;
        esac
    done
    for _ in 1 2 3; do
        for m in $(awk -v d="$dir" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r); do
            umount -l "$m" 2>/dev/null || true
        done
    done
    rm -rf "$dir"
}

# start_daemon [DAEMON FLAGS...]: a berth daemon on fresh temp roots (plus the flags given);
# sets BENCH_DIR, SOCK, HOST, DAEMON_PID, B (the CLI).
start_daemon() {
    BENCH_DIR=$(mktemp -d "${BENCH_TMP:-/tmp}/bb.XXXXXX")
    SOCK=$BENCH_DIR/berth.sock
    HOST=unix://$SOCK
    # A bridge of its own and an empty config file: no clash with another daemon on this host.
    BENCH_BRIDGE=${BENCH_BRIDGE_NAME:-bb$(($$ % 100000))}
    echo '{}' >"$BENCH_DIR/daemon.json"
    "$BERTH" daemon -H "$HOST" --config-file "$BENCH_DIR/daemon.json" --bridge "$BENCH_BRIDGE" \
        --data-root "$BENCH_DIR/data" --exec-root "$BENCH_DIR/exec" "$@" \
        >"$BENCH_DIR/daemon.log" 2>&1 &
    DAEMON_PID=$!
    wait_ping "$SOCK" 10 || { cat "$BENCH_DIR/daemon.log" >&2; die "daemon did not answer /_ping"; }
    B="$BERTH -H $HOST"
    trap stop_daemon EXIT
}

stop_daemon() {
    # Containers outlive their daemon (live restore): remove them first, and the bridge after.
    # Each step may fail (the daemon already removed its bridge): under `set -e` a failure must
    # not end the trap before the purge, or the temp roots stay behind.
    if [ -n "${DAEMON_PID:-}" ]; then
        $B ps -aq 2>/dev/null | xargs -r $B rm -f >/dev/null 2>&1 || true
        { kill "$DAEMON_PID" 2>/dev/null && wait "$DAEMON_PID" 2>/dev/null; } || true
    fi
    if [ -n "${BENCH_BRIDGE:-}" ]; then
        ip link del "$BENCH_BRIDGE" 2>/dev/null || true
        nft delete table ip "berth_$BENCH_BRIDGE" 2>/dev/null || true
    fi
    if [ -n "${BENCH_DIR:-}" ]; then purge "$BENCH_DIR"; fi
    DAEMON_PID= BENCH_DIR=
}

# load_busybox: builds the offline busybox image and loads it into berth (and docker when there).
load_busybox() {
    "$TEST_IMAGE" busybox -o "$BENCH_DIR/busybox.tar"
    $B load -i "$BENCH_DIR/busybox.tar" >/dev/null || die "berth load failed"
    if docker_available; then
        DOCKER_HOST=$DK_HOST docker load -i "$BENCH_DIR/busybox.tar" >/dev/null || die "docker load failed"
    fi
}

# rss_kb PID: resident set size in kB.
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo "?"; }
