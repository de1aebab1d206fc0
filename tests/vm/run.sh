#!/usr/bin/env bash
# Runs integration tests of the project inside a cgroup v2-only VM with systemd as PID 1.
#
#   tests/vm/run.sh [--smoke] [SPEC...]
#
# SPEC is a test file of crates/berth/tests, optionally with cargo test filters after a colon:
# `cgroup_v2`, `cgroup_v2:memory,pids`, `exec` (the default: `cgroup_v2 rootless_cgroup_v2`). --smoke runs the smoke subset CI
# uses; --sh='COMMAND' runs a shell command in the VM (for a look around). As root on Debian 12; it installs its apt packages (tests/vm/deps.sh), builds the tests
# (cargo), builds or reuses the VM image (tests/vm/image.sh, cached in /var/cache/berth-vm), boots
# it under QEMU (software emulation) with cgroup v2 only
# (systemd.unified_cgroup_hierarchy=1 cgroup_no_v1=all), shares the repository read-only and a
# results folder read-write over 9p, and prints the console as the tests run. Exits 0 when every
# test passed, 1 otherwise.
#
# Environment: BERTH_VM_CACHE (image cache), BERTH_VM_MEM (MiB, default 2048), BERTH_VM_CPUS
# (default 2), BERTH_VM_TIMEOUT (seconds, default 1500), BERTH_VM_THREADS (test threads in the
# VM, default 4), BERTH_VM_SLOW (the tests' deadlines are multiplied by it, default 8),
# BERTH_VM_OUT (results and console log, default target/vm), BERTH_VM_ACCEL=kvm (hardware
# virtualisation where it works).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=${BERTH_VM_OUT:-$REPO/target/vm}
MEM=${BERTH_VM_MEM:-2048}
CPUS=${BERTH_VM_CPUS:-2}
TIMEOUT=${BERTH_VM_TIMEOUT:-1500}
# The smoke subset CI runs: every area of the suite once, the drivers taking turns (each
# driver's daemon, scopes and limits are exercised; the whole suite runs each test under both).
SMOKE=("cgroup_v2:info_reports_v2_and_the_driver,memory_and_swap::systemd,cpu_quota_weight_and_cpuset::cgroupfs,pids_limit::systemd,io_weight_and_device_limits::cgroupfs,update_a_running_container::systemd,stats_agree_with_the_cgroup_files::cgroupfs,pause_uses_the_v2_freezer::systemd,oom_kill_is_reported::cgroupfs,cgroupns_modes,exec_joins_the_container_cgroup::systemd,systemd_scope_lifecycle_and_slices")
T0=$(date +%s)

log() { echo "vm: $*"; }
die() {
    echo "vm: $*" >&2
    exit 1
}

specs=()
for a in "$@"; do
    case $a in
    --smoke) specs+=("${SMOKE[@]}") ;;
    --sh=*) specs+=("sh ${a#--sh=}") ;;
    -h | --help)
        sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    -*) die "unknown option $a" ;;
    *) specs+=("$a") ;;
    esac
