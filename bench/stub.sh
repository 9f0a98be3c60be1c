#!/usr/bin/env bash
# The stub's boot-time benchmark: one boot of the demo's guest under QEMU
# (TCG) + swtpm TPM 2.0 with printk timestamps, then a table of the stub's
# "vtpmboot: phase <name> <N>ms" lines, its userspace time (/init to the
# kexec call) against the kernel's time to reach /init ("Run /init as init
# process"), their ratio (goal <= 10%), and the stub initramfs size.
#
#   bench/stub.sh           build and boot in out/bench/stub (about 30 s)
#   bench/stub.sh --reuse   no boot: read the console `make demo` saved
#
# Progress goes to stderr, the table to stdout. Under TCG there is no SHA-NI
# and every TPM command is emulated: the numbers are upper bounds, far above
# what a Xen guest with hardware crypto sees.
set -euo pipefail
cd "$(dirname "$0")/.."
out=out/bench/stub
args=(-bench -out "$out")
if [ "${1:-}" = "--reuse" ]; then
  [ -f out/demo/console.log ] || { echo "bench/stub.sh: no out/demo/console.log; run make demo first" >&2; exit 2; }
  args=(-bench -out out/demo -console out/demo/console.log)
elif [ $# -gt 0 ]; then
  echo "usage: bench/stub.sh [--reuse]" >&2; exit 2
fi
mkdir -p "$out/bin"
CGO_ENABLED=0 go build -o "$out/bin/demo" ./internal/demo
exec "$out/bin/demo" "${args[@]}"
