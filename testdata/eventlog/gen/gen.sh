#!/bin/sh
# Regenerates the SeaBIOS firmware event logs in testdata/eventlog/ by
# booting the Debian kernel (.cache/kernel/vmlinuz, scripts/fetch-kernel.sh)
# under QEMU TCG with swtpm, TPM 2.0 then TPM 1.2. Run from the repo root:
#   sh testdata/eventlog/gen/gen.sh
set -eu
out=testdata/eventlog
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
CGO_ENABLED=0 go build -trimpath -o "$work/root/init" ./testdata/eventlog/gen
(cd "$work/root" && echo init | cpio -o -H newc --quiet) | gzip -9 >"$work/init.cpio.gz"

boot() { # $1 = swtpm version flag ("--tpm2" or ""), $2 = output file
	d="$work/tpm$$"
	rm -rf "$d"; mkdir -p "$d"
	swtpm socket $1 --tpmstate dir="$d" --ctrl type=unixio,path="$d/sock" --terminate &
	spid=$!
	while [ ! -S "$d/sock" ]; do sleep 0.1; done
	timeout 120 qemu-system-x86_64 -machine q35,accel=tcg -m 512 -nographic -no-reboot \
		-kernel .cache/kernel/vmlinuz -initrd "$work/init.cpio.gz" \
		-append "console=ttyS0 panic=-1 quiet" \
		-chardev socket,id=chrtpm,path="$d/sock" -tpmdev emulator,id=tpm0,chardev=chrtpm \
		-device tpm-tis,tpmdev=tpm0 >"$work/console.txt" 2>&1 || true
	kill "$spid" 2>/dev/null || true
	wait "$spid" 2>/dev/null || true
	tr -d '\r' <"$work/console.txt" | sed -n '/-----BEGIN EVENTLOG-----/,/-----END EVENTLOG-----/p' |
		grep -v -- ----- | base64 -d >"$2"
	test -s "$2"
	echo "$2: $(wc -c <"$2") bytes"
}
boot --tpm2 "$out/seabios-tpm20.bin"
boot "" "$out/seabios-tpm12.bin"
