package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/vtpmboot/vtpmboot/host/predict"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// inputFlags are the flags that say what to predict, shared by predict and
// verify: files (--kernel, --initrd, --cmdline), a guest (--root, --disk,
// --entry), and what the prediction assumes (--bank, --pcr-init). They are
// resolved to measure.Inputs in options().
type inputFlags struct {
	kernel   string
	initrds  listFlag
	cmdline  string
	banks    string
	pcrInits listFlag
	// A guest's own boot configuration instead of --kernel/--initrd/
	// --cmdline: a mounted tree (--root) or raw disk images (--disk).
	root     string
	disks    listFlag
	entrySel string
	// entries holds every --entry; only pcrsim policy takes more than one.
	entries     listFlag
	manyEntries bool
	fs          *flag.FlagSet

	// cmdlineOverride replaces the entry's command line (verify --current:
	// /proc/cmdline is what booted); defaultBanks replaces DefaultAlgs
	// when --bank is not given (--current: the TPM's banks).
	cmdlineOverride *string
	defaultBanks    []pcrbank.Alg

	// Set by options() for --root/--disk: the guest (open until close())
	// and what discovery chose on it.
	guest *predict.Guest
	sel   *predict.Selection
}

// listFlag collects a repeatable flag in order.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func (f *inputFlags) register(fs *flag.FlagSet) {
	f.fs = fs
	fs.StringVar(&f.kernel, "kernel", "", "kernel `FILE`, measured into PCR 4 exactly as stored")
	fs.Var(&f.initrds, "initrd", "initrd `FILE`; repeat for several: measured in order as one image, each but the last zero-padded to 4 bytes as GRUB2 loads them, into PCR 5")
	fs.StringVar(&f.cmdline, "cmdline", "", "the exact kernel command line (`STRING`), measured into PCR 5")
	fs.StringVar(&f.banks, "bank", "", "comma-separated PCR `BANKS` (sha1,sha256,sha384,sha512; default sha1,sha256)")
	fs.Var(&f.pcrInits, "pcr-init", "starting value `PCR:BANK=HEX` of a PCR (or PCR:BANK:HEX; default all zero, as on a Xen vTPM); repeatable")
	fs.StringVar(&f.root, "root", "", "a mounted guest tree `DIR`: find its boot configuration and predict the entry the stub boots")
	fs.Var(&f.disks, "disk", "a raw guest disk `IMAGE` (MBR, GPT or bare filesystem), read without mounting; repeat for the guest's disks in order")
	fs.Var(&f.entries, "entry", "with --root/--disk: boot this entry (`SEL`: menu position such as 2 or 1>0, id, or exact title) instead of the default")
}

// close releases the guest opened by options().
func (f *inputFlags) close() {
	if f.guest != nil {
		f.guest.Close()
	}
}

// fromGuest reports whether the inputs come from a guest's own boot
// configuration (--root or --disk).
func (f *inputFlags) fromGuest() bool { return f.set("root") || f.set("disk") }

// openGuest opens --root or --disk and runs discovery and selection on it.
func (f *inputFlags) openGuest() error {
	for _, fl := range []string{"kernel", "initrd", "cmdline"} {
		if f.set(fl) {
			return argErr("--"+fl, "cannot be combined with --root or --disk (the guest's boot configuration names the kernel, initrds and command line)")
		}
	}
	if len(f.entries) > 1 && !f.manyEntries {
		return argErr("--entry", "given %d times; one boot is predicted (pcrsim policy takes several)", len(f.entries))
	}
	if len(f.entries) > 0 {
		f.entrySel = f.entries[0]
	}
	var err error
	switch {
	case f.set("root") && f.set("disk"):
		return argErr("--root", "give either --root or --disk, not both")
	case f.set("root"):
		if f.root == "" {
			return argErr("--root", "empty directory name")
		}
		open := predict.OpenRoot
		if filepath.Clean(f.root) == "/" {
			// The running system: its block devices as the stub sees
			// them (docs/pcrsim.md, "--root /").
			open = func(string) (*predict.Guest, error) { return predict.OpenLive() }
		}
		if f.guest, err = open(f.root); err != nil {
			return &argError{arg: "--root", err: err}
		}
	default:
		specs := make([]predict.DiskSpec, len(f.disks))
		for i, p := range f.disks {
			specs[i] = predict.DiskSpec{Path: p}
			if len(f.disks) > 1 {
				specs[i].Label = fmt.Sprintf("disk %d ", i)
			}
		}
		if f.guest, err = predict.OpenDisks(specs); err != nil {
			return &argError{arg: "--disk", err: err}
		}
	}
	f.sel = f.guest.Choose(f.entrySel)
	return nil
}

