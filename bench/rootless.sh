#!/usr/bin/env bash
# Rootless Berth side by side with Debian's rootless dockerd (dockerd-rootless.sh: rootlesskit,
# slirp4netns, its builtin port driver), both run by one throwaway user made here:
#   - issue 17's command list through the docker CLI against each, ok or FAIL per command
#     (results/rootless-commands.md; MEASURE=0 stops after it);
#   - `run --rm busybox true` through each CLI (hyperfine);
#   - iperf3 through a published port, host client at 127.0.0.1 → container server (TCP: Berth
#     forwards with `berth rootless portd`, dockerd with rootlesskit's builtin port driver).
# Run as root: it creates the user (useradd, a subuid/subgid range far above useradd's), grants
# it /dev/net/tun with an ACL entry, and undoes all of it on exit. Needs: hyperfine, iperf3,
# uidmap, slirp4netns, rootlesskit, docker.io (dockerd, /usr/share/docker.io/contrib).
# RUNS (default 30) and SECS (default 5) size the two measurements.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_tools
for t in iperf3 rootlesskit slirp4netns newuidmap dockerd docker runuser useradd; do
    command -v "$t" >/dev/null || die "$t is missing"
done
CONTRIB=/usr/share/docker.io/contrib
[ -x "$CONTRIB/dockerd-rootless.sh" ] || die "$CONTRIB/dockerd-rootless.sh missing (apt-get install docker.io)"
[ "$(id -u)" = 0 ] || die "run as root (it creates the benchmark user)"
RUNS=${RUNS:-30}
SECS=${SECS:-5}

U=brbench$(($$ % 100000))
ROOT=$(mktemp -d /tmp/rb.XXXXXX)
chmod 755 "$ROOT"
HOMEDIR=$ROOT/h
RT=/tmp/rbr$(($$ % 100000))
SUB=$((1200000000 + ($$ % 1000) * 65536))
TUN_ACL=
exec 3>&2 # the cleanup reports here even when it runs inside a redirected check

cleanup() {
    local rc=$?
    [ "$rc" = 0 ] || [ ! -s "$ROOT/commands.log" ] || { echo "bench: exit $rc; the command list's log ends:"; tail -n 25 "$ROOT/commands.log"; } >&3
    set +e
    # The user's processes (daemons, rootlesskit, slirp4netns, shims, containers), by pid.
    if id -u "$U" >/dev/null 2>&1; then
        uid=$(id -u "$U")
        for p in /proc/[0-9]*; do
            [ "$(awk '/^Uid:/ {print $2}' "$p/status" 2>/dev/null)" = "$uid" ] && kill -9 "${p#/proc/}" 2>/dev/null
        done
        sleep 0.5
        userdel "$U" 2>/dev/null
    fi
    for f in /etc/subuid /etc/subgid; do
        grep -vx "$U:$SUB:65536" "$f" >"$f.rbtmp" && cat "$f.rbtmp" >"$f"
        rm -f "$f.rbtmp"
    done
    [ -n "$TUN_ACL" ] && python3 - "$TUN_ACL" <<'EOF'
import os, sys
mode, old = sys.argv[1].split(":")
if old == "none":
    os.removexattr("/dev/net/tun", "system.posix_acl_access")
else:
    os.setxattr("/dev/net/tun", "system.posix_acl_access", bytes.fromhex(old))
# The ACL's mask showed as the group bits: the mode as it was.
os.chmod("/dev/net/tun", int(mode, 8))
EOF
    # Files of the subordinate ids are root's to remove here.
    rm -rf "$ROOT" "$RT"
}
trap cleanup EXIT

