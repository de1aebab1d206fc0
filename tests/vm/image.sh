#!/usr/bin/env bash
# Builds (or finds in the cache) the test VM's boot files and prints their directory:
#
#   vmlinux      Debian bookworm's kernel (linux-image-amd64's target, `apt-get download`ed and
#                unpacked, never installed on the host), decompressed: QEMU boots the ELF through
#                its PVH entry, which skips the bzImage's own xz decompression (45 s of a boot
#                under software emulation on a loaded machine, against 2 s here)
#   initrd.gz    busybox-static and the modules needed to reach the root disk (virtio_pci,
#                virtio_blk, ext4 and what `depmod` says they depend on), and an /init that
#                loads them, mounts /dev/vda and switches to it
#   rootfs.ext4  `debootstrap --variant=minbase bookworm` with systemd as init, dbus, nftables,
#                iproute2, busybox-static and the kernel's modules; it boots into berth-vm.target,
#                which starts only D-Bus and a unit that runs the test plan from the host's shared
#                folder and powers the VM off
#
# The cache directory ($BERTH_VM_CACHE, default /var/cache/berth-vm) holds one directory per
# (kernel version, this script's text): a new kernel in apt's lists or an edit here makes a new
# image, anything else reuses it. Only Debian packages and the host's Debian mirror (read from
# apt's sources by scripts/debian-mirror) are used. Runs as root.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${BERTH_VM_CACHE:-/var/cache/berth-vm}
SUITE=bookworm
# The packages of the root filesystem, beyond minbase. procps: `berth top` runs ps; uidmap
# (newuidmap/newgidmap), slirp4netns and passwd (useradd): rootless berth as a throwaway user.
PACKAGES=systemd,systemd-sysv,udev,dbus,kmod,busybox-static,nftables,iproute2,procps,uidmap,slirp4netns,passwd
# Modules the initramfs loads to mount the root disk (their dependencies are added by modprobe).
BOOT_MODULES=(virtio_pci virtio_blk ext4 crc32c_generic)
# Module trees left out of the root filesystem: hardware a VM never has (saves ~250 MB).
PRUNE=(sound drivers/gpu drivers/media drivers/net/wireless drivers/infiniband drivers/staging
    drivers/scsi drivers/usb drivers/bluetooth drivers/iio drivers/hid drivers/input drivers/isdn)

# Only the image's directory goes to stdout (fd 3); everything else to stderr.
exec 3>&1 1>&2
log() { echo "vm-image: $*"; }
die() {
    log "$*"
    exit 1
}

[ "$(id -u)" = 0 ] || die "run as root (debootstrap, the image's owners and device nodes)"
for t in apt-get apt-cache dpkg-deb debootstrap depmod modprobe mke2fs cpio gzip xz sha256sum flock; do
    command -v "$t" >/dev/null || die "missing $t (tests/vm/run.sh installs the harness's apt packages)"
done
BUSYBOX=/bin/busybox
[ -x "$BUSYBOX" ] || die "no static busybox at $BUSYBOX: apt-get install busybox-static"

