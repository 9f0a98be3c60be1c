// Package predict is pcrsim's library: it turns boot inputs into the PCR
// values the stub will produce, by running the stub's own measurement plan
// (measure.Plan + measure.Apply) against a software PCR bank. Nothing here
// hashes or extends by itself, so a prediction cannot drift from the stub.
package predict

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/vtpmboot/vtpmboot/boot/measure"
	"github.com/vtpmboot/vtpmboot/tpmfront"
	"github.com/vtpmboot/vtpmboot/tpmfront/pcrfile"
)

// Options is what a prediction needs. Inputs come from wherever the caller
// found them (files on the command line today; disk images and xl configs
// later), so this package does not care how they were located.
type Options struct {
	// Banks to predict; nil means tpmfront.DefaultAlgs.
	Banks []tpmfront.Alg
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
	Alg   tpmfront.Alg
	Value []byte
}

// ParsePCRInit parses "PCR:BANK:HEX", e.g. "4:sha256:00ab...". The hex may
// carry a 0x prefix and either case, as tpm2_pcrread prints it.
func ParsePCRInit(s string) (PCRInit, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return PCRInit{}, fmt.Errorf("%q: want PCR:BANK:HEX", s)
	}
	pcr, err := strconv.Atoi(strings.TrimSpace(parts[0]))
	if err != nil || pcr < 0 || pcr >= tpmfront.NumPCRs {
		return PCRInit{}, fmt.Errorf("%q: PCR %q is not a number in 0..%d", s, parts[0], tpmfront.NumPCRs-1)
	}
	a, err := tpmfront.ParseAlg(parts[1])
	if err != nil {
		return PCRInit{}, fmt.Errorf("%q: %w", s, err)
	}
	h := strings.TrimSpace(parts[2])
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

// FileInputs measures host files: the kernel, the initrds in order, and the
// command line exactly as given.
func FileInputs(kernel string, initrds []string, cmdline string) measure.Inputs {
	in := measure.Inputs{Kernel: measure.FileSource(kernel), Cmdline: cmdline}
	for _, p := range initrds {
		in.Initrds = append(in.Initrds, measure.FileSource(p))
	}
	return in
}

// Report is a finished prediction.
type Report struct {
	Banks []tpmfront.Alg
	// Steps are the plan's extends with each PCR before and after.
	Steps []measure.Step
	// Final holds, per bank, the value of every PCR the plan extended.
	Final pcrfile.Readings
}

// Run predicts: plan the measurements, apply them to a software bank that
// starts from o.Init, and collect the result.
func Run(o Options) (*Report, error) {
	banks := o.Banks
	if len(banks) == 0 {
		banks = tpmfront.DefaultAlgs
	}
	banks = append([]tpmfront.Alg(nil), banks...)
	tpmfront.SortAlgs(banks)
	soft, err := tpmfront.NewSoft(banks)
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
	r := &Report{Banks: banks, Steps: steps, Final: pcrfile.Readings{}}
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