useradd -m -d "$HOMEDIR" -K SUB_UID_COUNT=0 -K SUB_GID_COUNT=0 -s /bin/sh "$U"
echo "$U:$SUB:65536" >>/etc/subuid
echo "$U:$SUB:65536" >>/etc/subgid
UID_N=$(id -u "$U")
mkdir -m 700 "$RT"
chown "$U" "$RT"
# /dev/net/tun for this user only (an ACL entry; the old ACL is restored on exit).
TUN_ACL=$(python3 - "$UID_N" <<'EOF'
import os, struct, sys
uid = int(sys.argv[1])
try:
    old = os.getxattr("/dev/net/tun", "system.posix_acl_access").hex()
except OSError:
    old = "none"
mode = os.stat("/dev/net/tun").st_mode & 0o7777
e = lambda tag, perm, i: struct.pack("<HHI", tag, perm, i)
acl = struct.pack("<I", 2) + e(1, (mode >> 6) & 7, 0xFFFFFFFF) + e(2, 6, uid) \
    + e(4, (mode >> 3) & 7, 0xFFFFFFFF) + e(0x10, 6, 0xFFFFFFFF) + e(0x20, mode & 7, 0xFFFFFFFF)
os.setxattr("/dev/net/tun", "system.posix_acl_access", acl)
print("%o:%s" % (mode, old))
EOF
)

as_user() { # COMMAND...: as the benchmark user, in its session's environment
    runuser -u "$U" -- env -i HOME="$HOMEDIR" XDG_RUNTIME_DIR="$RT" \
        PATH="$CONTRIB:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin" "$@"
}
BH=unix://$RT/berth/berth.sock
DH=unix://$RT/docker.sock

# Rootless berth.
start_berth() {
    as_user "$BERTH" daemon >>"$ROOT/berth.log" 2>&1 &
    BR=$!
    for _ in $(seq 300); do as_user docker -H "$BH" version >/dev/null 2>&1 && break; sleep 0.1; done
    as_user docker -H "$BH" version >/dev/null || { tail -20 "$ROOT/berth.log"; die "rootless berth did not start"; }
}
# Rootless dockerd, Debian's script (rootlesskit + slirp4netns, builtin port driver).
start_dockerd() {
    as_user dockerd-rootless.sh --data-root "$HOMEDIR/docker-data" >>"$ROOT/dockerd.log" 2>&1 &
    DR=$!
    for _ in $(seq 600); do as_user docker -H "$DH" version >/dev/null 2>&1 && break; sleep 0.1; done
    as_user docker -H "$DH" version >/dev/null || { tail -20 "$ROOT/dockerd.log"; die "rootless dockerd did not start"; }
}
start_berth
start_dockerd

# The same images in both: busybox (offline) and an iperf3 made of the host's binary.
"$TEST_IMAGE" busybox -o "$ROOT/busybox.tar"
img=$ROOT/iperf-root
for f in $(command -v iperf3) $(ldd "$(command -v iperf3)" | grep -o '/[^ ]*'); do
    mkdir -p "$img$(dirname "$f")"
    cp -L "$f" "$img$f"
done
mkdir -p "$img/tmp" "$img/etc"
echo 'root:x:0:0:root:/root:/bin/sh' >"$img/etc/passwd"
tar -C "$img" -cf "$ROOT/iperf.tar" .
chmod 644 "$ROOT/busybox.tar" "$ROOT/iperf.tar"
for h in "$BH" "$DH"; do
    as_user docker -H "$h" load -i "$ROOT/busybox.tar" >/dev/null
    as_user docker -H "$h" import "$ROOT/iperf.tar" iperf3:bench >/dev/null
done

