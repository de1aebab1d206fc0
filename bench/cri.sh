#!/usr/bin/env bash
# A Kubernetes node runtime's pod start: `crictl run` (RunPodSandbox + CreateContainer +
# StartContainer of a busybox pod, image present) against Berth's CRI server and, side by side,
# Debian's containerd 1.6 with its CRI plugin — same CNI configuration (bridge + host-local +
# portmap), same stand-in images from a local registry; each iteration's pod is removed in
# hyperfine's --prepare before each run (not timed). Also the idle daemon's RSS with the CRI server on.
# Writes bench/results/cri.md. Needs crictl (CRICTL or PATH) and hyperfine.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_tools
CRICTL=${CRICTL:-$(command -v crictl || echo /var/tmp/berth-tools/bin/crictl)}
[ -x "$CRICTL" ] || { echo "bench cri: skipped (no crictl: set CRICTL)"; exit 0; }
RUNS=${RUNS:-20}

W=$(mktemp -d /tmp/bcb.XXXX)
pids=()
lease=""
bridge=""
finish() {
    set +e
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    [ -n "$bridge" ] && ip link del "$bridge" 2>/dev/null
    [ -n "$lease" ] && rm -f "$lease"
    purge "$W"
}
trap finish EXIT

locks=/tmp/berth-test-nets
mkdir -p "$locks"
for n in $(seq 0 639 | shuf); do
    a=$((200 + n / 16)); b=$((n % 16 * 16))
    ip route | grep -q "^10\.$a\.$b\." && continue
    f="$locks/10.$a.$b"
    if (set -o noclobber; echo $$ >"$f") 2>/dev/null; then lease=$f; break; fi
