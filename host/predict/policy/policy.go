// Package policy turns PCR predictions into what sealing and attestation
// tools consume: TPM 2.0 PolicyPCR digests (and PolicyOR trees over several
// allowed boots), the TPM 1.2 composite hash TPM_Seal binds to, and the
// files and strings of tpm2-tools, systemd-cryptenroll, Keylime and
// systemd-pcrlock (docs/sealing.md). It is host-only: it works on
// predictions, never on a TPM.
//
// A policy is only ever computed over predicted values: every PCR of the
// selection must be one the measurement plan extends or one the caller gave
// a fixed value for (--pcr-init); anything else is an error.
package policy

import (
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/vtpmboot/vtpmboot/boot/measure"
	"github.com/vtpmboot/vtpmboot/host/pcrfile"
	"github.com/vtpmboot/vtpmboot/host/predict"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// DefaultSelection is what the stub extends: PCR 4 (kernel) and PCR 5
// (command line, initrd).
var DefaultSelection = Selection{measure.PCRKernel, measure.PCRCmdline}

// Selection is a sorted set of PCR indices, each in 0..23.
type Selection []int

// ParseSelection parses "4,5" (or "4+5", as systemd writes it).
func ParseSelection(s string) (Selection, error) {
	seen := map[int]bool{}
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == '+' }) {
		f = strings.TrimSpace(f)
		n, err := strconv.Atoi(f)
		if err != nil || len(f) > 2 || n < 0 || n >= pcrbank.NumPCRs {
			return nil, fmt.Errorf("PCR %q is not a number in 0..%d", f, pcrbank.NumPCRs-1)
		}
		seen[n] = true
	}
	if len(seen) == 0 {
		return nil, fmt.Errorf("empty PCR selection %q", s)
	}
	out := make(Selection, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Ints(out)
	return out, nil
}

func (s Selection) String() string {
	parts := make([]string, len(s))
	for i, p := range s {
		parts[i] = strconv.Itoa(p)
	}
	return strings.Join(parts, ",")
}

// mask is the 3-byte pcrSelect bitmap (PCR n is bit n%8 of byte n/8) that
// both TPM versions use for 24 PCRs.
func (s Selection) mask() [3]byte {
	var m [3]byte
	for _, p := range s {
		m[p/8] |= 1 << (p % 8)
	}
	return m
}

// Event is one measurement as systemd-pcrlock records it: the PCR and the
// digest extended into it, per bank.
type Event struct {
	PCR     int
	Digests pcrbank.Digests
}

// Prediction is one allowed boot: the value of every PCR of interest per
// bank, and the measurements behind them.
type Prediction struct {
	// Label names the boot for people ("guest web1, entry 0 \"Debian\"").
	Label string
	Banks []pcrbank.Alg
	// Final holds the PCRs the plan extended, per bank.
	Final pcrfile.Readings
	// Init holds the starting values the prediction assumed (all others
	// were zero). A PCR the plan does not extend keeps its starting value,
	// which is how a selection covers PCRs other than 4 and 5.
	Init   pcrfile.Readings
	Events []Event
	// Contract is the measurement contract version that made it.
	Contract int
}

// FromReport wraps a finished prediction.
func FromReport(label string, r *predict.Report) Prediction {
	p := Prediction{Label: label, Banks: append([]pcrbank.Alg(nil), r.Banks...), Final: r.Final,
		Init: pcrfile.Readings{}, Contract: measure.ContractVersion}
	for _, in := range r.Init {
		if p.Init[in.Alg] == nil {
			p.Init[in.Alg] = map[int][]byte{}
		}
		p.Init[in.Alg][in.PCR] = in.Value
	}
	for _, s := range r.Steps {
		p.Events = append(p.Events, Event{PCR: s.PCR, Digests: s.Digests.Clone()})
	}
	return p
}

// FromJSON reads a pcrsim prediction document (predict --format json, one
// guest of --xl-config). Documents from before the contract version was
// recorded are refused: nothing says which rules made them or what they
// assumed as starting values.
func FromJSON(label string, d *pcrfile.JSONDoc) (Prediction, error) {
	if d == nil {
		return Prediction{}, errors.New("no prediction in the document")
	}
	if d.Contract == 0 {
		return Prediction{}, errors.New("no contract version: written by an older pcrsim; predict again")
	}
	if d.Contract != measure.ContractVersion {
		return Prediction{}, fmt.Errorf("measurement contract %d, this pcrsim implements %d", d.Contract, measure.ContractVersion)
	}
	p := Prediction{Label: label, Contract: d.Contract, Init: pcrfile.Readings{}}
	final, err := readingsFromJSON("banks", d.Banks)
	if err != nil {
		return Prediction{}, err
	}
	if len(final) == 0 {
		return Prediction{}, errors.New("banks: no PCR values")
	}
	p.Final = final
	p.Banks = final.Algs()
	if p.Init, err = readingsFromJSON("init", d.Init); err != nil {
		return Prediction{}, err
	}
	for a := range p.Init {
		if !slices.Contains(p.Banks, a) {
			return Prediction{}, fmt.Errorf("init: bank %v is not predicted (banks %v)", a, p.Banks)
		}
	}
	for i, e := range d.Events {
		if e.PCR < 0 || e.PCR >= pcrbank.NumPCRs {
			return Prediction{}, fmt.Errorf("events[%d]: PCR %d out of range", i, e.PCR)
		}
		ev := Event{PCR: e.PCR, Digests: pcrbank.Digests{}}
		for name, h := range e.Digests {
			a, err := pcrbank.ParseAlg(name)
			if err != nil {
				return Prediction{}, fmt.Errorf("events[%d]: %w", i, err)
			}
			v, err := hex.DecodeString(h)
			if err != nil || len(v) != a.Size() {
				return Prediction{}, fmt.Errorf("events[%d]: %v digest %q is not %d hex bytes", i, a, h, a.Size())
			}
			ev.Digests[a] = v
		}
		p.Events = append(p.Events, ev)
	}
	return p, nil
}

