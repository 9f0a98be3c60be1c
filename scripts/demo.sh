#!/usr/bin/env bash
# make demo: installs what is missing (scripts/deps.sh: Debian packages and
# Debian's kernel), builds the stub with mkstub, makes a guest disk with a
# two-entry grub.cfg, predicts its PCRs with pcrsim, boots it under QEMU with
# an swtpm TPM 2.0 and compares. Everything lands in out/demo/. Exit status:
# 0 MATCH, 1 MISMATCH, 2 could not run. Takes 1-2 minutes (a cold Go build
# cache adds a few). The program itself is internal/demo.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v go >/dev/null || { echo "demo: Go is not installed (go.mod wants $(awk '/^go /{print $2}' go.mod))" >&2; exit 2; }
echo "demo: checking dependencies (scripts/deps.sh: qemu-system-x86, swtpm, tpm2-tools, e2fsprogs, Debian's kernel) ..."
scripts/deps.sh
mkdir -p out/demo/bin
CGO_ENABLED=0 go build -o out/demo/bin/demo ./internal/demo
exec out/demo/bin/demo -out out/demo "$@"
