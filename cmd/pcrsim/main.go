// Command pcrsim predicts the PCR values vtpmboot's stub will produce for a
// boot entry, and verifies actual readings against a prediction. Each
// subcommand binds its flags to a config of host/pcrsim, calls it and
// turns the result into an exit code; what they do lives there.
//
// Exit codes: 0 success (verify: everything matched), 1 verify mismatch
// or a failed guest of --xl-config, 2 usage or input error (one line on
// stderr naming the argument).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/vtpmboot/vtpmboot/boot/termsafe"
	"github.com/vtpmboot/vtpmboot/host/buildinfo"
	sim "github.com/vtpmboot/vtpmboot/host/pcrsim"
)

const (
	exitOK    = sim.ExitOK
	exitUsage = 2
)

func main() {
	// Messages quote guest-controlled names (file names, titles, errors
	// from a hostile disk image): no control character of theirs reaches
	// the admin's terminal (termsafe).
	os.Exit(run(os.Args[1:], sim.IO{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: termsafe.Writer(os.Stderr)}))
}

// commands maps each subcommand to its run function, which parses its
// flags and calls host/pcrsim.
var commands = map[string]func([]string, sim.IO) (int, error){
	"predict":  cmdPredict,
	"verify":   cmdVerify,
	"policy":   cmdPolicy,
	"eventlog": cmdEventlog,
}

func run(args []string, o sim.IO) int {
	if len(args) == 0 {
		fmt.Fprint(o.Stderr, topUsage)
		return exitUsage
	}
	switch args[0] {
	case "version", "-version", "--version":
		fmt.Fprintln(o.Stdout, buildinfo.Line("pcrsim"))
		return exitOK
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			return run([]string{args[1], "--help"}, o)
		}
		fmt.Fprint(o.Stdout, topUsage)
		return exitOK
	}
	cmd := commands[args[0]]
	if cmd == nil {
		fmt.Fprintf(o.Stderr, "pcrsim: unknown command %q (want predict, verify, policy or eventlog; see pcrsim --help)\n", args[0])
		return exitUsage
	}
	o.Name = "pcrsim " + args[0]
	code, err := cmd(args[1:], o)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		// One line: a multi-line message would bury the argument at fault.
		fmt.Fprintf(o.Stderr, "%s: %s\n", o.Name, termsafe.Line(err.Error()))
		return exitUsage
	}
	return code
}

// flags is a subcommand's flag set, reporting errors to us instead of
// printing usage itself, and printing help (on --help) to stdout.
type flags struct {
	*flag.FlagSet
	help string
	out  io.Writer
}

func newFlags(o sim.IO, help string) *flags {
	fs := flag.NewFlagSet(o.Name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	// The flag package calls Usage on every parse error too; help is
	// printed by parse only when asked for.
	fs.Usage = func() {}
	return &flags{FlagSet: fs, help: help, out: o.Stdout}
}

// parse parses args and returns the names of the flags given. Stray
// positional arguments are an error, since a forgotten "--initrd" would
// otherwise silently measure no initrd.
func (f *flags) parse(args []string) (map[string]bool, error) {
	if err := f.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(f.out, f.help)
			printFlags(f.out, f.FlagSet)
		}
		return nil, err // the flag package's message names the flag
	}
	if f.NArg() > 0 {
		return nil, &sim.ArgError{Arg: f.Arg(0), Err: errors.New("unexpected argument (every input is a flag; see --help)")}
	}
	given := map[string]bool{}
	f.Visit(func(fl *flag.Flag) { given[fl.Name] = true })
	return given, nil
}

// listFlag collects a repeatable flag in order.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// bindInput defines the flags that say what to predict, shared by
// predict, verify and policy: files, a guest, and what the prediction
// assumes.
func (f *flags) bindInput(in *sim.Input) {
	f.StringVar(&in.Kernel, "kernel", "", "kernel `FILE`, measured into PCR 4 exactly as stored")
	f.Var((*listFlag)(&in.Initrds), "initrd", "initrd `FILE`; repeat for several: measured in order as one image, each but the last zero-padded to 4 bytes as GRUB2 loads them, into PCR 5")
	f.StringVar(&in.Cmdline, "cmdline", "", "the exact kernel command line (`STRING`), measured into PCR 5")
	f.StringVar(&in.Bank, "bank", "", "comma-separated PCR `BANKS` (sha1,sha256,sha384,sha512; default sha1,sha256)")
	f.Var((*listFlag)(&in.PCRInits), "pcr-init", "starting value `PCR:BANK=HEX` of a PCR (or PCR:BANK:HEX; default all zero, as on a Xen vTPM); repeatable")
	f.StringVar(&in.Root, "root", "", "a mounted guest tree `DIR`: find its boot configuration and predict the entry the stub boots")
	f.Var((*listFlag)(&in.Disks), "disk", "a raw guest disk `IMAGE` (MBR, GPT or bare filesystem), read without mounting; repeat for the guest's disks in order")
	f.Var((*listFlag)(&in.Entries), "entry", "with --root/--disk: boot this entry (`SEL`: menu position such as 2 or 1>0, id, or exact title) instead of the default")
}
