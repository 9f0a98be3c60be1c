package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/vtpmboot/vtpmboot/boot/eventlog"
	"github.com/vtpmboot/vtpmboot/host/predict"
	"github.com/vtpmboot/vtpmboot/host/predict/fleet"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

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

func cmdPredict(name string, args []string, e env) (int, error) {
	var in inputFlags
	fs := newFlagSet(name, predictHelp, e)
	in.register(fs)
	format := fs.String("format", "", "output `FORMAT`: text, json or eventlog; with --xl-config json (default), jsonl or table")
	logFormat := fs.String("log-format", "", "event log `LAYOUT` for --format eventlog: sha1 or crypto-agile (default: the layout --tpm writes)")
	tpmVer := fs.String("tpm", "", "for --format eventlog: the TPM the guest has, `1.2` (Xen's vtpm-stubdom: a SHA-1 log) or 2.0 (a crypto-agile log, whatever its banks)")
	list := fs.Bool("list", false, "with --root/--disk: list every configuration and entry found and which one boots, instead of predicting")
	var xlConfigs listFlag
	fs.Var(&xlConfigs, "xl-config", "xl domU config `FILE` or DIR (every config in it); repeatable")
	noCache := fs.Bool("no-cache", false, "with --xl-config: hash every guest's files afresh instead of once per distinct file")
	workers := fs.Int("workers", 0, "with --xl-config: guests predicted at once (`N`, default GOMAXPROCS)")
	guestTimeout := fs.Duration("guest-timeout", fleet.DefaultGuestTimeout, "with --xl-config: give up on a guest whose prediction takes longer than `D` (it fails, the others go on)")
	startLog := fs.String("eventlog", "", "take PCR 4 and 5 starting values from the firmware events of this TCG event `LOG` (default with --root /: "+predict.FirmwareLogPath+" when it exists)")
	if err := parseFlags(fs, args); err != nil {
		return 0, err
	}
	defer in.close()
	if in.set("xl-config") {
		for _, fl := range []string{"kernel", "initrd", "cmdline", "root", "disk", "entry", "list", "log-format", "tpm", "eventlog"} {
			if in.set(fl) {
				return 0, argErr("--"+fl, "cannot be combined with --xl-config (each guest's config says what to boot)")
			}
		}
		return predictXL(xlConfigs, &in, *format, *noCache, *workers, *guestTimeout, e)
	}
	for _, fl := range []string{"no-cache", "workers", "guest-timeout"} {
		if in.set(fl) {
			return 0, argErr("--"+fl, "only applies to --xl-config")
		}
	}
	if *format == "" {
		*format = "text"
	}
	switch *format {
	case "text", "json", "eventlog":
	default:
		return 0, argErr("--format", "unknown format %q (want text, json or eventlog; jsonl and table go with --xl-config)", *format)
	}
	if *logFormat != "" && *format != "eventlog" {
		return 0, argErr("--log-format", "only applies to --format eventlog")
	}
	if *tpmVer != "" && *format != "eventlog" {
		return 0, argErr("--tpm", "only applies to --format eventlog")
	}
	// A log holds the stub's three events and nothing else: replayed from
	// zero it cannot reach values that started elsewhere, and writing it
	// as if it did would mislead whoever replays it.
	if *format == "eventlog" && in.set("pcr-init") {
		return 0, argErr("--pcr-init", "does not apply to --format eventlog: the log holds only the stub's events, whatever the starting values; drop --pcr-init (the log is the same) and replay it on top of the firmware's log")
	}
	if *list {
		return listGuest(&in, *format, e)
	}
	o, err := in.options()
	if err != nil {
		return 0, err
	}
	if err := startValues(name, &in, &o, *startLog, e); err != nil {
		return 0, err
	}
	if in.sel != nil {
		// Unreadable partitions matter to whoever relies on the
		// prediction, but must not corrupt machine-readable stdout.
		for _, n := range predict.NoteStrings(in.sel) {
			fmt.Fprintf(e.stderr, "%s: note: %s\n", name, n)
		}
		if *format == "text" {
			fmt.Fprintf(e.stdout, "boots %q\n", in.sel.Choice.Reason)
		}
	}
	var lf eventlog.Format
	if *format == "eventlog" {
		if lf, err = pickLogFormat(*logFormat, *tpmVer, predict.Banks(o.Banks)); err != nil {
			return 0, err
		}
	}
	r, err := predict.Run(o)
	if err != nil {
		return 0, err
	}
	w := bufio.NewWriter(e.stdout)
	switch *format {
	case "text":
		err = r.WriteText(w)
	case "json":
		if in.sel != nil {
			err = writeJSON(w, predict.Doc(in.sel, r, predict.NoteStrings(in.sel)))
		} else {
			err = r.WriteJSON(w)
		}
	case "eventlog":
		err = eventlog.Write(w, lf, r.Banks, r.Measurements())
	}
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		return 0, argErr("output", "%w", err)
	}
	return exitOK, nil
}