done
[ -n "$lease" ] || die "no free 10.x.y.0/20 for the pod network"
bridge="bcb$a$((b / 16))"
mkdir -p "$W/cni" "$W/certs.d"
cat >"$W/cni/10-pods.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "bench", "plugins": [
  {"type": "bridge", "bridge": "$bridge", "isGateway": true, "ipMasq": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.$a.$((b + 15)).0/24"}]],
            "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$W/ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
EOF
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BERTH" registry serve --addr "127.0.0.1:$port" --storage "$W/registry" >/dev/null 2>&1 &
pids+=($!)
for reg in registry.k8s.io gcr.io; do
    mkdir -p "$W/certs.d/$reg"
    printf '[host."http://127.0.0.1:%s"]\n  capabilities = ["pull", "resolve"]\n' "$port" >"$W/certs.d/$reg/hosts.toml"
done

echo '{}' >"$W/empty.json"
"$BERTH" daemon -H "unix://$W/b/berth.sock" --config-file "$W/empty.json" --bridge none \
    --data-root "$W/b/data" --exec-root "$W/b/exec" --registry-config-path "$W/certs.d" \
    --cni-conf-dir "$W/cni" --cni-bin-dir /usr/lib/cni >"$W/berth.log" 2>&1 &
berth_pid=$!
pids+=($berth_pid)
wait_ping "$W/b/berth.sock" 20 || { cat "$W/berth.log" >&2; die "berth did not start"; }
B="$BERTH -H unix://$W/b/berth.sock"
"$TEST_IMAGE" cri -o "$W/images.tar"
$B load -i "$W/images.tar" >/dev/null
for ref in registry.k8s.io/e2e-test-images/busybox:1.29-2 registry.k8s.io/pause:3.6; do
    $B tag "$ref" "127.0.0.1:$port/${ref#*/}"
    $B push -q "127.0.0.1:$port/${ref#*/}" >/dev/null
done

cat >"$W/pod.json" <<EOF
{"metadata": {"name": "bench", "namespace": "bench", "uid": "bench-uid", "attempt": 1}, "linux": {}}
EOF
cat >"$W/ctr.json" <<EOF
{"metadata": {"name": "sleeper"}, "image": {"image": "registry.k8s.io/e2e-test-images/busybox:1.29-2"},
 "command": ["sleep", "3600"], "linux": {}}
EOF

# The idle daemon with its CRI server up (before any pod ran).
sleep 1
rss=$(rss_kb "$berth_pid")

cmds=()
names=()
BEP="unix://$W/b/exec/cri.sock"
c() { echo "$CRICTL --runtime-endpoint $1 --image-endpoint $1 --timeout 60s"; }
$(c "$BEP") pull registry.k8s.io/e2e-test-images/busybox:1.29-2 >/dev/null 2>&1
cmds+=("$(c "$BEP") run $W/ctr.json $W/pod.json")
names+=(berth)
cleanups=("$(c "$BEP") rmp -fa")

if command -v containerd >/dev/null; then
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
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$W/cni"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$W/certs.d"
EOF
    containerd --config "$W/c/config.toml" >"$W/containerd.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do [ -S "$W/c/containerd.sock" ] && break; sleep 0.1; done
    CEP="unix://$W/c/containerd.sock"
    $(c "$CEP") pull registry.k8s.io/e2e-test-images/busybox:1.29-2 >/dev/null 2>&1
    $(c "$CEP") pull registry.k8s.io/pause:3.6 >/dev/null 2>&1
    cmds+=("$(c "$CEP") run $W/ctr.json $W/pod.json")
    names+=(containerd)
    cleanups+=("$(c "$CEP") rmp -fa")
fi

# One hyperfine per runtime (each has its own cleanup), then one table.
rows=()
for i in "${!cmds[@]}"; do
    hyperfine -N --warmup 2 --runs "$RUNS" --prepare "${cleanups[$i]}" --cleanup "${cleanups[$i]}" \
        --export-json "$W/h$i.json" -n "${names[$i]}" "${cmds[$i]}" >/dev/null
    rows+=("$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; print("%s %.1f %.1f %.1f %.1f" % (sys.argv[2], r["mean"]*1000, r["stddev"]*1000, r["min"]*1000, r["max"]*1000))' "$W/h$i.json" "${names[$i]}")")
done
# The floor both runtimes stand on: the crictl client's own start (one Version RPC to Berth)
# and the CNI chain's ADD (the same conflist's plugins run in order, as a runtime runs them,
# in a fresh netns; the DEL is not timed). Neither runtime can start a pod faster than this sum.
crictl_ms=$(hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$W/hv.json" "$(c "$BEP") version" >/dev/null &&
    python3 -c 'import json,sys; print("%.1f" % (json.load(open(sys.argv[1]))["results"][0]["mean"]*1000))' "$W/hv.json")
cni_ms=$(python3 - "$W/cni/10-pods.conflist" "$RUNS" <<'PY'
import json, os, subprocess, sys, time
conf, runs = json.load(open(sys.argv[1])), int(sys.argv[2])
def run(cmd, plugin, ns, prev):
    net = dict(plugin, cniVersion=conf["cniVersion"], name=conf["name"])
    if prev is not None:
        net["prevResult"] = prev
    env = dict(os.environ, CNI_COMMAND=cmd, CNI_CONTAINERID=ns, CNI_NETNS=f"/var/run/netns/{ns}",
               CNI_IFNAME="eth0", CNI_PATH="/usr/lib/cni")
    out = subprocess.run([f"/usr/lib/cni/{plugin['type']}"], input=json.dumps(net).encode(),
                         env=env, stdout=subprocess.PIPE, check=True).stdout
    return json.loads(out) if out.strip() else None
total = 0.0
for i in range(runs):
    ns = f"bcbfloor{os.getpid()}x{i}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    t0 = time.monotonic()
    prev = None
    for p in conf["plugins"]:
        prev = run("ADD", p, ns, prev)
    total += time.monotonic() - t0
    for p in reversed(conf["plugins"]):
        run("DEL", p, ns, prev)
    subprocess.run(["ip", "netns", "del", ns], check=True)
print("%.1f" % (total / runs * 1000))
PY
)

{
    echo "Pod start through the CRI (\`crictl run\`: RunPodSandbox + CreateContainer + StartContainer, busybox, image present, bridge CNI), $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $RUNS runs:"
    echo
    echo "| runtime | mean [ms] | ± | min [ms] | max [ms] |"
    echo "|---|---:|---:|---:|---:|"
    for r in "${rows[@]}"; do
        read -r n m s lo hi <<<"$r"
        echo "| $n | $m | $s | $lo | $hi |"
    done
    if [ "${#rows[@]}" = 2 ]; then
        read -r _ bm _ _ _ <<<"${rows[0]}"
        read -r _ cm _ _ _ <<<"${rows[1]}"
        echo
        echo "berth / containerd: $(python3 -c "print('%.2f' % ($bm / $cm))")×"
    fi
    echo
    echo "The floor neither runtime can go under: crictl's own start (\`crictl version\` against Berth)"
    echo "$crictl_ms ms + the CNI chain's ADD run directly (bridge with ipMasq, host-local, portmap)"
    echo "$cni_ms ms = $(python3 -c "print('%.1f' % ($crictl_ms + $cni_ms))") ms."
    echo
    echo "Idle berth daemon RSS with the CRI server on (after loading and pushing the stand-in images): ${rss} kB."
} | tee "$RESULTS/cri.md"
