#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh Debian 12 machine:
# the Debian packages, then the Debian kernel the stub and the e2e guests boot.
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=(qemu-system-x86 swtpm swtpm-tools tpm2-tools e2fsprogs dosfstools mtools fdisk openssl cpio xz-utils zstd kmod time libxen-dev xfsprogs busybox-static qemu-utils btrfs-progs
  grub-pc-bin syslinux syslinux-common grub-legacy binutils)  # e2e/loader: the real loaders and the observer's assembler
# GRUB 0.97's shell is i386: qemu-user-static runs it where the kernel refuses
# i386 executables; grub-emu is GRUB 2.06 in userspace, the script oracle.
pkgs+=(qemu-user-static grub-emu)
# The Xen suite (e2e/xen): its dom0 runs this machine's root, so Xen's
# userspace is installed here; the hypervisor is only unpacked (fetch-xen.sh).
pkgs+=(xen-utils-4.17 qemu-system-xen)
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
