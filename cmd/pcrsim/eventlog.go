package main

import (
	"fmt"
	"io"
	"os"

	"github.com/vtpmboot/vtpmboot/boot/eventlog"
)

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

func cmdEventlog(name string, args []string, e env) (int, error) {
	if len(args) == 0 || (args[0] != "extract" && args[0] != "-h" && args[0] != "--help" && args[0] != "-help") {
		if len(args) > 0 {
			return 0, argErr(args[0], "unknown subcommand (want extract)")
		}
		return 0, argErr("eventlog", "subcommand required (want extract)")
	}
	if args[0] == "extract" {
		args = args[1:]
		name += " extract"
	}
	fs := newFlagSet(name, eventlogHelp, e)
	console := fs.String("console", "-", "saved console `FILE` ('-' for stdin)")
	output := fs.String("output", "", "write the log to `FILE` instead of stdout")
	index := fs.Int("index", -1, "take the `N`th log (0 the first) instead of the last")
	if err := parseFlags(fs, args); err != nil {
		return 0, err
	}
	var r io.Reader = e.stdin
	if *console != "-" {
		if err := checkFile("--console", *console); err != nil {
			return 0, err
		}
		f, err := os.Open(*console)
		if err != nil {
			return 0, argErr("--console", "%s: %v", *console, unwrapPath(err))
		}
		defer f.Close()
		r = f
	}
	logs, err := eventlog.ExtractConsole(r)
	if err != nil {
		return 0, argErr("--console", "%s: %v", displayName(*console), err)
	}
	if len(logs) == 0 {
		return 0, argErr("--console", "%s: no complete event log (%q ... %q)", displayName(*console), eventlog.BeginMarker, eventlog.EndMarker)
	}
	i := len(logs) - 1
	if fs.Lookup("index") != nil && *index >= 0 {
		if *index >= len(logs) {
			return 0, argErr("--index", "%d: the console holds %d logs", *index, len(logs))
		}
		i = *index
	}
	log := logs[i]
	// What is written must be a log a verifier can read.
	if _, err := eventlog.Parse(log); err != nil {
		return 0, argErr("--console", "%s: log %d: %v", displayName(*console), i, err)
	}
	if *output != "" {
		if err := os.WriteFile(*output, log, 0o644); err != nil {
			return 0, argErr("--output", "%v", err)
		}
		fmt.Fprintf(e.stderr, "%s: wrote log %d of %d (%d bytes) to %s\n", name, i, len(logs), len(log), *output)
		return exitOK, nil
	}
	if _, err := e.stdout.Write(log); err != nil {
		return 0, argErr("output", "%v", err)
	}
	return exitOK, nil
}
