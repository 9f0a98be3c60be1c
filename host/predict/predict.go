// Package predict is pcrsim's library: it turns boot inputs into the PCR
// values the stub will produce, by running the stub's own measurement plan
// (measure.Plan + measure.Apply) against a software PCR bank. Nothing here
// hashes or extends by itself, so a prediction cannot drift from the stub.
package predict

import (
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/vtpmboot/vtpmboot/boot/discover"
	"github.com/vtpmboot/vtpmboot/boot/measure"
	"github.com/vtpmboot/vtpmboot/host/pcrfile"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// Options is what a prediction needs. Inputs come from wherever the caller
// found them (files, a guest's disks or mounted tree, an xl config), so
// this package does not care how they were located.
type Options struct {
	// Banks to predict; nil means pcrbank.DefaultAlgs.
	Banks []pcrbank.Alg
	// Init are starting PCR values (e.g. what SeaBIOS measured before the
	// stub); PCRs not named start at zero as on a Xen vTPM.
	Init   []PCRInit
	Inputs measure.Inputs
	// Hasher nil means measure.StreamHasher{}.
	Hasher measure.Hasher
}

// PCRInit is a starting value for one PCR in one bank.
type PCRInit struct {
	PCR   int
	Alg   pcrbank.Alg
	Value []byte
}

// ParsePCRInit parses "PCR:BANK=HEX" (the spelling of tpm2-tools and
// systemd, e.g. "4:sha256=00ab...") or "PCR:BANK:HEX". The hex may carry a
// 0x prefix and either case, as tpm2_pcrread prints it.
func ParsePCRInit(s string) (PCRInit, error) {
	idx, rest, ok := strings.Cut(s, ":")
	i := strings.IndexAny(rest, "=:")
	if !ok || i < 0 {
		return PCRInit{}, fmt.Errorf("%q: want PCR:BANK=HEX (or PCR:BANK:HEX)", s)
	}
	bank, h := rest[:i], rest[i+1:]
	pcr, err := strconv.Atoi(strings.TrimSpace(idx))
	if err != nil || pcr < 0 || pcr >= pcrbank.NumPCRs {
		return PCRInit{}, fmt.Errorf("%q: PCR %q is not a number in 0..%d", s, idx, pcrbank.NumPCRs-1)
	}
	a, err := pcrbank.ParseAlg(bank)
	if err != nil {
		return PCRInit{}, fmt.Errorf("%q: %w", s, err)
	}
	h = strings.TrimSpace(h)
	h = strings.TrimPrefix(strings.TrimPrefix(h, "0x"), "0X")
	v, err := hex.DecodeString(h)
	if err != nil {
		return PCRInit{}, fmt.Errorf("%q: value is not hex", s)
	}
	if len(v) != a.Size() {
		return PCRInit{}, fmt.Errorf("%q: %v value is %d bytes, want %d", s, a, len(v), a.Size())
	}
	return PCRInit{PCR: pcr, Alg: a, Value: v}, nil
}

// Banks is the bank rule every prediction follows: none named means
// pcrbank.DefaultAlgs; the result is a sorted copy.
func Banks(named []pcrbank.Alg) []pcrbank.Alg {
	if len(named) == 0 {
		named = pcrbank.DefaultAlgs
	}
	out := append([]pcrbank.Alg(nil), named...)
	pcrbank.SortAlgs(out)
	return out
}

// ParsePCRInits parses --pcr-init values for a prediction over banks (nil:
// the defaults): each must name a predicted bank, and no PCR and bank
// twice. Errors name the offending value.
func ParsePCRInits(specs []string, banks []pcrbank.Alg) ([]PCRInit, error) {
	active := Banks(banks)
	var out []PCRInit
	seen := map[[2]int]bool{}
	for _, s := range specs {
		in, err := ParsePCRInit(s)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(active, in.Alg) {
			return nil, fmt.Errorf("%q: bank %v is not predicted (banks %v)", s, in.Alg, active)
		}
		k := [2]int{in.PCR, int(in.Alg)}
		if seen[k] {
			return nil, fmt.Errorf("%q: PCR %d %v given twice", s, in.PCR, in.Alg)
		}
		seen[k] = true
		out = append(out, in)
	}
	return out, nil
}

// FileInputs measures host files: the kernel, the initrds in order, and the
// command line exactly as given.
func FileInputs(kernel string, initrds []string, cmdline string) measure.Inputs {
	in := measure.Inputs{Kernel: measure.FileSource(kernel), Cmdline: cmdline}
	for _, p := range initrds {
		in.Initrds = append(in.Initrds, measure.FileSource(p))
	}
	return in
}

// CheckFileKernel refuses, as the stub would, a kernel file kexec cannot
// boot or a command line it would not pass as measured
// (discover.CheckBootable).
func CheckFileKernel(kernel, cmdline string) error {
	// O_NONBLOCK: a FIFO is refused below, not waited on.
	f, err := os.OpenFile(kernel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", kernel)
	}
	return discover.CheckBootable(kernel, f, st.Size(), cmdline)
}

// Report is a finished prediction.
type Report struct {
	Banks []pcrbank.Alg
	// Steps are the plan's extends with each PCR before and after.
	Steps []measure.Step
	// Final holds, per bank, the value of every PCR the plan extended.
	Final pcrfile.Readings
	// Init are the starting values the prediction assumed (Options.Init);
	// every other PCR started at zero.
	Init []PCRInit
}

// Run predicts: plan the measurements, apply them to a software bank that
// starts from o.Init, and collect the result.
func Run(o Options) (*Report, error) {
	banks := Banks(o.Banks)
	soft, err := pcrbank.NewSoft(banks)
	if err != nil {
		return nil, err
	}
	seen := map[[2]int]bool{}
	for _, in := range o.Init {
		k := [2]int{in.PCR, int(in.Alg)}
		if seen[k] {
			return nil, fmt.Errorf("starting value for PCR %d %v given twice", in.PCR, in.Alg)
		}
		seen[k] = true
		if err := soft.SetPCR(in.PCR, in.Alg, in.Value); err != nil {
			return nil, fmt.Errorf("starting value: %w", err)
		}
	}
	ms, err := measure.Plan(banks, o.Inputs, o.Hasher)
	if err != nil {
		return nil, err
	}
	steps, err := measure.Apply(soft, ms)
	if err != nil {
		return nil, err
	}
	r := &Report{Banks: banks, Steps: steps, Final: pcrfile.Readings{}, Init: append([]PCRInit(nil), o.Init...)}
	for _, a := range banks {
		r.Final[a] = map[int][]byte{}
		for _, s := range steps {
			v, err := soft.ReadPCR(s.PCR, a)
			if err != nil {
				return nil, err
			}
			r.Final[a][s.PCR] = v
		}
	}
	return r, nil
}

// Measurements returns the plan's measurements, e.g. for an event log.
func (r *Report) Measurements() []measure.Measurement {
	ms := make([]measure.Measurement, len(r.Steps))
	for i, s := range r.Steps {
		ms[i] = s.Measurement
	}
	return ms
}
