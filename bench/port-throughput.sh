#!/usr/bin/env bash
# Throughput through a published port: iperf3 (Debian's) runs as the server in a container
# published with `-p`, the client on the host connects to 127.0.0.1 and to the host's external
# address. Berth forwards in the kernel (nftables DNAT); docker 20.10 uses its userland proxy for
# 127.0.0.1 by default. Needs: iperf3 on the host.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_tools
command -v iperf3 >/dev/null || die "iperf3 is missing (apt-get install iperf3)"
SECS=${SECS:-5}
start_daemon
# An image with iperf3 and the libraries it links (from the host).
root=$BENCH_DIR/iperf-root
mkdir -p "$root"
for f in $(command -v iperf3) $(ldd "$(command -v iperf3)" | grep -o '/[^ ]*'); do
    mkdir -p "$root$(dirname "$f")"
    cp -L "$f" "$root$f"
done
mkdir -p "$root/tmp" "$root/etc"
echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
tar -C "$root" -cf "$BENCH_DIR/iperf.tar" .
$B import "$BENCH_DIR/iperf.tar" iperf3:bench >/dev/null
ext=$(ip -4 route get 192.0.2.123 2>/dev/null | grep -o 'src [0-9.]*' | cut -d' ' -f2 || true)

measure() { # NAME HOST PORT -> Gbit/s
    local out
    out=$(iperf3 -c "$2" -p "$3" -t "$SECS" -J 2>/dev/null) || { echo "n/a"; return; }
    echo "$out" | python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))'
}

$B run -d --name iperf -p 15201:5201 iperf3:bench /usr/bin/iperf3 -s >/dev/null
sleep 1
b_lo=$(measure berth 127.0.0.1 15201)
b_ext=n/a; [ -n "$ext" ] && b_ext=$(measure berth "$ext" 15201)
$B rm -f iperf >/dev/null

d_lo=n/a d_ext=n/a
if docker_available; then
    DOCKER_HOST=$DK_HOST docker import "$BENCH_DIR/iperf.tar" iperf3:bench >/dev/null
    DOCKER_HOST=$DK_HOST docker run -d --name iperf-bench -p 15202:5201 iperf3:bench /usr/bin/iperf3 -s >/dev/null
    sleep 1
    d_lo=$(measure docker 127.0.0.1 15202)
    [ -n "$ext" ] && d_ext=$(measure docker "$ext" 15202)
    DOCKER_HOST=$DK_HOST docker rm -f iperf-bench >/dev/null
else
    echo "bench: no dockerd answering: docker's figures skipped"
fi
{
    echo "iperf3, ${SECS} s, host client → published port → container server (Gbit/s, receiver side)"
    echo
    echo "| path | berth | docker |"
    echo "|---|---|---|"
    echo "| 127.0.0.1:port | $b_lo | $d_lo |"
    echo "| ${ext:-external}:port | $b_ext | $d_ext |"
} | tee "$RESULTS/port-throughput.md"
