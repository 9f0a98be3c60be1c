package main

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/vtpmboot/vtpmboot/host/predict"
)

// The help texts: what each subcommand prints for --help, before its flags.

const topUsage = `usage: pcrsim <command> [flags]

commands:
  predict   compute the PCR 4 and 5 values vtpmboot will produce
  verify    compare a prediction with actual PCR readings (--current: this
            machine's TPM; --eventlog: replay TCG event logs)
  policy    TPM 2.0 policy digests, the TPM 1.2 composite, and inputs for
            tpm2-tools, systemd-cryptenroll, Keylime and systemd-pcrlock
  eventlog  extract: the stub's event log from a saved console

Run 'pcrsim <command> --help' for a command's flags and examples;
'pcrsim --version' prints the version and the measurement contract.
`

const predictHelp = `usage: pcrsim predict --kernel FILE [--initrd FILE]... --cmdline STRING
                     [--bank sha1,sha256,...] [--pcr-init PCR:BANK=HEX]...
                     [--format text|json|eventlog] [--tpm 1.2|2.0] [--log-format sha1|crypto-agile]
       pcrsim predict (--root DIR | --disk IMAGE...) [--entry SEL] [--list] [...]
       pcrsim predict --xl-config FILE|DIR... [--format json|jsonl|table] [--no-cache] [--workers N] [--guest-timeout D]

Computes the PCR values vtpmboot's stub produces when it boots this kernel,
initrd(s) and command line: kernel into PCR 4; command line, then all
initrds as one image, 4-byte aligned as GRUB2 loads several (the empty
string when there is none) into PCR 5.
Files are streamed, never loaded whole.

--root and --disk find the guest's boot configuration the way the stub does
(boot/discover) on a mounted tree or on raw disk images read in userspace
(never mounted), and predict the entry it boots; --list shows every
configuration and entry instead. --xl-config predicts every guest of xl
domU configs (a directory: every config in it), in parallel; exit 1 if
any guest failed. See docs/pcrsim.md.

Output formats:
  text      each extend with its digest and the PCR before and after, then
            the final values (default)
  json      {"banks":{"sha1":{"4":"<hex>","5":"<hex>"},...},"events":[...]}
  eventlog  the binary TCG event log the stub writes, on stdout:
            the layout the stub writes for --tpm 1.2 (SHA-1 events) or 2.0
            (crypto-agile, the default; --log-format overrides);
            not with --pcr-init (a log carries no starting values)
  jsonl     (--xl-config) one JSON document per guest per line
  table     (--xl-config) guest, entry, PCR 4 and 5 per bank (short hex)

Examples:
  pcrsim predict --kernel /boot/vmlinuz --initrd /boot/initrd.img \
      --cmdline "root=/dev/xvda1 ro quiet"
  pcrsim predict --kernel vmlinuz --cmdline "" --bank sha256 --format json
  pcrsim predict --kernel vmlinuz --cmdline "console=hvc0" \
      --pcr-init 4:sha256=0x5c1e... --format json > expected.json
  pcrsim predict --kernel vmlinuz --cmdline "console=hvc0" --format eventlog > log.bin

Flags:
`

const verifyHelp = `usage: pcrsim verify (--expected FILE | --kernel FILE [--initrd FILE]... --cmdline STRING
                     | --root DIR [--entry SEL] | --disk IMAGE... [--entry SEL])
                     [--pcr-init PCR:BANK=HEX]... [--bank BANKS]
                     (--actual FILE|- [--actual-format yaml|sysfs|json] | --current [--tpm-device DEV])
                     [--eventlog LOG]...
       pcrsim verify --current            inside a guest booted by vtpmboot

Compares a prediction with actual PCR readings and prints one row per PCR
and bank: PCR, bank, result, expected, actual.

The prediction is either pcrsim JSON (--expected, from 'pcrsim predict
--format json') or computed from the same flags as 'pcrsim predict'.

The readings (--actual, '-' for stdin) may be:
  yaml    tpm2_pcrread output, e.g. 'tpm2_pcrread sha1:4,5+sha256:4,5'
  sysfs   a TPM 1.2 /sys/class/tpm/tpm0/pcrs file ("PCR-04: 3A 3F ...")
  json    pcrsim's own JSON
The format is detected unless --actual-format forces it.

--current reads this machine's TPM instead (TPM 1.2 or 2.0, --tpm-device, default
/dev/tpmrm0 or /dev/tpm0) and, with no other input flag, predicts what
booted: the entry the stub's selector picks on this system (--root /, see
docs/pcrsim.md) with the command line from /proc/cmdline. With --kernel
(and --initrd), --cmdline defaults to /proc/cmdline too. Starting values
(unless --pcr-init): the replay of the firmware's events in the event log
(--eventlog, or under --current ` + predict.FirmwareLogPath + `
when it exists), the stub's own events excluded; all zero without a log.

--eventlog replays TCG event logs (SHA-1 or crypto-agile; the firmware's,
the stub's as 'pcrsim eventlog extract' writes it, or both: repeat the flag
in boot order) from zero against the readings, as go-attestation does: a
log that does not replay to every PCR read is not this machine's log of
this boot, and is refused naming the PCRs (exit 2). A log that replays is
then compared event by event with the prediction: each of the stub's three
events must have the predicted PCR, event text and digests.

Banks: with --bank, every named bank must be in the readings (absent
values fail). Without it, predicted banks the readings lack are listed as
not compared and the rest are checked; at least one bank must be compared.
So a TPM 1.2 sysfs file verifies the sha1 bank of a default prediction.

Exit status: 0 all compared values match, 1 a mismatch or missing value
(or an event differing from the prediction), 2 usage or input error (no
TPM, an unreadable or foreign event log).

Examples:
  pcrsim verify --current
  pcrsim verify --current --eventlog /sys/kernel/security/tpm0/binary_bios_measurements
  tpm2_pcrread sha1:4,5+sha256:4,5 > pcrs.yaml
  pcrsim verify --kernel /boot/vmlinuz --initrd /boot/initrd.img \
      --cmdline "root=/dev/xvda1 ro" --actual pcrs.yaml
  pcrsim predict --kernel vmlinuz --cmdline "" --format json > expected.json
  ssh guest cat /sys/class/tpm/tpm0/pcrs | pcrsim verify --expected expected.json --actual -

Flags:
`

