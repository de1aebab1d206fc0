#!/usr/bin/env bash
# A dockerd (20.10 here) for the side-by-side benchmarks, on a bridge of its own (dkbench0), its
# own data/exec roots and socket, no iptables rules (the benchmarks publish no ports through it),
# so it disturbs neither berth's test daemons nor another dockerd.
#   start: bash bench/dockerd.sh start   (prints the DOCKER_BENCH_HOST / BENCH_DOCKER_HOST to export)
#   stop:  bash bench/dockerd.sh stop    (stops it and its containerd, removes the bridge)
set -euo pipefail
CACHE=${BENCH_CACHE:-/var/tmp/berth-bench}
run=$CACHE/dockerd-bridge
BR=dkbench0
case "${1:-}" in
start)
    mkdir -p "$run"
    ip link show "$BR" >/dev/null 2>&1 || {
        ip link add "$BR" type bridge
        ip addr add 172.31.251.1/24 dev "$BR"
        ip link set "$BR" up
    }
    sysctl -qw net.ipv4.ip_forward=1
    dockerd -H "unix://$run/docker.sock" --data-root "$run/data" --exec-root "$run/exec" \
        -p "$run/docker.pid" --bridge "$BR" --iptables=false --ip-masq=false \
        >"$run/dockerd.log" 2>&1 &
    for _ in $(seq 200); do
        DOCKER_HOST=unix://$run/docker.sock docker version >/dev/null 2>&1 && break
        sleep 0.1
    done
    DOCKER_HOST=unix://$run/docker.sock docker version --format '{{.Server.Version}}' >/dev/null ||
        { tail -20 "$run/dockerd.log" >&2; exit 1; }
    echo "export DOCKER_BENCH_HOST=unix://$run/docker.sock BENCH_DOCKER_HOST=unix://$run/docker.sock"
    ;;
stop)
    if [ -f "$run/docker.pid" ]; then
        pid=$(cat "$run/docker.pid")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    ip link del "$BR" 2>/dev/null || true
    ;;
*) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
