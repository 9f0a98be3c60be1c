package pcrsim

import "fmt"

// Every combination of flags pcrsim refuses is a rule in this file, in the
// order it is checked: the first rule that holds is the one error the user
// sees, naming the flag at fault.

// rule refuses arg (a flag, or "output") with msg when bad holds.
type rule struct {
	arg string
	bad bool
	msg string
}

// check returns the first broken rule as an ArgError.
func check(rules []rule) error {
	for _, r := range rules {
		if r.bad {
			return &ArgError{Arg: r.arg, Err: fmt.Errorf("%s", r.msg)}
		}
	}
	return nil
}

// refuse is a rule about every flag of names: the first one given is named.
func (in *Input) refuse(names []string, when bool, msg string) rule {
	for _, n := range names {
		if when && in.given(n) {
			return rule{arg: "--" + n, bad: true, msg: msg}
		}
	}
	return rule{}
}

var (
	fileFlags = []string{"kernel", "initrd", "cmdline"}
	// xlExcluded are the flags that say what to boot, or how to write one
	// boot's log; with --xl-config each guest's config says that.
	xlExcluded = []string{"kernel", "initrd", "cmdline", "root", "disk", "entry", "all-entries", "list", "log-format", "tpm", "eventlog"}
	xlOnly     = []string{"no-cache", "workers", "guest-timeout"}
)

// inputRules are checked before any input is opened.
func (in *Input) inputRules() []rule {
	return []rule{
		{"--entry", in.given("entry") && !in.fromGuest(), "only applies to --root or --disk"},
		{"--kernel", !in.fromGuest() && in.Kernel == "", "required (or --root DIR, --disk IMAGE, --xl-config FILE|DIR)"},
		// An empty command line is legal but almost always a forgotten
		// flag; requiring it explicitly (--cmdline "") keeps it deliberate.
		{"--cmdline", !in.fromGuest() && !in.given("cmdline") && in.cmdlineOverride == nil, `required (use --cmdline "" for an empty command line)`},
	}
}

// guestRules are checked before a guest is opened.
func (in *Input) guestRules() []rule {
	return []rule{
		in.refuse(fileFlags, true, "cannot be combined with --root or --disk (the guest's boot configuration names the kernel, initrds and command line)"),
		{"--entry", len(in.Entries) > 1 && !in.manyEntries, fmt.Sprintf("given %d times; one boot is predicted (pcrsim policy takes several)", len(in.Entries))},
		{"--root", in.given("root") && in.given("disk"), "give either --root or --disk, not both"},
		{"--root", in.given("root") && in.Root == "", "empty directory name"},
	}
}

// xlRules are checked when the predictions come from --xl-config.
func (in *Input) xlRules() []rule {
	return []rule{in.refuse(xlExcluded, true, "cannot be combined with --xl-config (each guest's config says what to boot)")}
}

func (c *PredictConfig) rules() []rule {
	in := &c.Input
	return []rule{
		in.refuse(xlOnly, true, "only applies to --xl-config"),
		{"--log-format", c.LogFormat != "" && c.Format != "eventlog", "only applies to --format eventlog"},
		{"--tpm", c.TPM != "" && c.Format != "eventlog", "only applies to --format eventlog"},
		// A log holds the stub's three events and nothing else: replayed
		// from zero it cannot reach values that started elsewhere, and
		// writing it as if it did would mislead whoever replays it.
		{"--pcr-init", c.Format == "eventlog" && in.given("pcr-init"), "does not apply to --format eventlog: the log holds only the stub's events, whatever the starting values; drop --pcr-init (the log is the same) and replay it on top of the firmware's log"},
	}
}

func (c *PredictConfig) listRules() []rule {
	in := &c.Input
	return []rule{
		{"--list", !in.fromGuest(), "only applies to --root or --disk"},
		{"--format", c.Format != "text" && c.Format != "json", "--list prints text or json, not " + c.Format},
		in.refuse([]string{"bank", "pcr-init", "log-format"}, true, "does not apply to --list (nothing is measured)"),
	}
}

func (c *VerifyConfig) rules() []rule {
	in := &c.Input
	return []rule{
		{"--actual", c.Current && c.Actual != "", "give either --actual or --current, not both"},
		{"--actual", !c.Current && c.Actual == "", "required (or --current to read this machine's TPM)"},
		{"--tpm-device", !c.Current && in.given("tpm-device"), "only applies to --current"},
		{"--expected", c.expected() == "-" && c.Actual == "-", "stdin already carries --actual"},
		{"--actual-format", c.ActualFormat != "" && c.Current, "does not apply to --current"},
		{"--expected", c.expected() != "" && in.any(), "give either --expected or --kernel/--initrd/--cmdline/--pcr-init, not both"},
	}
}

func (c *PolicyConfig) rules() []rule {
	in := &c.Input
	kinds := 0
	for _, b := range []bool{len(in.Expected) > 0, len(in.XLConfigs) > 0, in.fromGuest(), in.fromFiles()} {
		if b {
			kinds++
		}
	}
	single := c.Format != "text" && c.Format != "json" && c.Format != "pcrlock"
	return []rule{
		{"--output-dir", c.OutputDir != "" && c.Format != "tpm2-pcrs" && c.Format != "pcrlock", "only applies to --format tpm2-pcrs or pcrlock"},
		{"--policy-bank", c.PolicyBank != "" && !single, fmt.Sprintf("does not apply to --format %s (it covers every bank)", c.Format)},
		{"--expected", kinds > 1, "give one source of predictions: --kernel..., --root, --disk, --xl-config or --expected"},
		{"--all-entries", c.AllEntries && !in.fromGuest(), "only applies to --root or --disk"},
		{"--all-entries", c.AllEntries && len(in.Entries) > 0, "cannot be combined with --entry"},
		{"--pcr-init", len(in.Expected) > 0 && in.given("pcr-init"), "does not apply to --expected (each prediction records its own starting values)"},
	}
}