// pickLogFormat defaults to the SHA-1 layout only when that is all a TPM
// 1.2 could have: the crypto-agile layout is the one that carries banks.
// pickLogFormat chooses the layout the stub writes for the guest's TPM,
// by the stub's own rule (eventlog.FormatFor): a TPM 1.2 gets SHA-1
// events, a TPM 2.0 crypto-agile ones even when sha1 is its only bank.
// The banks alone cannot tell the two apart, so a sha1-only prediction
// needs --tpm (or an explicit --log-format).
func pickLogFormat(name, tpm string, banks []pcrbank.Alg) (eventlog.Format, error) {
	onlySHA1 := len(banks) == 1 && banks[0] == pcrbank.SHA1
	var f eventlog.Format
	switch tpm {
	case "1.2":
		if !onlySHA1 {
			return 0, argErr("--tpm", "a TPM 1.2 has only the sha1 bank; add --bank sha1")
		}
		f = eventlog.FormatFor(pcrbank.Version12)
	case "2.0":
		f = eventlog.FormatFor(pcrbank.Version20)
	case "":
		if onlySHA1 && name == "" {
			return 0, argErr("--tpm", "with --bank sha1 alone, say which TPM the log is for: --tpm 1.2 (a SHA-1 log, as the stub writes for Xen's vtpm-stubdom) or --tpm 2.0 (crypto-agile)")
		}
		f = eventlog.FormatFor(pcrbank.Version20)
	default:
		return 0, argErr("--tpm", "unknown TPM %q (want 1.2 or 2.0)", tpm)
	}
	switch name {
	case "":
		return f, nil
	case "crypto-agile":
		return eventlog.CryptoAgile, nil
	case "sha1":
		if !onlySHA1 {
			return 0, argErr("--log-format", "a sha1 log carries only the sha1 bank; add --bank sha1")
		}
		return eventlog.SHA1Log, nil
	}
	return 0, argErr("--log-format", "unknown layout %q (want sha1 or crypto-agile)", name)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// listGuest prints what discovery found. It lists even when nothing can
// boot (that is when a list helps most), then fails with the reason.
func listGuest(in *inputFlags, format string, e env) (int, error) {
	if !in.fromGuest() {
		return 0, argErr("--list", "only applies to --root or --disk")
	}
	if format != "text" && format != "json" {
		return 0, argErr("--format", "--list prints text or json, not %s", format)
	}
	for _, fl := range []string{"bank", "pcr-init", "log-format"} {
		if in.set(fl) {
			return 0, argErr("--"+fl, "does not apply to --list (nothing is measured)")
		}
	}
	if err := in.openGuest(); err != nil {
		return 0, err
	}
	d := predict.List(in.sel)
	w := bufio.NewWriter(e.stdout)
	var err error
	if format == "json" {
		err = d.WriteJSON(w)
	} else {
		err = d.WriteText(w)
	}
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		return 0, argErr("output", "%w", err)
	}
	if in.sel.Err != nil {
		return 0, &argError{arg: in.guestArg(), err: in.sel.Err}
	}
	return exitOK, nil
}

// startValues fills o.Init from the firmware's part of an event log: the
// one given with --eventlog, or, for the running system (--root /), the
// kernel's copy of this boot's firmware log, on the assumption that the
// firmware measures the same at the next boot (true of SeaBIOS under the
// same QEMU configuration; a Xen vTPM starts at zero and has no log).
func startValues(name string, in *inputFlags, o *predict.Options, path string, e env) error {
	if path == "" {
		if !in.set("root") || filepath.Clean(in.root) != "/" || in.set("pcr-init") {
			return nil
		}
		if _, err := os.Stat(predict.FirmwareLogPath); err != nil {
			return nil
		}
		path = predict.FirmwareLogPath
	} else if in.set("pcr-init") {
		return argErr("--eventlog", "give either --eventlog or --pcr-init, not both")
	}
	l, err := predict.ReadLog(path)
	if err != nil {
		return &argError{arg: "--eventlog", err: err}
	}
	banks := o.Banks
	if banks == nil {
		banks = pcrbank.DefaultAlgs
	}
	if o.Init, err = predict.StartFromLog(l, banks); err != nil {
		return argErr("--eventlog", "%s: starting values: %v", path, err)
	}
	fmt.Fprintf(e.stderr, "%s: starting values: PCR 4 and 5 replayed from the %d firmware events of %s\n", name, l.SplitStub(), path)
	return nil
}
