#!/usr/bin/env bash
# `exec <running container> true` end to end through the CLI, berth vs docker.
# DOCKER_BENCH_HOST picks a dockerd another user already runs (default: docker's own default);
# bench/dockerd.sh starts one on a bridge of its own. The load average before and after the
# run goes under the table (the machine is shared).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_tools
start_daemon
"$TEST_IMAGE" busybox -o "$BENCH_DIR/busybox.tar"
$B load -i "$BENCH_DIR/busybox.tar" >/dev/null || die "berth load failed"
$B run -d --name bench-exec busybox sleep 3600 >/dev/null
args=(-N --warmup 5 --runs "${RUNS:-50}" --export-markdown "$RESULTS/exec.md" -n berth "$B exec bench-exec true")
D="env DOCKER_HOST=$DK_HOST docker"
if $D version --format '{{.Server.Version}}' >/dev/null 2>&1; then
    $D load -i "$BENCH_DIR/busybox.tar" >/dev/null
    $D rm -f berth-bench-exec >/dev/null 2>&1 || true
    $D run -d --name berth-bench-exec busybox sleep 3600 >/dev/null
    args+=(-n docker "$D exec berth-bench-exec true")
else
    echo "bench: no dockerd answering: docker's figure skipped"
fi
before=$(cut -d" " -f1-3 /proc/loadavg)
hyperfine "${args[@]}"
printf '\nload average before %s, after %s (%s)\n' "$before" "$(cut -d" " -f1-3 /proc/loadavg)" \
    "$(date -u +%Y-%m-%dT%H:%MZ)" >>"$RESULTS/exec.md"
$D rm -f berth-bench-exec >/dev/null 2>&1 || true
