#!/usr/bin/env bash
# critest (cri-tools v1.32) against Berth's CRI server and, side by side, against Debian's
# containerd 1.6 with its CRI plugin: the same stand-in images (berth_testkit::cri, served by a
# local `berth registry serve` and reached under their real names through per-registry mirrors
# in hosts.toml), the same CNI configuration (bridge + host-local + portmap from
# containernetworking-plugins, in a conf dir of our own), each runtime on its own socket and
# roots. Prints each run's counts and failed specs, and writes tests/cri/results.md
# (CRITEST_RESULTS=FILE to write elsewhere); the full critest output goes to target/critest/.
#
#   tests/cri/critest.sh [berth|containerd|both]     (default both)
#
# critest from $CRITEST or PATH (skipped with one line when absent); containerd's run is skipped
# when containerd is not installed. Extra critest flags: CRITEST_ARGS (e.g. -ginkgo.focus=Image).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
which_runs=${1:-both}

CRITEST=${CRITEST:-$(command -v critest || true)}
[ -x "${CRITEST:-}" ] || CRITEST=/var/tmp/berth-tools/bin/critest
if [ ! -x "$CRITEST" ]; then
    echo "critest: skipped (set CRITEST or put cri-tools v1.32's critest on PATH)"
    exit 0
fi
if [ -z "${BERTH:-}" ]; then
    (cd "$repo" && cargo build -q -p berth -p berth-testkit)
fi
BERTH=${BERTH:-$repo/target/debug/berth}
IMAGE_TOOL=${BERTH_TEST_IMAGE:-$repo/target/debug/berth-test-image}
RESULTS=${CRITEST_RESULTS:-$here/results.md}

W=$(mktemp -d /tmp/bcri.XXXX)
pids=()
lease=""
bridge=""
cleanup() {
    set +e
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    # Pods and containers the runs left: the runtimes' own state is in $W.
    for m in $(awk -v w="$W" '$2 ~ "^"w {print $2}' /proc/mounts | sort -r); do umount -l "$m"; done
    [ -n "$bridge" ] && ip link del "$bridge" 2>/dev/null
    [ -n "$lease" ] && rm -f "$lease"
    rm -rf "$W"
}
trap cleanup EXIT

# A /20 of 10.0.0.0/8 nobody else uses (the test harness's lease files, berth-testkit netlease).
locks=/tmp/berth-test-nets
mkdir -p "$locks"
for n in $(seq 0 639 | shuf); do
    a=$((200 + n / 16)); b=$((n % 16 * 16))
    ip route | grep -q "^10\.$a\.$b\." && continue
    f="$locks/10.$a.$b"
    if (set -o noclobber; echo $$ >"$f") 2>/dev/null; then lease=$f; break; fi
done
[ -n "$lease" ] || { echo "critest: no free 10.x.y.0/20 for the pod network"; exit 1; }
subnet="10.$a.$((b + 15)).0/24"
bridge="bcri$a$((b / 16))"

# Images: built offline, pushed to a local registry under their real paths.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BERTH" registry serve --addr "127.0.0.1:$port" --storage "$W/registry" >"$W/registry.log" 2>&1 &
pids+=($!)
mkdir -p "$W/certs.d" "$W/cni"
for reg in registry.k8s.io gcr.io; do
    mkdir -p "$W/certs.d/$reg"
    printf 'server = "https://%s"\n\n[host."http://127.0.0.1:%s"]\n  capabilities = ["pull", "resolve"]\n' \
        "$reg" "$port" >"$W/certs.d/$reg/hosts.toml"
