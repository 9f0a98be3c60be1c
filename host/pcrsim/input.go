package pcrsim

import (
	"fmt"
	"path/filepath"

	"github.com/vtpmboot/vtpmboot/host/predict"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// Input is where a prediction comes from, as the user gave it: files
// (Kernel, Initrds, Cmdline), a guest's own boot configuration (Root or
// Disks, Entries), xl domU configs (XLConfigs) or earlier predictions
// (Expected), and what a prediction assumes (Bank, PCRInits). Every
// subcommand resolves the same Input; rules.go says which combinations it
// refuses.
type Input struct {
	Kernel    string
	Initrds   []string
	Cmdline   string
	Bank      string
	PCRInits  []string
	Root      string
	Disks     []string
	Entries   []string
	XLConfigs []string
	Expected  []string

	// Given holds the name of every flag given on the command line: an
	// empty --cmdline "" is a deliberate empty command line, a missing one
	// a forgotten flag.
	Given map[string]bool

	// manyEntries: more than one --entry is allowed (policy).
	manyEntries bool
	// running: verify --current predicts the running system, as --root /
	// would, without the user having said --root.
	running bool
	// cmdlineOverride replaces the entry's command line (verify --current:
	// /proc/cmdline is what booted); defaultBanks replaces DefaultAlgs
	// when --bank is not given (--current: the TPM's banks).
	cmdlineOverride *string
	defaultBanks    []pcrbank.Alg

	// Set by options() for a guest: the guest (open until close()) and
	// what discovery chose on it.
	guest *predict.Guest
	sel   *predict.Selection
}

func (in *Input) given(name string) bool { return in.Given[name] }

// anyGiven reports whether any of names was given.
func (in *Input) anyGiven(names ...string) bool {
	for _, n := range names {
		if in.given(n) {
			return true
		}
	}
	return false
}

// close releases the guest opened by options().
func (in *Input) close() {
	if in.guest != nil {
		in.guest.Close()
	}
}

// fromGuest reports whether the inputs come from a guest's own boot
// configuration.
func (in *Input) fromGuest() bool { return in.anyGiven("root", "disk") || in.running }

// fromFiles reports whether any of --kernel, --initrd, --cmdline was given.
func (in *Input) fromFiles() bool { return in.anyGiven("kernel", "initrd", "cmdline") }

// any reports whether any input flag was given, so verify can tell a
// prediction from flags apart from one from --expected.
func (in *Input) any() bool {
	return in.fromFiles() || in.anyGiven("pcr-init", "root", "disk", "entry")
}

// guestArg names the flag a guest problem is reported under.
func (in *Input) guestArg() string {
	if in.given("disk") {
		return "--disk"
	}
	return "--root"
}

// liveRoot reports whether the guest is the running system (--root /).
func (in *Input) liveRoot() bool {
	return in.running || (in.given("root") && filepath.Clean(in.Root) == "/")
}

// bankList returns the banks named by --bank, or nil when it was not given.
func (in *Input) bankList() ([]pcrbank.Alg, error) {
	if !in.given("bank") {
		return nil, nil
	}
	algs, err := pcrbank.ParseAlgList(in.Bank)
	if err != nil {
		return nil, &ArgError{Arg: "--bank", Err: err}
	}
	return algs, nil
}

// openGuest opens the guest and runs discovery and selection on it.
func (in *Input) openGuest() error {
	if err := check(in.guestRules()); err != nil {
		return err
	}
	entry := ""
	if len(in.Entries) > 0 {
		entry = in.Entries[0]
	}
	var err error
	switch {
	case in.liveRoot():
		// The running system: its block devices as the stub sees them
		// (docs/pcrsim.md, "--root /").
		in.guest, err = predict.OpenLive()
	case in.given("root"):
		in.guest, err = predict.OpenRoot(in.Root)
	default:
		in.guest, err = predict.OpenDisks(diskSpecs(in.Disks))
	}
	if err != nil {
		return &ArgError{Arg: in.guestArg(), Err: err}
	}
	in.sel = in.guest.Choose(entry)
	return nil
}

func diskSpecs(paths []string) []predict.DiskSpec {
	specs := make([]predict.DiskSpec, len(paths))
	for i, p := range paths {
		specs[i] = predict.DiskSpec{Path: p}
		if len(paths) > 1 {
			specs[i].Label = fmt.Sprintf("disk %d ", i)
		}
	}
	return specs
}

// options validates the inputs and files and builds predict.Options.
func (in *Input) options() (predict.Options, error) {
	var o predict.Options
	if err := check(in.inputRules()); err != nil {
		return o, err
	}
	if in.fromGuest() {
		if err := in.openGuest(); err != nil {
			return o, err
		}
		if in.sel.Err != nil {
			return o, &ArgError{Arg: in.guestArg(), Err: in.sel.Err}
		}
	} else if err := in.checkFiles(); err != nil {
		return o, err
	}
	banks, err := in.bankList()
	if err != nil {
		return o, err
	}
	if banks == nil {
		banks = in.defaultBanks
	}
	o.Banks = banks
	if o.Init, err = predict.ParsePCRInits(in.PCRInits, banks); err != nil {
		return o, &ArgError{Arg: "--pcr-init", Err: err}
	}
	if in.fromGuest() {
		o.Inputs = in.guest.Inputs(in.sel.Choice)
	} else {
		if err := predict.CheckFileKernel(in.Kernel, in.Cmdline); err != nil {
			return o, &ArgError{Arg: "--kernel", Err: err}
		}
		o.Inputs = predict.FileInputs(in.Kernel, in.Initrds, in.Cmdline)
	}
	if in.cmdlineOverride != nil {
		o.Inputs.Cmdline = *in.cmdlineOverride
	}
	return o, nil
}

// checkFiles checks --kernel and --initrd before hashing starts.
func (in *Input) checkFiles() error {
	if err := checkFile("--kernel", in.Kernel); err != nil {
		return err
	}
	for _, p := range in.Initrds {
		if err := checkFile("--initrd", p); err != nil {
			return err
		}
	}
	return nil
}

// startLog picks the event log whose firmware events give the starting
// values: the one named (--eventlog), or, for the running system, the
// kernel's copy of this boot's firmware log when it exists, on the
// assumption that the firmware measures the same at the next boot (true
// of SeaBIOS under the same QEMU configuration; a Xen vTPM starts at zero
// and has no log). "" means none: all zero, or --pcr-init.
func (in *Input) startLog(named string) string {
	if named != "" || !in.liveRoot() || in.given("pcr-init") {
		return named
	}
	if fileExists(predict.FirmwareLogPath) {
		return predict.FirmwareLogPath
	}
	return ""
}