# The kernel package the metapackage points at, e.g. linux-image-6.1.0-57-amd64, and its version.
KPKG=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
[ -n "$KPKG" ] || die "apt knows no linux-image-amd64 (apt-get update?)"
KVER_PKG=$(apt-cache policy "$KPKG" | awk '/Candidate:/ { print $2 }')
KREL=${KPKG#linux-image-}

KEY=$(printf '%s\n' "$KPKG=$KVER_PKG" "$PACKAGES" | cat - "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)
OUT=$CACHE/$KREL-$KEY
if [ -f "$OUT/ready" ]; then
    echo "$OUT" >&3
    exit 0
fi

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9
if [ -f "$OUT/ready" ]; then
    echo "$OUT" >&3
    exit 0
fi
t0=$(date +%s)
MIRROR=${BERTH_VM_MIRROR:-$("$REPO/scripts/debian-mirror")}
WORK=$(mktemp -d "$CACHE/build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# --- the kernel -----------------------------------------------------------------------------
log "kernel: $KPKG $KVER_PKG"
mkdir -p "$CACHE/debs"
deb=$(ls "$CACHE/debs/${KPKG}_${KVER_PKG//:/%3a}_"*.deb 2>/dev/null | head -n1 || true)
if [ -z "$deb" ]; then
    # apt-get download writes to the working directory; _apt cannot write to root's cache.
    (cd "$CACHE/debs" && apt-get download -q "$KPKG=$KVER_PKG" 2>&1 | grep -v '^W: Download is performed unsandboxed') ||
        die "apt-get download $KPKG=$KVER_PKG failed"
    deb=$(ls "$CACHE/debs/${KPKG}_"*.deb | head -n1)
fi
mkdir -p "$WORK/k"
dpkg-deb -x "$deb" "$WORK/k"
# Bookworm's packages put modules in /lib (not merged into /usr yet).
KMOD=$WORK/k/lib/modules/$KREL
[ -d "$KMOD" ] || KMOD=$WORK/k/usr/lib/modules/$KREL
[ -d "$KMOD" ] || die "no modules for $KREL in $deb"
for p in "${PRUNE[@]}"; do rm -rf "${KMOD:?}/kernel/$p"; done
depmod -b "$WORK/k" "$KREL"
mkdir -p "$WORK/out"
# The bzImage wraps an xz stream of the ELF kernel (Debian builds with CONFIG_KERNEL_XZ); the
# ELF carries the PVH entry note (CONFIG_PVH) QEMU's -kernel boots directly.
vmlinuz=$WORK/k/boot/vmlinuz-$KREL
xz_at=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$vmlinuz" | head -n1 | cut -d: -f1)
[ -n "$xz_at" ] || die "no xz stream in $vmlinuz"
tail -c +$((xz_at + 1)) "$vmlinuz" | xz -dcq >"$WORK/out/vmlinux" 2>/dev/null || true
[ "$(head -c4 "$WORK/out/vmlinux" | od -An -c | tr -d ' ')" = '177ELF' ] ||
    die "$vmlinuz did not decompress to an ELF kernel"

# --- the initramfs --------------------------------------------------------------------------
I=$WORK/initramfs
mkdir -p "$I/bin" "$I/dev" "$I/proc" "$I/sys" "$I/newroot" "$I/lib/modules"
cp "$BUSYBOX" "$I/bin/busybox"
# modprobe prints the insmod lines in load order, dependencies first; keep each module once.
modprobe -d "$WORK/k" -S "$KREL" --show-depends -a "${BOOT_MODULES[@]}" |
    awk '$1 == "insmod" && !seen[$2]++ { print $2 }' >"$WORK/boot-modules"
[ -s "$WORK/boot-modules" ] || die "modprobe resolved no boot modules"
: >"$I/modules"
while read -r ko; do
    cp "$ko" "$I/lib/modules/"
    basename "$ko" >>"$I/modules"
done <"$WORK/boot-modules"
log "initramfs modules: $(tr '\n' ' ' <"$I/modules")"
cat >"$I/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules); do
    insmod "/lib/modules/$m" 2>/dev/null || echo "initramfs: insmod $m failed"
done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
if ! mount -t ext4 -o rw /dev/vda /newroot; then
    echo "initramfs: cannot mount /dev/vda"
    poweroff -f
fi
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /sbin/init
INIT
chmod 755 "$I/init"
(cd "$I" && find . | cpio -o -H newc --quiet | gzip -1 >"$WORK/out/initrd.gz")

# --- the root filesystem --------------------------------------------------------------------
R=$WORK/rootfs
log "debootstrap $SUITE (minbase + $PACKAGES)"
if ! debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$R" "$MIRROR" >"$WORK/debootstrap.log" 2>&1; then
    tail -n 30 "$WORK/debootstrap.log" >&2
    die "debootstrap failed"
fi
rm -rf "$R/var/cache/apt/archives/"*.deb "$R/var/lib/apt/lists/"*
mkdir -p "$R/lib/modules"
cp -a "$KMOD" "$R/lib/modules/"
depmod -b "$R" "$KREL"
echo berth-vm >"$R/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tberth-vm\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$R/etc/hosts"
echo '/dev/vda / ext4 rw,relatime 0 1' >"$R/etc/fstab"
# No network in the VM: containers resolve through Berth's resolver, nothing goes upstream.
echo 'nameserver 127.0.0.1' >"$R/etc/resolv.conf"
# The boot starts berth-vm.target: D-Bus (the systemd driver talks to systemd through it) and
# the test plan, without sysinit.target's units (journald, udev, tmpfiles, sysusers...) that
# cost half a minute under software emulation and that the tests do not use: PID 1 itself
# mounts the API filesystems and cgroup2, and brings the loopback up.
cat >"$R/etc/systemd/system/berth-vm.target" <<'UNIT'
[Unit]
Description=Berth test VM
Wants=berth-vm-run.service
AllowIsolate=yes
UNIT
ln -sf /etc/systemd/system/berth-vm.target "$R/etc/systemd/system/default.target"
for u in dbus.socket dbus.service; do
    mkdir -p "$R/etc/systemd/system/$u.d"
    printf '[Unit]\nDefaultDependencies=no\n' >"$R/etc/systemd/system/$u.d/berth-vm.conf"
done
# Generators run at every boot (a second each here); debug-generator stays for systemd.mask=,
# systemd.wants= and systemd.debug_shell on the kernel command line.
find "$R/usr/lib/systemd/system-generators" -mindepth 1 ! -name systemd-debug-generator -delete
# The console carries the test output: no login prompt on it, no units the tests do not need.
for u in serial-getty@ttyS0.service getty@tty1.service systemd-timesyncd.service apt-daily.timer \
    apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer systemd-tmpfiles-clean.timer; do
    ln -sf /dev/null "$R/etc/systemd/system/$u"
done
cat >"$R/usr/local/sbin/berth-vm-run" <<'RUN'
#!/bin/sh
# Mounts the host's results folder and runs the script the host put there (tests/vm/inside.sh),
# so that everything past this point changes without a new image.
mkdir -p /mnt/results
# The 9p transport's module (nothing else loads it: no udev coldplug), then the mount.
modprobe 9pnet_virtio 2>/dev/null
i=0
until mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288 results /mnt/results 2>/dev/null; do
    i=$((i + 1))
    if [ $i -ge 120 ]; then
        echo "vm: cannot mount the results folder"
        exit 1
    fi
    sleep 0.5
done
exec /bin/sh /mnt/results/inside.sh
RUN
chmod 755 "$R/usr/local/sbin/berth-vm-run"
cat >"$R/etc/systemd/system/berth-vm-run.service" <<'UNIT'
[Unit]
Description=Berth test plan
DefaultDependencies=no
Wants=dbus.service
After=dbus.service
SuccessAction=poweroff-force
FailureAction=poweroff-force

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/berth-vm-run
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
TimeoutStartSec=infinity
UNIT
# User managers (user@UID.service, rootless berth's tests): logind does not run in this boot, so
# pam_systemd cannot give them XDG_RUNTIME_DIR (user-runtime-dir@UID.service still makes the
# directory); the same value here.
mkdir -p "$R/etc/systemd/system/user@.service.d"
printf '[Service]\nEnvironment=XDG_RUNTIME_DIR=/run/user/%%i\n' >"$R/etc/systemd/system/user@.service.d/berth-vm.conf"
# The journal stays in memory (the disk is a throwaway snapshot anyway).
mkdir -p "$R/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\n' >"$R/etc/systemd/journald.conf.d/volatile.conf"

size_mb=$(($(du -sm "$R" | cut -f1) + 1536))
mke2fs -q -t ext4 -L berth-vm -d "$R" "$WORK/out/rootfs.ext4" "${size_mb}M"
printf '%s\n' "kernel=$KPKG $KVER_PKG" "packages=$PACKAGES" "built=$(date -u +%FT%TZ)" >"$WORK/out/ready"
mv "$WORK/out" "$OUT"
# Older images of this harness are dead weight.
for d in "$CACHE"/*-*; do
    [ "$d" = "$OUT" ] || [ ! -f "$d/ready" ] || rm -rf "$d"
done
log "built $OUT in $(($(date +%s) - t0))s"
echo "$OUT" >&3
