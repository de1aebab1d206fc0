#!/usr/bin/env bash
# A second dockerd for the pull benchmark, with its data root on the benchmark's ext4 loop fs,
# no bridge and no iptables (it only pulls), so it can run beside another dockerd.
#   start: bash bench/dockerd-on-fs.sh start   (prints the BENCH_DOCKER_HOST to export)
#   stop:  bash bench/dockerd-on-fs.sh stop
set -euo pipefail
CACHE=${BENCH_CACHE:-/var/tmp/berth-bench}
FS=$CACHE/fs
run=$CACHE/dockerd
case "${1:-}" in
start)
    mountpoint -q "$FS" || { echo "mount the benchmark fs first (bench/pull.sh does)" >&2; exit 1; }
    mkdir -p "$run"
    dockerd -H "unix://$run/docker.sock" --data-root "$FS/docker" --exec-root "$run/exec" \
        -p "$run/docker.pid" --bridge none --iptables=false --ip-masq=false \
        >"$run/dockerd.log" 2>&1 &
    for _ in $(seq 100); do
        DOCKER_HOST=unix://$run/docker.sock docker version >/dev/null 2>&1 && break
        sleep 0.1
    done
    echo "export BENCH_DOCKER_HOST=unix://$run/docker.sock"
    ;;
stop)
    [ -f "$run/docker.pid" ] && kill "$(cat "$run/docker.pid")" 2>/dev/null || true
    ;;
*) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
