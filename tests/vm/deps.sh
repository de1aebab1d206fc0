#!/usr/bin/env bash
# Installs the apt packages the VM harness needs, when missing. qemu-system-x86 comes from
# bookworm-backports (QEMU 10; bookworm's own 7.2 is older than what the harness was tried with):
# when no apt source has that suite, one is added for the mirror apt already uses
# (scripts/debian-mirror), so no registry host is written anywhere.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
need=(debootstrap kmod cpio e2fsprogs busybox-static xz-utils)
missing=()
for p in "${need[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
qemu_missing=0
command -v qemu-system-x86_64 >/dev/null || qemu_missing=1
if ((${#missing[@]} == 0 && qemu_missing == 0)); then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if ((qemu_missing)) && ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    mirror=$("$REPO/scripts/debian-mirror")
    echo "vm-deps: adding bookworm-backports ($mirror) to apt's sources"
    printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$mirror" >/etc/apt/sources.list.d/bookworm-backports.sources
fi
apt-get update -qq
if ((${#missing[@]})); then
    echo "vm-deps: installing ${missing[*]}"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ((qemu_missing)); then
    echo "vm-deps: installing qemu-system-x86 from bookworm-backports"
    apt-get install -y -qq --no-install-recommends -t bookworm-backports qemu-system-x86 >/dev/null
fi
