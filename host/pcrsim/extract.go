package pcrsim

import (
	"fmt"
	"os"

	"github.com/vtpmboot/vtpmboot/boot/eventlog"
)

// ExtractConfig is pcrsim eventlog extract's flags.
type ExtractConfig struct {
	// Console is the saved console ("-": stdin).
	Console string
	// Output is where the log goes ("": stdout).
	Output string
	// Index picks the Nth log of the console (0 the first); negative
	// means the last.
	Index int
}

// Extract pulls the event log the stub printed out of a saved console and
// writes it, once it parses, as the binary TCG log.
func Extract(c ExtractConfig, o IO) (int, error) {
	r := o.Stdin
	if c.Console != "-" {
		if err := checkFile("--console", c.Console); err != nil {
			return 0, err
		}
		f, err := os.Open(c.Console)
		if err != nil {
			return 0, argErr("--console", "%s: %v", c.Console, unwrapPath(err))
		}
		defer f.Close()
		r = f
	}
	logs, err := eventlog.ExtractConsole(r)
	if err != nil {
		return 0, argErr("--console", "%s: %v", displayName(c.Console), err)
	}
	if len(logs) == 0 {
		return 0, argErr("--console", "%s: no complete event log (%q ... %q)", displayName(c.Console), eventlog.BeginMarker, eventlog.EndMarker)
	}
	i := len(logs) - 1
	if c.Index >= 0 {
		if c.Index >= len(logs) {
			return 0, argErr("--index", "%d: the console holds %d logs", c.Index, len(logs))
		}
		i = c.Index
	}
	log := logs[i]
	// What is written must be a log a verifier can read.
	if _, err := eventlog.Parse(log); err != nil {
		return 0, argErr("--console", "%s: log %d: %v", displayName(c.Console), i, err)
	}
	if c.Output == "" {
		if _, err := o.Stdout.Write(log); err != nil {
			return 0, argErr("output", "%v", err)
		}
		return ExitOK, nil
	}
	if err := os.WriteFile(c.Output, log, 0o644); err != nil {
		return 0, argErr("--output", "%v", err)
	}
	fmt.Fprintf(o.Stderr, "%s: wrote log %d of %d (%d bytes) to %s\n", o.Name, i, len(logs), len(log), c.Output)
	return ExitOK, nil
}
