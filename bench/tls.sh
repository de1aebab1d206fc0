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

# hyperfine runs one command's rounds, then the other's: a change of load between the two
# blocks shows as a difference. Paired rounds (both commands per round, order alternating) give
# the cost of TLS itself with a confidence interval.
{
    echo
    echo "Paired rounds, berth CLI:"
    echo
    python3 "$(dirname "$0")/paired.py" "${PAIRED_RUNS:-1000}" \
        "berth ps -a (unix socket)" "env DOCKER_HOST=$HOST $BERTH ps -a" \
        "berth ps -a (TLS)" "$tls_env $BERTH ps -a"
} | tee -a "$RESULTS/tls.md"

# Wall-clock figures on a shared, loaded machine are mostly scheduling delay. CPU time is not:
# per `ps`, the client's (rusage of the children) and the daemon's (/proc/<pid>/stat), each
# variant run CPU_RUNS times. On an idle machine the wall-clock cost of TLS is about this CPU
# cost plus one loopback round trip.
python3 - "$DAEMON_PID" "${CPU_RUNS:-300}" "$HOST" "tcp://127.0.0.1:$port" "$certs" "$BERTH" <<'PY' | tee -a "$RESULTS/tls.md"
import os, resource, shutil, subprocess, sys
pid, n, unix, tcp, certs, berth = int(sys.argv[1]), int(sys.argv[2]), *sys.argv[3:]
tls = [f"DOCKER_HOST={tcp}", "DOCKER_TLS_VERIFY=1", f"DOCKER_CERT_PATH={certs}/tls"]
cfg = f"DOCKER_CONFIG={certs}/dc"
runs = [("berth ps -a (unix socket)", ["env", f"DOCKER_HOST={unix}", berth, "ps", "-a"]),
        ("berth ps -a (TLS)", ["env", *tls, berth, "ps", "-a"])]
if shutil.which("docker"):
    runs += [("docker ps -a (unix socket)", ["env", f"DOCKER_HOST={unix}", cfg, "docker", "ps", "-a"]),
             ("docker ps -a (TLS)", ["env", *tls, cfg, "docker", "ps", "-a"])]
tick = os.sysconf("SC_CLK_TCK")
def daemon_cpu():
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / tick
def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime
print()
print(f"CPU time per command, {n} runs each (load {open('/proc/loadavg').read().split()[0]}):")
print()
print("| Command | client CPU [ms] | daemon CPU [ms] | total [ms] |")
print("|:---|---:|---:|---:|")
for name, cmd in runs:
    c0, d0 = children_cpu(), daemon_cpu()
    for _ in range(n):
        subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
    c, d = (children_cpu() - c0) / n * 1000, (daemon_cpu() - d0) / n * 1000
    print(f"| `{name}` | {c:.2f} | {d:.2f} | {c + d:.2f} |")
PY
