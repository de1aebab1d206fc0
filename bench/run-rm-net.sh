#!/usr/bin/env bash
# `run --rm busybox true` with the default bridge network and with `--network none`: what the
# network (netns + veth + address + route + /etc files, and the teardown) adds to a run. Docker
# beside it when a dockerd answers.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_tools
start_daemon
load_busybox
args=(-N --warmup 3 --runs "${RUNS:-40}" --export-markdown "$RESULTS/run-rm-net.md"
    -n "berth (bridge)" "$B run --rm busybox true"
    -n "berth (--network none)" "$B run --rm --network none busybox true")
if docker_available; then
    args+=(-n "docker (bridge)" "env DOCKER_HOST=$DK_HOST docker run --rm busybox true"
        -n "docker (--network none)" "env DOCKER_HOST=$DK_HOST docker run --rm --network none busybox true")
else
    echo "bench: no dockerd answering: docker's figures skipped"
fi
hyperfine "${args[@]}"