# The issue's command list, the same docker CLI commands against each daemon: ok or FAIL.
D() { as_user docker -H "$H" "$@"; }
stop_daemon() { # JOB_PID ARGV0: TERM to the daemon a start_* job runs (the job is a subshell,
    # its child runuser, runuser's child the daemon: berth, or dockerd's rootlesskit); waits for
    # it and for the user's ARGV0 processes to end (dockerd outlives rootlesskit while it stops
    # its containers, and a new one refuses to start beside it).
    local ru daemon
    ru=$(ps -o pid= --ppid "$1" | tr -d ' ')
    daemon=$(ps -o pid= --ppid "$ru" | tr -d ' ')
    [ -n "$daemon" ] || return 1
    kill -TERM "$daemon"
    for _ in $(seq 300); do
        kill -0 "$daemon" 2>/dev/null || { [ -n "$2" ] && [ -n "$(user_pids_named "$2")" ]; } || break
        sleep 0.1
    done
    ! kill -0 "$daemon" 2>/dev/null
}
user_pids_named() { # ARGV0: pids of the user's processes whose first argument is ARGV0
    local p
    for p in /proc/[0-9]*; do
        [ "$(awk '/^Uid:/ {print $2}' "$p/status" 2>/dev/null)" = "$UID_N" ] || continue
        [ "$(tr '\0' '\n' <"$p/cmdline" 2>/dev/null | head -1)" = "$1" ] && echo "${p#/proc/}"
    done
}
user_pids_running() { # ARGV0 ARG1: pids of the user's processes whose command line is that
    local p
    for p in /proc/[0-9]*; do
        [ "$(awk '/^Uid:/ {print $2}' "$p/status" 2>/dev/null)" = "$UID_N" ] || continue
        [ "$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null)" = "$1 $2 " ] && echo "${p#/proc/}"
    done
}
c_id() { # uid 0 inside; outside, the container's process is the user
    [ "$(D run --rm busybox id -u)" = 0 ] || return 1
    D run -d --name cid busybox sleep 4242 >/dev/null || return 1
    local pid=
    for _ in $(seq 50); do pid=$(user_pids_running sleep 4242 | head -1); [ -n "$pid" ] && break; sleep 0.1; done
    D rm -f cid >/dev/null
    [ -n "$pid" ]
}
c_port() { # -p PORT:80 reachable from the host at 127.0.0.1
    D run -d --name web -p "$1:80" busybox sh -c 'mkdir -p /w && echo hello > /w/index.html && exec httpd -f -p 80 -h /w' >/dev/null || return 1
    local got=
    for _ in $(seq 100); do got=$(curl -s -m 2 "http://127.0.0.1:$1/") && [ "$got" = hello ] && break; sleep 0.1; done
    D rm -f web >/dev/null
    [ "$got" = hello ]
}
c_dns() { # a user network with name resolution
    D network create rn >/dev/null || return 1
    D run -d --name srv --network rn busybox sleep 300 >/dev/null || return 1
    D run --rm --network rn busybox ping -c 1 -W 5 srv >/dev/null
    local r=$?
    D rm -f srv >/dev/null
    D network rm rn >/dev/null
    return $r
}
c_volume() { # a named volume keeps data between containers
    D run --rm -v rv:/d busybox sh -c 'echo kept > /d/f' || return 1
    [ "$(D run --rm -v rv:/d busybox cat /d/f)" = kept ] || return 1
    D volume rm rv >/dev/null
}
c_bind() { # a file container root writes into a bind mount is the user's on the host
    local dir=$HOMEDIR/bind-$1
    as_user mkdir -p "$dir" || return 1
    D run --rm -v "$dir:/b" busybox sh -c 'echo y > /b/f' || return 1
    [ "$(stat -c %u "$dir/f")" = "$UID_N" ]
}
c_build() {
    local ctx=$HOMEDIR/ctx
    as_user mkdir -p "$ctx" && printf 'FROM busybox\nRUN echo built > /b\n' | as_user tee "$ctx/Dockerfile" >/dev/null || return 1
    D build -q -t rbuilt "$ctx" >/dev/null || return 1
    [ "$(D run --rm rbuilt cat /b)" = built ]
}
c_exec_it() { # exec -it on a terminal
    D run -d --name ex busybox sleep 300 >/dev/null || return 1
    local out
    out=$(script -qec "runuser -u $U -- env -i HOME=$HOMEDIR $(command -v docker) -H $H exec -it ex sh -c 'tty && echo in-tty'" /dev/null </dev/null)
    D rm -f ex >/dev/null
    [[ $out == */dev/pts/*in-tty* ]]
}
c_logs_f() { # logs -f follows until the container ends
    D run -d --name lg busybox sh -c 'echo one; sleep 1; echo two' >/dev/null || return 1
    local out
    out=$(timeout 20 runuser -u "$U" -- env -i HOME="$HOMEDIR" "$(command -v docker)" -H "$H" logs -f lg)
    D rm -f lg >/dev/null
    [ "$out" = "$(printf 'one\ntwo')" ]
}
c_restart() { # a running container survives a daemon restart (same start, still running)
    D run -d --name keep busybox sleep 600 >/dev/null || return 1
    local before after
    before=$(D inspect -f '{{.State.Running}} {{.State.StartedAt}}' keep)
    if [ "$H" = "$BH" ]; then
        stop_daemon "$BR" "" || return 1
        start_berth
    else
        stop_daemon "$DR" dockerd || return 1
        start_dockerd
    fi
    after=$(D inspect -f '{{.State.Running}} {{.State.StartedAt}}' keep)
    D rm -f keep >/dev/null
    [ "$before" = "$after" ]
}
# Not in a pipeline: the restart check starts a daemon, which must be this shell's job.
out=$RESULTS/rootless-commands.md
{
    echo "The issue's command list, docker CLI 28 against each rootless daemon (one user, one machine)"
    echo
    echo "| command | rootless berth | rootless dockerd |"
    echo "|---|---|---|"
} | tee "$out"
for c in "id:run --rm busybox id (uid 0 inside, the user's uid outside)" \
    "port:run -d -p PORT:80, then curl 127.0.0.1:PORT" \
    "dns:network create, ping a container by name" \
    "volume:a named volume, written then read by another container" \
    "bind:-v HOSTDIR:/b, a file container root writes is the user's on the host" \
    "build:build, then run the image" \
    "exec_it:exec -it on a terminal" \
    "logs_f:logs -f until the container ends" \
    "restart:daemon restart, the running container survives"; do
    f=${c%%:*}
    row="| ${c#*:} |"
    n=0
    for H in "$BH" "$DH"; do
        n=$((n + 1))
        if "c_$f" "1528$n" >>"$ROOT/commands.log" 2>&1; then row+=" ok |"; else row+=" FAIL |"; fi
    done
    echo "$row" | tee -a "$out"
done
[ "${MEASURE:-1}" = 1 ] || exit 0

load=$(cut -d' ' -f1-3 /proc/loadavg)
DOCKER=$(command -v docker)
hyperfine -N --warmup 3 --runs "$RUNS" --export-markdown "$ROOT/run-rm.md" \
    -n "rootless berth" "runuser -u $U -- env -i HOME=$HOMEDIR $DOCKER -H $BH run --rm busybox true" \
    -n "rootless dockerd" "runuser -u $U -- env -i HOME=$HOMEDIR $DOCKER -H $DH run --rm busybox true"

measure() { # PORT -> Gbit/s
    local out
    out=$(iperf3 -c 127.0.0.1 -p "$1" -t "$SECS" -J 2>/dev/null) || { echo "n/a"; return; }
    echo "$out" | python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))'
}
as_user docker -H "$BH" run -d --name iperf -p 15211:5201 iperf3:bench /usr/bin/iperf3 -s >/dev/null
as_user docker -H "$DH" run -d --name iperf -p 15212:5201 iperf3:bench /usr/bin/iperf3 -s >/dev/null
sleep 1
b=$(measure 15211)
d=$(measure 15212)
as_user docker -H "$BH" rm -f iperf >/dev/null
as_user docker -H "$DH" rm -f iperf >/dev/null
{
    echo "Rootless, both daemons run by one user; load average before: $load"
    echo
    echo "\`run --rm busybox true\` (docker CLI 28 against each; runuser in both commands)"
    echo
    cat "$ROOT/run-rm.md"
    echo
    echo "iperf3, ${SECS} s, host client → 127.0.0.1:port → container server (Gbit/s, receiver side)"
    echo
    echo "| rootless berth (berth rootless portd + DNAT) | rootless dockerd (rootlesskit builtin port driver) |"
    echo "|---|---|"
    echo "| $b | $d |"
} | tee "$RESULTS/rootless.md"
