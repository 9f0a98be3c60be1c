package main

import (
	"bufio"

	"github.com/vtpmboot/vtpmboot/boot/eventlog"
	"github.com/vtpmboot/vtpmboot/boot/predict"
	"github.com/vtpmboot/vtpmboot/tpmfront"
)

const predictHelp = `usage: pcrsim predict --kernel FILE [--initrd FILE]... --cmdline STRING
                     [--bank sha1,sha256,...] [--pcr-init PCR:BANK:HEX]...
                     [--format text|json|eventlog] [--log-format sha1|crypto-agile]

Computes the PCR values vtpmboot's stub produces when it boots this kernel,
initrd(s) and command line: kernel into PCR 4; command line, then all
initrds concatenated (the empty string when there is none) into PCR 5.
Files are streamed, never loaded whole.

Output formats:
  text      each extend with its digest and the PCR before and after, then
            the final values (default)
  json      {"banks":{"sha1":{"4":"<hex>","5":"<hex>"},...},"events":[...]}
  eventlog  the binary TCG event log the stub writes, on stdout:
            crypto-agile unless the banks are exactly sha1 (--log-format)

Examples:
  pcrsim predict --kernel /boot/vmlinuz --initrd /boot/initrd.img \
      --cmdline "root=/dev/xvda1 ro quiet"
  pcrsim predict --kernel vmlinuz --cmdline "" --bank sha256 --format json
  pcrsim predict --kernel vmlinuz --cmdline "console=hvc0" \
      --pcr-init 4:sha256:0x5c1e... --format eventlog > log.bin

Flags:
`

func cmdPredict(name string, args []string, e env) (int, error) {
	var in inputFlags
	fs := newFlagSet(name, predictHelp, e)
	in.register(fs)
	format := fs.String("format", "text", "output `FORMAT`: text, json or eventlog")
	logFormat := fs.String("log-format", "", "event log `LAYOUT` for --format eventlog: sha1 or crypto-agile")
	if err := parseFlags(fs, args); err != nil {
		return 0, err
	}
	switch *format {
	case "text", "json", "eventlog":
	default:
		return 0, argErr("--format", "unknown format %q (want text, json or eventlog)", *format)
	}
	if *logFormat != "" && *format != "eventlog" {
		return 0, argErr("--log-format", "only applies to --format eventlog")
	}
	o, err := in.options()
	if err != nil {
		return 0, err
	}
	var lf eventlog.Format
	if *format == "eventlog" {
		banks := o.Banks
		if banks == nil {
			banks = tpmfront.DefaultAlgs
		}
		if lf, err = pickLogFormat(*logFormat, banks); err != nil {
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
		err = r.WriteJSON(w)
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
func pickLogFormat(name string, banks []tpmfront.Alg) (eventlog.Format, error) {
	onlySHA1 := len(banks) == 1 && banks[0] == tpmfront.SHA1
	switch name {
	case "":
		if onlySHA1 {
			return eventlog.SHA1Log, nil
		}
		return eventlog.CryptoAgile, nil
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
