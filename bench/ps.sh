#!/usr/bin/env bash
# `ps -a` with 100 containers.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_tools
start_daemon
load_busybox
label=berth-bench-ps=$$
for i in $(seq 100); do $B create -l "$label" busybox true >/dev/null; done
args=(-N --warmup 3 --runs "${RUNS:-30}" --export-markdown "$RESULTS/ps.md" -n berth "$B ps -a")
if docker_available; then
    for i in $(seq 100); do DOCKER_HOST=$DK_HOST docker create -l "$label" busybox true >/dev/null; done
    args+=(-n docker "env DOCKER_HOST=$DK_HOST docker ps -a")
else
    echo "bench: no dockerd answering: docker's figure skipped"
fi
hyperfine "${args[@]}"
if docker_available; then
    DOCKER_HOST=$DK_HOST docker ps -aq -f "label=$label" | xargs -r env DOCKER_HOST=$DK_HOST docker rm -f >/dev/null
fi