done
# The whole suite: the cgroup v2 tests and rootless limits in a systemd user session.
((${#specs[@]})) || specs=(cgroup_v2 rootless_cgroup_v2)

[ "$(id -u)" = 0 ] || die "run as root"
"$REPO/tests/vm/deps.sh"

# --- the test binaries ----------------------------------------------------------------------
plan=()
for spec in "${specs[@]}"; do
    if [ "${spec#sh }" != "$spec" ]; then
        plan+=("$spec")
        continue
    fi
    file=${spec%%:*}
    filters=""
    [ "$file" = "$spec" ] || filters=${spec#*:}
    # --workspace, as the main suite builds: `-p berth` unifies the dependencies' features
    # differently and would rebuild much of the graph beside the suite's artifacts.
    log "cargo test --workspace --test $file --no-run"
    exe=$(cd "$REPO" && cargo test -q --workspace --test "$file" --no-run --message-format=json 2>/dev/null |
        grep '"kind":\["test"\]' | grep -o '"executable":"[^"]*"' | tail -n1 | cut -d'"' -f4) || true
    [ -n "$exe" ] && [ -x "$exe" ] || die "cargo could not build the $file tests (cargo test --workspace --test $file --no-run)"
    plan+=("$exe ${filters//,/ }")
done
TARGET=$(cd "$REPO" && cargo metadata -q --format-version 1 --no-deps | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)
[ -x "$TARGET/debug/berth" ] || die "no berth binary in $TARGET/debug"

# --- the image ------------------------------------------------------------------------------
# image.sh asks apt which kernel to use (apt-cache: ~25 s here, as apt keeps no binary cache):
# its answer is remembered for the same apt lists and the same image.sh.
CACHE=${BERTH_VM_CACHE:-/var/cache/berth-vm}
memo=$CACHE/image-of-$({
    stat -c '%n %Y %s' /var/lib/apt/lists/*Packages* 2>/dev/null
    cat "$REPO/tests/vm/image.sh"
} | sha256sum | cut -c1-16)
IMG=$(cat "$memo" 2>/dev/null || true)
if [ -z "$IMG" ] || [ ! -f "$IMG/ready" ]; then
    IMG=$("$REPO/tests/vm/image.sh")
    echo "$IMG" >"$memo"
fi
log "image $IMG (built in $(($(date +%s) - T0))s or cached)"

# --- the run --------------------------------------------------------------------------------
mkdir -p "$OUT"
RES=$OUT/results
rm -rf "$RES"
mkdir -p "$RES"
{
    printf 'BERTH_VM_REPO=%q\n' "$REPO"
    printf 'BERTH_VM_TARGET=%q\n' "$TARGET"
    printf 'BERTH_VM_THREADS=%q\n' "${BERTH_VM_THREADS:-4}"
    printf 'BERTH_VM_SLOW=%q\n' "${BERTH_VM_SLOW:-8}"
} >"$RES/plan.env"
printf '%s\n' "${plan[@]}" >"$RES/plan"
cp "$REPO/tests/vm/inside.sh" "$RES/inside.sh"

shares=(-virtfs "local,path=$REPO,mount_tag=repo,security_model=none,readonly=on"
    -virtfs "local,path=$RES,mount_tag=results,security_model=none")
case $TARGET/ in
"$REPO"/*) ;;
*) shares+=(-virtfs "local,path=$TARGET,mount_tag=target,security_model=none,readonly=on") ;;
esac
# Software emulation by default: KVM is not usable on every CI machine (here it hangs at boot).
accel=tcg,thread=multi
cpu=max
if [ "${BERTH_VM_ACCEL:-tcg}" = kvm ]; then
    accel=kvm
    cpu=host
fi
# quiet: the console carries the tests' output. mitigations=off: the guest runs only the tests,
# and the speculation mitigations make every system call dearer under emulation; the other
# options skip boot work a VM without devices does not need (4 s of the kernel's 20 here).
cmdline="console=ttyS0 root=/dev/vda rw panic=-1 quiet loglevel=3 systemd.show_status=0"
cmdline+=" mitigations=off cryptomgr.notests audit=0 nowatchdog no_timer_check"
cmdline+=" i8042.noaux i8042.nokbd i8042.nopnp"
cmdline+=" systemd.unified_cgroup_hierarchy=1 cgroup_no_v1=all"
# The decompressed kernel (PVH entry) where the image has it; images of older image.sh have
# only the bzImage.
kernel=$IMG/vmlinux
[ -f "$kernel" ] || kernel=$IMG/vmlinuz
CONSOLE=$OUT/console.log
: >"$CONSOLE"
log "booting ($accel, $CPUS cpus, ${MEM} MiB); console: $CONSOLE"
boot0=$(date +%s)
set +e
timeout --foreground -k 10 "$TIMEOUT" qemu-system-x86_64 -nodefaults -no-user-config -no-reboot \
    -machine q35 -accel "$accel" -cpu "$cpu" -smp "$CPUS" -m "$MEM" \
    -display none -monitor none -nic none \
    -chardev "file,id=console,path=$CONSOLE" -serial chardev:console \
    -kernel "$kernel" -initrd "$IMG/initrd.gz" -append "$cmdline" \
    -drive "file=$IMG/rootfs.ext4,format=raw,if=virtio,snapshot=on" \
    "${shares[@]}" &
qemu=$!
# Each console line with the seconds since QEMU started (the host's clock: the guest's runs
# slow under emulation), which shows where a run's time goes.
tail -n +1 -F --pid="$qemu" "$CONSOLE" 2>/dev/null | while IFS= read -r line; do
    printf '[%4d] %s\n' $(($(printf '%(%s)T' -1) - boot0)) "$line"
done &
tailer=$!
# inside.sh creates the log when the guest is up, and writes rc last (after a sync, over 9p
# straight into the host's folder). Nothing of the guest is kept (the disk is a snapshot), so
# the VM is stopped then, without waiting for its power-off.
up=""
while kill -0 "$qemu" 2>/dev/null && [ ! -s "$RES/rc" ]; do
    [ -n "$up" ] || [ ! -e "$RES/log" ] || up=$(($(date +%s) - boot0))
    sleep 0.2
done
done_at=$(($(date +%s) - boot0))
kill "$qemu" 2>/dev/null
wait "$qemu"
qrc=$?
sleep 0.3
kill "$tailer" 2>/dev/null
wait "$tailer" 2>/dev/null
set -e

echo
[ "$qrc" = 124 ] && log "TIMEOUT: the VM ran longer than ${TIMEOUT}s and was stopped"
rc=$(cat "$RES/rc" 2>/dev/null || echo "")
read -r passed failed ignored < <(awk '/^test result:/ {
        for (i = 1; i <= NF; i++) {
            if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) g += $i
        } } END { print p+0, f+0, g+0 }' "$RES/log" 2>/dev/null || echo "0 0 0")
log "VM run ${done_at}s (boot ${up:-?}s, tests $((done_at - ${up:-0}))s), total $(($(date +%s) - T0))s: ${passed} passed, ${failed} failed, ${ignored} skipped (log: $RES/log)"
log "load: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -z "$rc" ]; then
    log "FAILED: the VM stopped before the tests finished (qemu exit $qrc); see $CONSOLE"
    exit 1
fi
if [ "$rc" != 0 ]; then
    log "FAILED (exit $rc)"
    exit 1
fi
exit 0
