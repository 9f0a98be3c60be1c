#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh Debian 12 machine:
# the Debian packages, then the Debian kernel the stub and the e2e guests boot.
set -euo pipefail
cd "$(dirname "$0")/.."
# Go is not a Debian package here: go.mod needs a newer Go than Debian 12's
# golang-go (1.19). The go on PATH must be at least go.mod's; README.md,
# "Install", says where to get it.
need=$(awk '$1 == "go" {print $2; exit}' go.mod)
have=$(GOTOOLCHAIN=local go env GOVERSION 2>/dev/null | sed 's/^go//') || true
if [ -z "$have" ] || [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -1)" != "$need" ]; then
  echo "deps: need Go >= $need on PATH (have: ${have:-none}); install it from go.dev as README.md's Install section says" >&2
  exit 1
fi
pkgs=(qemu-system-x86 swtpm swtpm-tools tpm2-tools e2fsprogs dosfstools mtools fdisk openssl cpio xz-utils zstd kmod time libxen-dev xfsprogs busybox-static qemu-utils btrfs-progs
  grub-pc-bin syslinux syslinux-common grub-legacy binutils)  # e2e/loader: the real loaders and the observer's assembler
# GRUB 0.97's shell is i386: qemu-user-static runs it where the kernel refuses
# i386 executables; grub-emu is GRUB 2.06 in userspace, the script oracle.
pkgs+=(qemu-user-static grub-emu)
# The Xen suite (e2e/xen): its dom0 runs this machine's root, so Xen's
# userspace is installed here; the hypervisor is only unpacked (fetch-xen.sh).
pkgs+=(xen-utils-4.17 qemu-system-xen)
# make deb and e2e/deb: Debian's package tooling, and debootstrap for the
# throwaway Debian root the package is installed into.
pkgs+=(debhelper lintian debootstrap)
# e2e/deb renders the man pages (man -l); cmd/vtpmback checks its unit with
# systemd-analyze verify. Both come with Debian 12's base image; named so
# that a smaller one still gets them.
pkgs+=(man-db systemd)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
scripts/fetch-kernel.sh
scripts/fetch-xen.sh
