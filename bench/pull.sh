#!/usr/bin/env bash
# `pull` from a local `berth registry serve`: a ~127 MB Debian (debootstrap minbase, one layer)
# and the same tree split into 5 layers. Every run starts with the image (and its layers) gone.
# docker pulls from the same registry (localhost is plain HTTP for it too).
#
# Both stores live on a fresh journaled ext4 (a loop file, $CACHE/fs): this machine's root fs
# has no journal, and ext4 without one scans every inode freed in the last 60-300 s before it
# hands out a new one, so a pull right after an `rmi` of the same tree gets slower run after run
# (seen: 1.0 s, 2.0 s, 3.1 s, 4.5 s). For docker's figure, run a dockerd with
# `--data-root $CACHE/fs/docker` and point BENCH_DOCKER_HOST at it (bench/dockerd-on-fs.sh).
set -euo pipefail
CACHE=${BENCH_CACHE:-/var/tmp/berth-bench}
FS=$CACHE/fs
mkdir -p "$CACHE" "$FS"
if ! mountpoint -q "$FS"; then
    truncate -s 8G "$CACHE/fs.img"
    mkfs.ext4 -q -F "$CACHE/fs.img"
    mount -o loop "$CACHE/fs.img" "$FS"
fi
export BENCH_TMP=$FS
source "$(dirname "$0")/lib.sh"
need_tools
ROOTFS=$CACHE/debian-rootfs
if [ ! -x "$ROOTFS/bin/sh" ]; then
    command -v debootstrap >/dev/null || die "debootstrap is missing (apt-get install debootstrap)"
    rm -rf "$ROOTFS.tmp"
    echo "bench: debootstrap bookworm (minbase) into $ROOTFS"
    mirror=$("$(dirname "$0")/../scripts/debian-mirror") || die "no Debian mirror in apt's sources"
    debootstrap --variant=minbase bookworm "$ROOTFS.tmp" "$mirror" \
        >"$CACHE/debootstrap.log" 2>&1 || die "debootstrap failed: see $CACHE/debootstrap.log"
    rm -rf "$ROOTFS.tmp"/var/cache/apt/archives/*.deb "$ROOTFS.tmp"/var/lib/apt/lists/*
    mv "$ROOTFS.tmp" "$ROOTFS"
fi

start_daemon
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
REG=127.0.0.1:$port
"$BERTH" registry serve --addr "$REG" --storage "$BENCH_DIR/registry" >"$BENCH_DIR/registry.log" 2>&1 &
REG_PID=$!
trap 'kill $REG_PID 2>/dev/null; stop_daemon' EXIT
until curl -sf "http://$REG/v2/" >/dev/null; do sleep 0.05; done

DEB=$REG/bench/debian:bookworm
FIVE=$REG/bench/debian5:bookworm
tar --numeric-owner -C "$ROOTFS" -cf - . | $B import - "$DEB" >/dev/null
parts=$BENCH_DIR/parts
mkdir -p "$parts"
tar --numeric-owner -C "$ROOTFS" --exclude=./usr/lib --exclude=./usr/share --exclude=./usr/bin \
    --exclude=./usr/sbin --exclude=./var -cf "$parts/1.tar" .
tar --numeric-owner -C "$ROOTFS" -cf "$parts/2.tar" ./usr/lib
tar --numeric-owner -C "$ROOTFS" -cf "$parts/3.tar" ./usr/share
tar --numeric-owner -C "$ROOTFS" -cf "$parts/4.tar" ./usr/bin ./usr/sbin
tar --numeric-owner -C "$ROOTFS" -cf "$parts/5.tar" ./var
"$TEST_IMAGE" layers "$parts"/{1,2,3,4,5}.tar --tag "$FIVE" -o "$BENCH_DIR/five.tar"
$B load -i "$BENCH_DIR/five.tar" >/dev/null
rm -rf "$parts" "$BENCH_DIR/five.tar"
for img in "$DEB" "$FIVE"; do
    $B push "$img" >/dev/null
    $B rmi "$img" >/dev/null
done
echo "bench: image sizes: $(du -sh "$BENCH_DIR/registry" | cut -f1) in the registry (both images, gzip)"

# Every layer must really come over the wire in a measured run.
check_full_pull() {
    local img=$1 layers=$2 out
    out=$($B pull "$img")
    [ "$(grep -c ': Pull complete' <<<"$out")" = "$layers" ] || die "pull of $img did not fetch $layers layers: $out"
}
check_full_pull "$DEB" 1
check_full_pull "$FIVE" 5

bench_one() {
    local name=$1 img=$2
    local args=(-N --warmup 1 --runs "${RUNS:-5}" --export-markdown "$RESULTS/$name.md"
        --prepare "$BERTH -H $HOST rmi $img" -n berth "$BERTH -H $HOST pull -q $img")
    if docker_available; then
        DOCKER_HOST=${BENCH_DOCKER_HOST:-} docker pull -q "$img" >/dev/null
        args+=(--prepare "env DOCKER_HOST=${BENCH_DOCKER_HOST:-} docker rmi $img" -n docker "env DOCKER_HOST=${BENCH_DOCKER_HOST:-} docker pull -q $img")
    else
        echo "bench: no dockerd answering: docker's figure skipped"
    fi
    hyperfine "${args[@]}"
}
bench_one pull-debian "$DEB"
bench_one pull-5-layers "$FIVE"
$B rmi "$DEB" "$FIVE" >/dev/null
check_full_pull "$DEB" 1
check_full_pull "$FIVE" 5
if docker_available; then
    DOCKER_HOST=${BENCH_DOCKER_HOST:-} docker rmi "$DEB" "$FIVE" >/dev/null 2>&1 || true
fi