const policyHelp = `usage: pcrsim policy (--kernel FILE [--initrd FILE]... --cmdline STRING
                    | --root DIR | --disk IMAGE... [--entry SEL]... [--all-entries]
                    | --xl-config FILE|DIR... | --expected FILE...)
                    [--pcrs 4,5] [--pcr-init PCR:BANK=HEX]... [--bank BANKS]
                    [--format text|json|tpm2-policy|tpm2-pcrs|cryptenroll|keylime|pcrlock]
                    [--policy-bank BANK] [--policy-alg sha256] [--policy-or tree|flat]
                    [--output-dir DIR]

Turns predictions into what sealing and attestation tools take. Every boot
predicted is an allowed boot: one from --kernel/--root/--disk, each --entry
(or every entry with --all-entries), every guest of --xl-config, every
prediction in --expected files (pcrsim predict --format json output).

--pcrs selects the PCRs (default 4,5). A selected PCR the stub does not
extend must be given a value with --pcr-init, in every bank: a policy is
never computed over a value that was not predicted.

Output formats:
  text         allowed boots, policy digests, TPM 1.2 composites (default)
  json         the same as one JSON document, with the starting values
               and the measurement contract version
  tpm2-policy  the binary policy digest of --policy-bank, for
               'tpm2_create -L FILE' (PolicyPCR, or the root PolicyOR)
  tpm2-pcrs    the binary PCR values file tpm2_pcrread -o writes and
               'tpm2_policypcr -l BANK:PCRS -f FILE' reads; one allowed
               value, or one file each in --output-dir
  cryptenroll  --tpm2-pcrs=4:sha256=...+5:sha256=... for systemd-cryptenroll
               (systemd 255+), one line per allowed value
  keylime      Keylime's tpm_policy JSON for --policy-bank: PCR -> list of
               allowed values
  pcrlock      systemd-pcrlock .pcrlock records (the measurements, every
               bank); several allowed boots are variants: one file each in
               --output-dir (name it NNN-vtpmboot.pcrlock.d)

Several allowed values: TPM 2.0 gets a PolicyOR over the PolicyPCR
branches; beyond 8 (one PolicyOR's limit) a tree of PolicyORs, unless
--policy-or flat, which refuses. TPM 1.2 has no OR: one composite (one
sealed blob) per allowed value. See docs/sealing.md.

Exit status: 0 success, 1 a guest of --xl-config could not be predicted
(no policy is written), 2 usage or input error.

Examples:
  pcrsim policy --disk guest.img
  pcrsim policy --disk guest.img --format tpm2-policy --policy-bank sha256 > policy.digest
  tpm2_create -C 0x81000001 -L policy.digest -i secret.bin -u seal.pub -r seal.priv
  systemd-cryptenroll --tpm2-device=auto $(pcrsim policy --root /mnt/guest --format cryptenroll) /dev/xvda2
  pcrsim policy --disk guest.img --all-entries --format keylime
  pcrsim predict --xl-config /etc/xen/auto > fleet.json; pcrsim policy --expected fleet.json --format json

Flags:
`

const eventlogHelp = `usage: pcrsim eventlog extract [--console FILE|-] [--output FILE] [--index N]

Pulls the event log the stub printed (base64 between "vtpmboot: BEGIN
EVENTLOG" and "vtpmboot: END EVENTLOG") out of a saved console: an xl
console log (xenconsoled --log=guest, timestamps allowed) or a QEMU serial
log. Writes the binary TCG log (SHA-1 format for a TPM 1.2, crypto-agile
for 2.0) to --output or stdout, for 'pcrsim verify --eventlog' or
tpm2_eventlog. A console holding several boots holds several logs: the
last one is taken unless --index N (0 is the first) says otherwise.

Exit status: 0 a log was written, 2 no complete log, a malformed one, or a
usage error.

Examples:
  pcrsim eventlog extract --console /var/log/xen/console/guest-web1.log > stub.bin
  pcrsim verify --eventlog firmware.bin --eventlog stub.bin --actual pcrs.yaml

Flags:
`

// printFlags lists the flags the way users type them (--bank BANKS), which
// flag.PrintDefaults does not: it prints one dash.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if name != "" {
			line += " " + name
		}
		fmt.Fprintf(w, "%s\n    \t%s", line, strings.ReplaceAll(usage, "\n", "\n    \t"))
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			fmt.Fprintf(w, " (default %q)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
}
