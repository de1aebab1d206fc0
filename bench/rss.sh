#!/usr/bin/env bash
# Idle daemon RSS and shim RSS, from /proc.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_tools
start_daemon
load_busybox
sleep 1
daemon_rss=$(rss_kb "$DAEMON_PID")
id=$($B run -d busybox sleep 120)
sleep 0.5
shim_pid=$(cat "$BENCH_DIR/exec/containers/$id/shim.pid" 2>/dev/null || echo "")
shim_rss=$([ -n "$shim_pid" ] && rss_kb "$shim_pid" || echo "?")
$B rm -f "$id" >/dev/null
docker_daemon="skipped (no dockerd)"
docker_shim="skipped (no dockerd)"
if docker_available; then
    dpid=$(pidof dockerd | cut -d' ' -f1)
    docker_daemon="$(rss_kb "$dpid") kB (dockerd) + $(rss_kb "$(pidof containerd | cut -d' ' -f1)") kB (containerd)"
    did=$(DOCKER_HOST=$DK_HOST docker run -d busybox sleep 120)
    sleep 0.5
    spid=$(pgrep -f "containerd-shim-runc-v2.*$did" | head -n1 || true)
    docker_shim="$([ -n "$spid" ] && rss_kb "$spid" || echo "?") kB"
    DOCKER_HOST=$DK_HOST docker rm -f "$did" >/dev/null
fi
{
    echo "| what | berth | docker |"
    echo "|---|---|---|"
    echo "| idle daemon RSS | ${daemon_rss} kB | ${docker_daemon} |"
    echo "| shim RSS (one sleeping container) | ${shim_rss} kB | ${docker_shim} |"
} | tee "$RESULTS/rss.md"
