#!/usr/bin/env bash
# Regenerates the grub2/mkconfig-*.case corpus configs with Debian 12's own
# grub-mkconfig and /etc/grub.d scripts (package grub-common 2.06-13), run
# over a made-up /boot in a private mount namespace (root needed; the host's
# /boot and /etc/default/grub are never touched). grub-probe is replaced by
# a script that describes the made-up disk: one MBR partition, ext4, with
# the UUID below, holding / and /boot.
#   usage: sudo testdata/loader/gen/grub-mkconfig.sh 'GRUB_X=...' ...
# prints the generated grub.cfg on stdout.
set -euo pipefail
uuid=0b6e3f3a-7c52-4a43-a3f4-5d5ab9d8c0b1
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/boot/grub" "$tmp/bin"
for v in 6.1.0-13-amd64 6.1.0-18-amd64; do
  : > "$tmp/boot/vmlinuz-$v"; : > "$tmp/boot/initrd.img-$v"; : > "$tmp/boot/config-$v"
done
cat > "$tmp/bin/grub-probe" <<PROBE
#!/bin/sh
for a; do case \$a in --target=*) t=\${a#--target=};; esac; done
case \$t in
  device) echo /dev/vda1;; fs) echo ext2;; fs_uuid) echo $uuid;; fs_label) echo;;
  partmap) echo msdos;; abstraction) echo;; drive) echo '(hd0,msdos1)';;
  compatibility_hint) echo hd0,msdos1;; hints_string) echo '--hint-bios=hd0,msdos1 --hint-efi=hd0,msdos1 --hint-baremetal=ahci0,msdos1';;
  partuuid) echo 1234abcd-01;; *) echo;;
esac
PROBE
printf '#!/bin/sh\necho "$1"\n' > "$tmp/bin/grub-mkrelpath"   # / and /boot are one filesystem
chmod +x "$tmp/bin/grub-probe" "$tmp/bin/grub-mkrelpath"
mkdir -p "$tmp/etc-default"
# GEN_CUSTOM goes into 40_custom, where an admin adds entries, users and
# passwords.
cp -a /etc/grub.d "$tmp/grub.d"
if [ -n "${GEN_CUSTOM:-}" ]; then printf '%s\n' "$GEN_CUSTOM" >> "$tmp/grub.d/40_custom"; fi
{
  echo 'GRUB_DEFAULT=0'
  echo 'GRUB_TIMEOUT=1'
  echo 'GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`'
  echo 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"'
  echo 'GRUB_CMDLINE_LINUX=""'
  echo 'GRUB_DISABLE_OS_PROBER=true'
  for kv; do echo "$kv"; done
} > "$tmp/etc-default/grub"
unshare -m sh -c "
  mount --make-rprivate /
  mount --bind '$tmp/boot' /boot || exit 1
  mount --bind '$tmp/etc-default' /etc/default || exit 1
  mount --bind '$tmp/grub.d' /etc/grub.d || exit 1
  mount --bind '$tmp/bin/grub-probe' /usr/sbin/grub-probe || exit 1
  mount --bind '$tmp/bin/grub-mkrelpath' /usr/bin/grub-mkrelpath || exit 1
  grub-mkconfig -o '$tmp/grub.cfg' 2>'$tmp/err' || { cat '$tmp/err' >&2; exit 1; }
"
cat "$tmp/grub.cfg"
