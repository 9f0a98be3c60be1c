#!/usr/bin/env bash
# Unpacks Debian's Xen hypervisor into .cache/xen/xen for the Xen-in-QEMU
# tests (internal/xentest), without installing it: an installed
# xen-hypervisor package would hook into the host's GRUB. Xen's userspace
# (xen-utils-4.17, qemu-system-xen) is installed by scripts/deps.sh, since
# the tests' dom0 runs the host's root. Prints nothing when cached.
set -euo pipefail
cd "$(dirname "$0")/.."
out=.cache/xen
if [ -f "$out/xen" ]; then exit 0; fi
pkg=xen-hypervisor-4.17-amd64
echo "fetch-xen: $pkg"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp" # apt-get download runs as _apt where it can
(cd "$tmp" && apt-get download -q "$pkg" >/dev/null 2>&1) || { echo "fetch-xen: apt-get download $pkg failed" >&2; exit 1; }
dpkg-deb -x "$tmp"/*.deb "$tmp/x"
mkdir -p "$out"
gunzip -c "$tmp"/x/boot/xen-4.17-amd64.gz > "$out/xen.tmp"
dpkg-deb -f "$tmp"/*.deb Version > "$out/version"
mv "$out/xen.tmp" "$out/xen"
