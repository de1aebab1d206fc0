#!/usr/bin/env bash
# `ps -a` over TLS (tcp://127.0.0.1, --tlsverify, client certificates from
# `berth daemon --tls-generate`) beside the same over the unix socket: what TLS costs per
# round-trip. The berth CLI opens one connection per request (ping, then the list: two
# handshakes per command); the docker CLI keeps one connection (one handshake).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_tools
certs=$(mktemp -d /tmp/bt-certs.XXXXXX)
"$BERTH" daemon --tls-generate "$certs/tls" >/dev/null
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
start_daemon -H "tcp://127.0.0.1:$port" --tlsverify --tlscacert "$certs/tls/ca.pem" \
    --tlscert "$certs/tls/server-cert.pem" --tlskey "$certs/tls/server-key.pem"
trap 'stop_daemon; rm -rf "$certs"' EXIT
load_busybox
for _ in $(seq 10); do $B create busybox true >/dev/null; done
tls_env="env DOCKER_HOST=tcp://127.0.0.1:$port DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=$certs/tls DOCKER_CONFIG=$certs/dc"
# Both sides through `env`, so the extra exec is on both.
args=(-N --warmup 5 --runs "${RUNS:-50}" --export-markdown "$RESULTS/tls.md"
    -n "berth ps -a (unix socket)" "env DOCKER_HOST=$HOST $BERTH ps -a"
    -n "berth ps -a (TLS)" "$tls_env $BERTH ps -a")
if command -v docker >/dev/null; then
    # The docker CLI against the same Berth daemon: its client, one TLS connection per command.
    args+=(-n "docker ps -a (unix socket)" "env DOCKER_HOST=$HOST DOCKER_CONFIG=$certs/dc docker ps -a"
        -n "docker ps -a (TLS)" "$tls_env docker ps -a")
fi
echo "bench: load before: $(cut -d' ' -f1-3 /proc/loadavg)"
hyperfine "${args[@]}"
echo "bench: load after: $(cut -d' ' -f1-3 /proc/loadavg)"