// guestArg names the flag a guest problem is reported under.
func (f *inputFlags) guestArg() string {
	if f.set("root") {
		return "--root"
	}
	return "--disk"
}

func (f *inputFlags) set(name string) bool {
	found := false
	f.fs.Visit(func(fl *flag.Flag) {
		if fl.Name == name {
			found = true
		}
	})
	return found
}

// any reports whether any input flag was given, so verify can tell a
// prediction from flags apart from one from --expected.
func (f *inputFlags) any() bool {
	return f.set("kernel") || f.set("initrd") || f.set("cmdline") || f.set("pcr-init") ||
		f.set("root") || f.set("disk") || f.set("entry")
}

// bankList returns the banks named by --bank, or nil when it was not given.
func (f *inputFlags) bankList() ([]pcrbank.Alg, error) {
	if !f.set("bank") {
		return nil, nil
	}
	algs, err := pcrbank.ParseAlgList(f.banks)
	if err != nil {
		return nil, &argError{arg: "--bank", err: err}
	}
	return algs, nil
}

// options validates the flags and files and builds predict.Options.
func (f *inputFlags) options() (predict.Options, error) {
	var o predict.Options
	if f.set("entry") && !f.fromGuest() {
		return o, argErr("--entry", "only applies to --root or --disk")
	}
	if f.fromGuest() {
		if err := f.openGuest(); err != nil {
			return o, err
		}
		if f.sel.Err != nil {
			return o, &argError{arg: f.guestArg(), err: f.sel.Err}
		}
	} else if f.kernel == "" {
		return o, argErr("--kernel", "required (or --root DIR, --disk IMAGE, --xl-config FILE|DIR)")
	}
	// An empty command line is legal but almost always a forgotten flag;
	// requiring it explicitly (--cmdline "") keeps it deliberate.
	if !f.fromGuest() && !f.set("cmdline") && f.cmdlineOverride == nil {
		return o, argErr("--cmdline", "required (use --cmdline \"\" for an empty command line)")
	}
	if !f.fromGuest() {
		if err := checkFile("--kernel", f.kernel); err != nil {
			return o, err
		}
		for _, p := range f.initrds {
			if err := checkFile("--initrd", p); err != nil {
				return o, err
			}
		}
	}
	banks, err := f.bankList()
	if err != nil {
		return o, err
	}
	if banks == nil {
		banks = f.defaultBanks
	}
	o.Banks = banks
	if o.Init, err = predict.ParsePCRInits(f.pcrInits, banks); err != nil {
		return o, &argError{arg: "--pcr-init", err: err}
	}
	if f.fromGuest() {
		o.Inputs = f.guest.Inputs(f.sel.Choice)
	} else {
		if err := predict.CheckFileKernel(f.kernel, f.cmdline); err != nil {
			return o, &argError{arg: "--kernel", err: err}
		}
		o.Inputs = predict.FileInputs(f.kernel, f.initrds, f.cmdline)
	}
	if f.cmdlineOverride != nil {
		o.Inputs.Cmdline = *f.cmdlineOverride
	}
	return o, nil
}

// checkFile gives a clear one-line error before hashing starts, so the
// message names the flag rather than a hashing stage.
func checkFile(arg, path string) error {
	st, err := os.Stat(path)
	switch {
	case os.IsNotExist(err):
		return argErr(arg, "%s: no such file", path)
	case err != nil:
		return argErr(arg, "%s: %v", path, unwrapPath(err))
	case st.IsDir():
		return argErr(arg, "%s: is a directory, want a file", path)
	case !st.Mode().IsRegular():
		return argErr(arg, "%s: not a regular file", path)
	}
	fh, err := os.Open(path)
	if err != nil {
		return argErr(arg, "%s: %v", path, unwrapPath(err))
	}
	fh.Close()
	return nil
}

// unwrapPath drops *PathError's own copy of the path, which we already print.
func unwrapPath(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}