func readingsFromJSON(field string, m map[string]map[string]string) (pcrfile.Readings, error) {
	out := pcrfile.Readings{}
	for name, pcrs := range m {
		a, err := pcrbank.ParseAlg(name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", field, err)
		}
		out[a] = map[int][]byte{}
		for k, h := range pcrs {
			n, err := strconv.Atoi(k)
			if err != nil || len(k) > 2 || n < 0 || n >= pcrbank.NumPCRs {
				return nil, fmt.Errorf("%s.%v: bad PCR number %q", field, a, k)
			}
			v, err := hex.DecodeString(h)
			if err != nil || len(v) != a.Size() {
				return nil, fmt.Errorf("%s.%v.%d: %q is not %d hex bytes", field, a, n, h, a.Size())
			}
			out[a][n] = v
		}
	}
	return out, nil
}

// Value is the value of PCR pcr in bank a after the boot: the predicted
// one for an extended PCR, else the given starting value. ok is false when
// the prediction says nothing about it.
func (p *Prediction) Value(a pcrbank.Alg, pcr int) (v []byte, ok bool) {
	if v, ok := p.Final[a][pcr]; ok {
		return v, true
	}
	if v, ok := p.Init[a][pcr]; ok {
		return v, true
	}
	return nil, false
}

// Values returns the selected PCRs of bank a in selection order, or an
// error naming the first PCR without a predicted or given value.
func (p *Prediction) Values(a pcrbank.Alg, sel Selection) ([][]byte, error) {
	out := make([][]byte, len(sel))
	for i, pcr := range sel {
		v, ok := p.Value(a, pcr)
		if !ok {
			return nil, &MissingError{Label: p.Label, PCR: pcr, Alg: a}
		}
		out[i] = v
	}
	return out, nil
}

// MissingError is a selected PCR that is neither extended by the plan nor
// given a value: a policy over it would rest on a guess.
type MissingError struct {
	Label string
	PCR   int
	Alg   pcrbank.Alg
}

func (e *MissingError) Error() string {
	who := ""
	if e.Label != "" {
		who = e.Label + ": "
	}
	return fmt.Sprintf("%sPCR %d %v has no predicted value (vtpmboot extends only PCRs 4 and 5); give it with --pcr-init %d:%v=HEX",
		who, e.PCR, e.Alg, e.PCR, e.Alg)
}

// Set is every allowed boot over one selection. All predictions must cover
// the same banks: a policy per bank over a fleet where some guests lack
// that bank would silently allow fewer boots than asked for.
type Set struct {
	Selection   Selection
	Banks       []pcrbank.Alg
	Predictions []Prediction
}

// NewSet checks that the predictions agree on their banks and give a
// value for every selected PCR in every bank.
func NewSet(sel Selection, ps []Prediction) (*Set, error) {
	if len(sel) == 0 {
		sel = DefaultSelection
	}
	if len(ps) == 0 {
		return nil, errors.New("no prediction to build a policy from")
	}
	s := &Set{Selection: sel, Banks: append([]pcrbank.Alg(nil), ps[0].Banks...), Predictions: ps}
	pcrbank.SortAlgs(s.Banks)
	for _, p := range ps[1:] {
		b := append([]pcrbank.Alg(nil), p.Banks...)
		pcrbank.SortAlgs(b)
		if !slices.Equal(b, s.Banks) {
			return nil, fmt.Errorf("mixed banks: %s predicts %v, %s predicts %v; predict every boot with the same --bank",
				labelOr(ps[0].Label, "the first prediction"), s.Banks, labelOr(p.Label, "another"), b)
		}
	}
	for i := range ps {
		for _, a := range s.Banks {
			if _, err := ps[i].Values(a, sel); err != nil {
				return nil, err
			}
		}
	}
	return s, nil
}

func labelOr(l, def string) string {
	if l == "" {
		return def
	}
	return l
}

// HasBank reports whether the set predicts bank a.
func (s *Set) HasBank(a pcrbank.Alg) bool { return slices.Contains(s.Banks, a) }

// Tuples returns the distinct value tuples of bank a (one per allowed
// boot, duplicates dropped, first occurrence order) and, for each, the
// labels of the boots that give it.
func (s *Set) Tuples(a pcrbank.Alg) (tuples [][][]byte, labels [][]string) {
	idx := map[string]int{}
	for i := range s.Predictions {
		p := &s.Predictions[i]
		vs, _ := p.Values(a, s.Selection) // checked by NewSet
		var k strings.Builder
		for _, v := range vs {
			k.Write(v)
		}
		j, ok := idx[k.String()]
		if !ok {
			j = len(tuples)
			idx[k.String()] = j
			tuples = append(tuples, vs)
			labels = append(labels, nil)
		}
		labels[j] = append(labels[j], p.Label)
	}
	return tuples, labels
}
