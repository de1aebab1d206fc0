#!/bin/sh
# Runs in the test VM (tests/vm/run.sh copies it into the results folder, which the image's
# berth-vm-run.service mounts and runs it from): mounts the repository, checks the VM is
# what the tests need (cgroup v2 only, systemd as PID 1), runs each line of the plan
# ("<test binary> [filters...]") and writes the output to results/log and the exit status to
# results/rc. Its output goes to the serial console, which tests/vm/run.sh prints.
R=/mnt/results
. $R/plan.env
# The repository (and the build tree when it lies elsewhere) at the host's paths, where the test
# binaries look for them. Read-only with the page cache on: a debug berth binary is ~80 MB, and
# without the cache each exec reads it over 9p again (7 s under software emulation).
share() {
    mkdir -p "$2"
    mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288,cache=loose,ro "$1" "$2"
}
if ! share repo "$BERTH_VM_REPO"; then
    echo "vm: cannot mount the repository at $BERTH_VM_REPO" | tee $R/log
    echo 1 >$R/rc
    exit 1
fi
case "$BERTH_VM_TARGET/" in
"$BERTH_VM_REPO"/*) ;;
*) share target "$BERTH_VM_TARGET" ;;
esac
exec >>$R/log 2>&1
# The log also goes to the console, line by line.
tail -n +1 -f $R/log >/dev/console &

fs=$(stat -fc %T /sys/fs/cgroup)
echo "vm: up after $(cut -d' ' -f1 /proc/uptime)s; kernel $(uname -r); /sys/fs/cgroup is $fs;" \
    "controllers: $(cat /sys/fs/cgroup/cgroup.controllers 2>/dev/null); PID 1: $(cat /proc/1/comm)"
rc=0
if [ "$fs" != cgroup2fs ] || grep -q ' cgroup ' /proc/mounts; then
    echo "vm: FAILED: cgroup v1 is mounted; the VM must be cgroup v2 only"
    rc=1
fi
# Deadlines x8 (they bound waits; passing tests do not wait longer): software emulation on a
# shared machine is slow, and a daemon's first start there took over 40 s.
export BERTH_TEST_TMPDIR=/tmp BERTH_TEST_CACHE=/var/tmp/berth-testkit RUST_BACKTRACE=1
export BERTH_TEST_SLOW=${BERTH_VM_SLOW:-8}
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
cd "$BERTH_VM_REPO/crates/berth" || rc=1
# The first exec of a binary reads it over 9p (berth is ~80 MB in a debug build): read it into
# the page cache once, before the tests start two daemons at the same moment.
cat "$BERTH_VM_TARGET/debug/berth" >/dev/null 2>&1
echo "vm: binaries cached after $(cut -d' ' -f1 /proc/uptime)s"
if [ $rc = 0 ]; then
    while read -r exe filters; do
        if [ "$exe" = sh ]; then
            echo "vm: \$ $filters"
            sh -c "$filters" </dev/null || rc=1
            continue
        fi
        echo "vm: $(basename "$exe") ${filters}"
        # shellcheck disable=SC2086 # the filters are words
        "$exe" --test-threads="${BERTH_VM_THREADS:-4}" $filters </dev/null || rc=1
    done <$R/plan
fi
echo "vm: done after $(cut -d' ' -f1 /proc/uptime)s, exit $rc"
sleep 0.5
sync
echo $rc >$R/rc
sync
