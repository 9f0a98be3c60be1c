package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/vtpmboot/vtpmboot/boot/predict"
	"github.com/vtpmboot/vtpmboot/tpmfront"
)

// inputFlags are the flags that say what to predict, shared by predict and
// verify. Further input sources (--disk, --root, --entry, --xl-config) are
// meant to be added here: register them, then resolve them to
// measure.Inputs in options(), keeping every other flag as it is.
type inputFlags struct {
	kernel   string
	initrds  listFlag
	cmdline  string
	banks    string
	pcrInits listFlag
	fs       *flag.FlagSet
}

// listFlag collects a repeatable flag in order.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func (f *inputFlags) register(fs *flag.FlagSet) {
	f.fs = fs
	fs.StringVar(&f.kernel, "kernel", "", "kernel `FILE`, measured into PCR 4 exactly as stored")
	fs.Var(&f.initrds, "initrd", "initrd `FILE`; repeat for several, measured concatenated in order into PCR 5")
	fs.StringVar(&f.cmdline, "cmdline", "", "the exact kernel command line (`STRING`), measured into PCR 5")
	fs.StringVar(&f.banks, "bank", "", "comma-separated PCR `BANKS` (sha1,sha256,sha384,sha512; default sha1,sha256)")
	fs.Var(&f.pcrInits, "pcr-init", "starting value `PCR:BANK:HEX` of a PCR (default all zero, as on a Xen vTPM); repeatable")
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
	return f.set("kernel") || f.set("initrd") || f.set("cmdline") || f.set("pcr-init")
}

// bankList returns the banks named by --bank, or nil when it was not given.
func (f *inputFlags) bankList() ([]tpmfront.Alg, error) {
	if !f.set("bank") {
		return nil, nil
	}
	algs, err := tpmfront.ParseAlgList(f.banks)
	if err != nil {
		return nil, &argError{arg: "--bank", err: err}
	}
	return algs, nil
}

// options validates the flags and files and builds predict.Options.
func (f *inputFlags) options() (predict.Options, error) {
	var o predict.Options
	if f.kernel == "" {
		return o, argErr("--kernel", "required")
	}
	// An empty command line is legal but almost always a forgotten flag;
	// requiring it explicitly (--cmdline "") keeps it deliberate.
	if !f.set("cmdline") {
		return o, argErr("--cmdline", "required (use --cmdline \"\" for an empty command line)")
	}
	if err := checkFile("--kernel", f.kernel); err != nil {
		return o, err
	}
	for _, p := range f.initrds {
		if err := checkFile("--initrd", p); err != nil {
			return o, err
		}
	}
	banks, err := f.bankList()
	if err != nil {
		return o, err
	}
	o.Banks = banks
	active := banks
	if active == nil {
		active = tpmfront.DefaultAlgs
	}
	seen := map[string]bool{}
	for _, s := range f.pcrInits {
		in, err := predict.ParsePCRInit(s)
		if err != nil {
			return o, &argError{arg: "--pcr-init", err: err}
		}
		if !containsAlg(active, in.Alg) {
			return o, argErr("--pcr-init", "%q: bank %v is not predicted (banks %v)", s, in.Alg, active)
		}
		k := fmt.Sprint(in.PCR, in.Alg)
		if seen[k] {
			return o, argErr("--pcr-init", "%q: PCR %d %v given twice", s, in.PCR, in.Alg)
		}
		seen[k] = true
		o.Init = append(o.Init, in)
	}
	o.Inputs = predict.FileInputs(f.kernel, f.initrds, f.cmdline)
	return o, nil
}

func containsAlg(algs []tpmfront.Alg, a tpmfront.Alg) bool {
	for _, b := range algs {
		if a == b {
			return true
		}
	}
	return false
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
