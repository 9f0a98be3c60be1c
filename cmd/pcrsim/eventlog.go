package main

import (
	sim "github.com/vtpmboot/vtpmboot/host/pcrsim"
)

func cmdEventlog(args []string, o sim.IO) (int, error) {
	switch {
	case len(args) == 0:
		return 0, &sim.ArgError{Arg: "eventlog", Err: errSubcommand("subcommand required (want extract)")}
	case args[0] == "extract":
		args = args[1:]
		o.Name += " extract"
	case args[0] != "-h" && args[0] != "--help" && args[0] != "-help":
		return 0, &sim.ArgError{Arg: args[0], Err: errSubcommand("unknown subcommand (want extract)")}
	}
	var c sim.ExtractConfig
	f := newFlags(o, eventlogHelp)
	f.StringVar(&c.Console, "console", "-", "saved console `FILE` ('-' for stdin)")
	f.StringVar(&c.Output, "output", "", "write the log to `FILE` instead of stdout")
	f.IntVar(&c.Index, "index", -1, "take the `N`th log (0 the first) instead of the last")
	if _, err := f.parse(args); err != nil {
		return 0, err
	}
	return sim.Extract(c, o)
}

type errSubcommand string

func (e errSubcommand) Error() string { return string(e) }
