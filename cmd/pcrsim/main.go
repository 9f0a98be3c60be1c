// Command pcrsim predicts the PCR values vtpmboot's stub will produce for a
// boot entry, and verifies actual readings against a prediction. The logic
// lives in host/predict; this file is subcommands, flags and exit codes.
//
// Exit codes: 0 success (verify: everything matched), 1 verify mismatch,
// 2 usage or input error (one line on stderr naming the argument).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/vtpmboot/vtpmboot/boot/termsafe"
)

const (
	exitOK       = 0
	exitMismatch = 1
	exitUsage    = 2
)

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

// argError is a usage or input problem; it prints as one line naming the
// argument at fault and exits 2.
type argError struct {
	arg string
	err error
}

func (e *argError) Error() string { return e.arg + ": " + e.err.Error() }
func (e *argError) Unwrap() error { return e.err }

func argErr(arg string, format string, a ...any) error {
	return &argError{arg: arg, err: fmt.Errorf(format, a...)}
}

type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

func main() {
	// Messages quote guest-controlled names (file names, titles, errors
	// from a hostile disk image): no control character of theirs reaches
	// the admin's terminal (termsafe).
	os.Exit(run(os.Args[1:], env{os.Stdin, os.Stdout, termsafe.Writer(os.Stderr)}))
}

func run(args []string, e env) int {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, topUsage)
		return exitUsage
	}
	var cmd func(string, []string, env) (int, error)
	switch args[0] {
	case "predict":
		cmd = cmdPredict
	case "verify":
		cmd = cmdVerify
	case "policy":
		cmd = cmdPolicy
	case "version", "-version", "--version":
		fmt.Fprintln(e.stdout, versionLine())
		return exitOK
	case "eventlog":
		cmd = cmdEventlog
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			return run([]string{args[1], "--help"}, e)
		}
		fmt.Fprint(e.stdout, topUsage)
		return exitOK
	default:
		fmt.Fprintf(e.stderr, "pcrsim: unknown command %q (want predict, verify, policy or eventlog; see pcrsim --help)\n", args[0])
		return exitUsage
	}
	name := "pcrsim " + args[0]
	code, err := cmd(name, args[1:], e)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		// One line: a multi-line message would bury the argument at fault.
		fmt.Fprintf(e.stderr, "%s: %s\n", name, termsafe.Line(err.Error()))
		return exitUsage
	}
	return code
}

// newFlagSet returns a flag set that reports errors to us instead of
// printing usage itself, and prints help (on --help) to stdout.
func newFlagSet(name, help string, e env) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	// The flag package calls Usage on every parse error too; help is
	// printed by parseFlags only when asked for.
	fs.Usage = func() {}
	helps[fs] = func() {
		fmt.Fprint(e.stdout, help)
		printFlags(e.stdout, fs)
	}
	return fs
}

var helps = map[*flag.FlagSet]func(){}

// parseFlags parses args and turns flag-package errors into one-line
// argument errors; stray positional arguments are an error too, since a
// forgotten "--initrd" would otherwise silently measure no initrd.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			helps[fs]()
			return err
		}
		return err // the flag package's message names the flag
	}
	if fs.NArg() > 0 {
		return argErr(fs.Arg(0), "unexpected argument (every input is a flag; see --help)")
	}
	return nil
}
