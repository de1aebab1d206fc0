#!/usr/bin/env bash
# `create busybox true` (the containers are removed afterwards).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_tools
start_daemon
load_busybox
label=berth-bench-create=$$
args=(-N --warmup 3 --runs "${RUNS:-30}" --export-markdown "$RESULTS/create.md" -n berth "$B create -l $label busybox true")
if docker_available; then
    args+=(-n docker "env DOCKER_HOST=$DK_HOST docker create -l $label busybox true")
else
    echo "bench: no dockerd answering: docker's figure skipped"
fi
hyperfine "${args[@]}"
if docker_available; then
    DOCKER_HOST=$DK_HOST docker ps -aq -f "label=$label" | xargs -r env DOCKER_HOST=$DK_HOST docker rm -f >/dev/null
fi
