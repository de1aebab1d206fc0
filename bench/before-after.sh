#!/usr/bin/env bash
# The same commands against two builds of Berth, side by side: `run --rm busybox true`,
# `exec <running> true` and `create busybox true`, each CLI against its own daemon (own temp
# roots, socket and bridge). For a change's "no worse than before" check:
#
#   BASE=/path/to/older/target/release/berth bench/before-after.sh
#
# BERTH (default: this checkout's release build) is "after"; BASE is "before", e.g. a release
# build of the previous commit in a git worktree. Results: bench/results/before-after.md.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_tools
[ -x "${BASE:-}" ] || die "BASE must name the older berth binary"

# Two daemons: start_daemon keeps one in its globals, so the first one's are saved.
start_daemon
A_DIR=$BENCH_DIR A_PID=$DAEMON_PID A_BRIDGE=$BENCH_BRIDGE A_B=$B
BERTH_AFTER=$BERTH
BERTH=$BASE
BENCH_DIR= DAEMON_PID= BENCH_BRIDGE=
BENCH_BRIDGE_NAME=bz$(($$ % 100000)) start_daemon
BERTH=$BERTH_AFTER
Z_DIR=$BENCH_DIR Z_PID=$DAEMON_PID Z_BRIDGE=$BENCH_BRIDGE Z_B=$B
stop_both() {
    BENCH_DIR=$A_DIR DAEMON_PID=$A_PID BENCH_BRIDGE=$A_BRIDGE B=$A_B stop_daemon
    BENCH_DIR=$Z_DIR DAEMON_PID=$Z_PID BENCH_BRIDGE=$Z_BRIDGE B=$Z_B stop_daemon
}
trap stop_both EXIT

"$TEST_IMAGE" busybox -o "$A_DIR/busybox.tar"
for b in "$A_B" "$Z_B"; do
    $b load -i "$A_DIR/busybox.tar" >/dev/null || die "load failed"
    $b run -d --name bench-exec busybox sleep 3600 >/dev/null
done
label=berth-bench-create=$$
before=$(cut -d" " -f1-3 /proc/loadavg)
out=$RESULTS/before-after.md
{
    echo "Before: \`$BASE\`; after: \`$BERTH\`. $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores."
    echo
} >"$out"
for what in run-rm exec create; do
    case $what in
        run-rm) a="$A_B run --rm busybox true" z="$Z_B run --rm busybox true" runs=${RUNS:-40} ;;
        exec) a="$A_B exec bench-exec true" z="$Z_B exec bench-exec true" runs=${RUNS_EXEC:-60} ;;
        create) a="$A_B create -l $label busybox true" z="$Z_B create -l $label busybox true" runs=${RUNS:-40} ;;
    esac
    hyperfine -N --warmup 3 --runs "$runs" --export-markdown "$RESULTS/.ba-$what.md" \
        -n "before: $what" "$z" -n "after: $what" "$a"
    cat "$RESULTS/.ba-$what.md" >>"$out"
    echo >>"$out"
    rm -f "$RESULTS/.ba-$what.md"
done
# exec's difference is within hyperfine's spread: paired rounds settle it.
{
    echo "exec, paired rounds (bench/paired.py):"
    echo
    python3 "$(dirname "$0")/paired.py" "${PAIRED_RUNS:-300}" \
        "before: exec" "$Z_B exec bench-exec true" "after: exec" "$A_B exec bench-exec true"
    echo
} >>"$out"
printf 'load average before %s, after %s\n' "$before" "$(cut -d" " -f1-3 /proc/loadavg)" >>"$out"
