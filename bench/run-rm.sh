#!/usr/bin/env bash
# `run --rm busybox true` end to end through the CLI.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_tools
start_daemon
load_busybox
args=(-N --warmup 3 --runs "${RUNS:-30}" --export-markdown "$RESULTS/run-rm.md" -n berth "$B run --rm busybox true")
if docker_available; then
    args+=(-n docker "env DOCKER_HOST=$DK_HOST docker run --rm busybox true")
else
    echo "bench: no dockerd answering: docker's figure skipped"
fi
hyperfine "${args[@]}"
