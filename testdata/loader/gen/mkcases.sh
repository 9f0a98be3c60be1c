#!/usr/bin/env bash
# Writes testdata/loader/grub2/mkconfig-*.case: each is grub-mkconfig.sh's
# output for one /etc/default/grub variant (and, for some, 40_custom text or
# a grubenv), with the files the config names. Run as root from anywhere;
# review the diff before committing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$here/../grub2
uuid=0b6e3f3a-7c52-4a43-a3f4-5d5ab9d8c0b1
pw=$(printf 'secret\nsecret\n' | grub-mkpasswd-pbkdf2 -c 1000 | sed -n 's/.*is \(grub\.pbkdf2.*\)/\1/p')
gen() { # name "description" [grubenv=...]... -- GRUB_X=... ...
  local name=$1 desc=$2; shift 2
  local env=() deadline=""
  while [ $# -gt 0 ] && [ "$1" != -- ]; do
    case $1 in deadline=*) deadline=${1#deadline=};; *) env+=("$1");; esac; shift
  done
  shift
  {
    echo "source: Debian 12 grub-mkconfig (grub-common 2.06-13) via gen/grub-mkconfig.sh: $desc"
    echo "uuid: $uuid"
    for v in 6.1.0-13-amd64 6.1.0-18-amd64; do echo "kernel: /boot/vmlinuz-$v"; echo "initrd: /boot/initrd.img-$v"; done
    for e in "${env[@]}"; do echo "grubenv: $e"; done
    [ -z "$deadline" ] || echo "deadline: $deadline"
    echo "-- boot/grub/grub.cfg --"
    local custom=""; local args=()
    for a; do case $a in GEN_CUSTOM=*) custom=${a#GEN_CUSTOM=};; *) args+=("$a");; esac; done
    GEN_CUSTOM=$custom "$here/grub-mkconfig.sh" "${args[@]}"
  } > "$out/mkconfig-$name.case"
}
gen default "stock /etc/default/grub (GRUB_TIMEOUT=1)" --
gen saved-submenu "GRUB_DEFAULT=saved, grubenv saved_entry names a submenu entry by ids (grub-set-default)" \
  deadline=60 "saved_entry=gnulinux-advanced-$uuid>gnulinux-6.1.0-13-amd64-advanced-$uuid" -- GRUB_DEFAULT=saved
gen saved-title "GRUB_DEFAULT=saved, saved_entry is a submenu entry's title without its submenu" \
  deadline=60 "saved_entry=Debian GNU/Linux, with Linux 6.1.0-13-amd64" -- GRUB_DEFAULT=saved
gen saved-missing "GRUB_DEFAULT=saved with no grubenv file" -- GRUB_DEFAULT=saved
gen next-entry "grub-reboot: next_entry=1>2 in grubenv" deadline=60 "next_entry=1>2" --
gen default-path "GRUB_DEFAULT=\"1>3\" (a submenu position)" -- 'GRUB_DEFAULT="1>3"'
gen default-id "GRUB_DEFAULT names the recovery entry by submenu and entry ids" -- "GRUB_DEFAULT=\"gnulinux-advanced-$uuid>gnulinux-6.1.0-18-amd64-recovery-$uuid\""
gen default-out-of-range "GRUB_DEFAULT=7 names nothing" -- GRUB_DEFAULT=7
gen no-submenu "GRUB_DISABLE_SUBMENU=y, GRUB_DEFAULT=3" -- GRUB_DISABLE_SUBMENU=y GRUB_DEFAULT=3
gen quoting "GRUB_CMDLINE_LINUX with double quotes, a single-quoted word, a backslash and \$" -- \
  "GRUB_CMDLINE_LINUX='console=ttyS0,115200 foo=\"bar baz\" opt='\\''it s'\\'' back\\\\slash dollar=\\\$x'"
gen timeout-forever "GRUB_TIMEOUT=-1: the menu waits for a key" deadline=15 -- GRUB_TIMEOUT=-1
gen timeout-hidden "GRUB_TIMEOUT_STYLE=hidden, GRUB_TIMEOUT=1" -- GRUB_TIMEOUT_STYLE=hidden
gen superusers "40_custom: set superusers + password_pbkdf2; 10_linux entries are not --unrestricted" deadline=15 -- \
  "GEN_CUSTOM=set superusers=\"root\"
password_pbkdf2 root $pw"