done
cat >"$W/cni/10-pods.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "critest",
  "plugins": [
    {"type": "bridge", "bridge": "$bridge", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$subnet"}]],
              "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$W/cni-ipam"}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF

# A busybox shell that execs applets (Debian's `busybox` package; busybox-static's shell runs
# them in-process, so a masked /bin/ls would still run): fetched once with apt into a cache.
cache=${BERTH_CRI_CACHE:-/var/cache/berth-cri}
if [ -z "${BERTH_CRI_SH:-}" ]; then
    if [ ! -x "$cache/busybox/bin/busybox" ]; then
        mkdir -p "$cache/deb"
        (cd "$cache/deb" && { apt-get download busybox >/dev/null 2>&1 ||
            { apt-get update -qq >/dev/null 2>&1 && apt-get download busybox >/dev/null 2>&1; }; } &&
            dpkg-deb -x busybox_*.deb "$cache/busybox") ||
            echo "critest: no Debian busybox package: the stand-in shell is busybox-static's (the MaskedPaths spec will fail)"
    fi
    [ -x "$cache/busybox/bin/busybox" ] && export BERTH_CRI_SH="$cache/busybox/bin/busybox"
fi
"$IMAGE_TOOL" cri -o "$W/images.tar"
B="$BERTH -H unix://$W/b/berth.sock"
start_berth() {
    "$BERTH" daemon -H "unix://$W/b/berth.sock" --config-file "$W/empty.json" \
        --data-root "$W/b/data" --exec-root "$W/b/exec" --bridge none \
        --registry-config-path "$W/certs.d" --cni-conf-dir "$W/cni" --cni-bin-dir /usr/lib/cni \
        >>"$W/berth.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 200); do [ -S "$W/b/exec/cri.sock" ] && $B version >/dev/null 2>&1 && return; sleep 0.1; done
    echo "critest: berth daemon did not start"; tail -20 "$W/berth.log"; exit 1
}
mkdir -p "$W/b"
echo '{}' >"$W/empty.json"
start_berth
$B load -i "$W/images.tar" >/dev/null
for ref in $($B images --format '{{.Repository}}:{{.Tag}}' | grep -E '^(registry\.k8s\.io|gcr\.io)/'); do
    path=${ref#*/}
    $B tag "$ref" "127.0.0.1:$port/$path"
    $B push -q "127.0.0.1:$port/$path" >/dev/null
    $B rmi "127.0.0.1:$port/$path" >/dev/null
done
# The images go, so that critest's pulls come through the mirror.
$B rmi -f $($B images -q | sort -u) >/dev/null 2>&1 || true

summary() { # log -> "passed failed skipped"
    local line
    line=$(grep -E '^(SUCCESS|FAIL)! .* Passed \| .* Failed' "$1" | tail -1)
    local p f s
    p=$(sed -E 's/.* ([0-9]+) Passed.*/\1/' <<<"$line")
    f=$(sed -E 's/.* ([0-9]+) Failed.*/\1/' <<<"$line")
    s=$(sed -E 's/.* ([0-9]+) Skipped.*/\1/' <<<"$line")
    echo "$p $f $s"
}

run_critest() { # name endpoint
    local name=$1 ep=$2 log="$W/critest-$1.log"
    echo "== critest against $name ($ep)"
    set +e
    # Requests to pod addresses must not go to a proxy.
    env -u http_proxy -u https_proxy -u HTTP_PROXY -u HTTPS_PROXY \
        "$CRITEST" -runtime-endpoint "$ep" -image-endpoint "$ep" \
        -ginkgo.no-color ${CRITEST_ARGS:-} >"$log" 2>&1
    set -e
    read -r p f s < <(summary "$log")
    echo "$name: ${p:-?} passed, ${f:-?} failed, ${s:-?} skipped"
    grep -E '^\s*\[FAIL\]' "$log" | sed 's/^\s*//' | sort -u >"$W/fail-$name.txt" || true
    mkdir -p "$repo/target/critest"
    cp "$log" "$repo/target/critest/$name.log"
    cat "$W/fail-$name.txt"
    eval "res_$name='${p:-?} passed, ${f:-?} failed, ${s:-?} skipped'"
}

res_berth="not run"
res_containerd="not run"
if [ "$which_runs" = both ] || [ "$which_runs" = berth ]; then
    run_critest berth "unix://$W/b/exec/cri.sock"
fi
kill "${pids[-1]}" 2>/dev/null || true

if { [ "$which_runs" = both ] || [ "$which_runs" = containerd ]; } && command -v containerd >/dev/null; then
    mkdir -p "$W/c"
    cat >"$W/c/config.toml" <<EOF
version = 2
root = "$W/c/root"
state = "$W/c/state"
[grpc]
  address = "$W/c/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.6"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$W/cni"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$W/certs.d"
EOF
    containerd --config "$W/c/config.toml" >"$W/containerd.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do [ -S "$W/c/containerd.sock" ] && break; sleep 0.1; done
    run_critest containerd "unix://$W/c/containerd.sock"
elif [ "$which_runs" != berth ]; then
    echo "containerd: skipped (not installed)"
fi

{
    echo "# critest v1.32.0: Berth and containerd side by side"
    echo
    echo "Run by \`tests/cri/critest.sh\` on $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $($BERTH --version | head -1); $(containerd --version 2>/dev/null | cut -d' ' -f3 || echo 'no containerd')."
    echo
    echo "| runtime | result |"
    echo "|---|---|"
    echo "| berth | $res_berth |"
    echo "| containerd | $res_containerd |"
    for n in berth containerd; do
        [ -s "$W/fail-$n.txt" ] || continue
        echo
        echo "Failed on $n:"
        echo
        sed 's/^/- /' "$W/fail-$n.txt"
    done
} >"$RESULTS"
echo "results: $RESULTS"
