package predict

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"

	"github.com/vtpmboot/vtpmboot/boot/measure"
	"github.com/vtpmboot/vtpmboot/host/pcrfile"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// WriteText prints the trace, then the final value of every extended PCR.
func (r *Report) WriteText(w io.Writer) error {
	if err := measure.WriteTrace(w, r.Steps); err != nil {
		return err
	}
	bw := bufio.NewWriter(w)
	fmt.Fprintln(bw, "final")
	for _, a := range r.Banks {
		for _, p := range r.Final.PCRs(a) {
			fmt.Fprintf(bw, "  PCR %-2d %-7s %x\n", p, a, r.Final[a][p])
		}
	}
	return bw.Flush()
}

// JSON returns the document WriteJSON writes.
func (r *Report) JSON() pcrfile.JSONDoc {
	doc := pcrfile.JSONDoc{Contract: measure.ContractVersion, Banks: map[string]map[string]string{},
		Init: map[string]map[string]string{}, Events: []pcrfile.JSONEvent{}}
	for _, in := range r.Init {
		b := in.Alg.String()
		if doc.Init[b] == nil {
			doc.Init[b] = map[string]string{}
		}
		doc.Init[b][strconv.Itoa(in.PCR)] = fmt.Sprintf("%x", in.Value)
	}
	for _, a := range r.Banks {
		m := map[string]string{}
		for p, v := range r.Final[a] {
			m[strconv.Itoa(p)] = fmt.Sprintf("%x", v)
		}
		doc.Banks[a.String()] = m
	}
	for _, s := range r.Steps {
		d := map[string]string{}
		for a := range s.Digests {
			d[a.String()] = s.Digests.Hex(a)
		}
		doc.Events = append(doc.Events, pcrfile.JSONEvent{PCR: s.PCR, Kind: string(s.Kind), Source: s.Source, Digests: d})
	}
	return doc
}

// WriteJSON writes {"contract":1,"banks":{bank:{pcr:hex}},"init":{bank:{pcr:hex}},"events":[...]},
// one line.
// HTML escaping is off so a command line reads as itself.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(r.JSON())
}

// Status is the outcome for one PCR in one bank.
type Status int

const (
	Match Status = iota
	Mismatch
	// Missing means the readings lack this PCR in a bank they do have, or
	// lack a bank that was explicitly asked for: either way nothing proves
	// the prediction, so it counts as a failure.
	Missing
)

func (s Status) String() string {
	return [...]string{"match", "MISMATCH", "MISSING"}[s]
}

// Row is one line of a verification table.
type Row struct {
	PCR              int
	Alg              pcrbank.Alg
	Expected, Actual []byte
	Status           Status
}

// Comparison is the outcome of Compare.
type Comparison struct {
	Rows []Row
	// Skipped are predicted banks the readings do not have and that were
	// not explicitly required (e.g. sha256 against a TPM 1.2 sysfs file).
	Skipped []pcrbank.Alg
}

// OK reports whether at least one value was compared and all matched.
func (c Comparison) OK() bool {
	if len(c.Rows) == 0 {
		return false
	}
	for _, r := range c.Rows {
		if r.Status != Match {
			return false
		}
	}
	return true
}

// Compare checks every predicted PCR against the readings. A bank in
// required must be in the readings (every PCR of it is Missing otherwise);
// a predicted bank that is not required and absent from the readings is
// Skipped and reported, because a TPM 1.2 only ever has SHA-1 and a
// default prediction covers SHA-256 too. Readings beyond the prediction
// (other PCRs, other banks) are ignored: nothing predicts them.
func Compare(expected, actual pcrfile.Readings, required []pcrbank.Alg) Comparison {
	req := map[pcrbank.Alg]bool{}
	for _, a := range required {
		req[a] = true
	}
	var c Comparison
	for _, a := range expected.Algs() {
		got, have := actual[a]
		if !have && !req[a] {
			c.Skipped = append(c.Skipped, a)
			continue
		}
		for _, p := range expected.PCRs(a) {
			row := Row{PCR: p, Alg: a, Expected: expected[a][p], Status: Missing}
			if v, ok := got[p]; ok {
				row.Actual = v
				row.Status = Mismatch
				if string(v) == string(row.Expected) {
					row.Status = Match
				}
			}
			c.Rows = append(c.Rows, row)
		}
	}
	sort.SliceStable(c.Rows, func(i, j int) bool { return c.Rows[i].PCR < c.Rows[j].PCR })
	return c
}

// WriteTable prints one row per PCR and bank (PCR, bank, result, expected,
// actual: one line each so it greps), then the skipped banks and a
// verdict line.
func (c Comparison) WriteTable(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "%-3s %-7s %-8s %s %s\n", "PCR", "bank", "result", "expected", "actual")
	for _, r := range c.Rows {
		actual := "(absent)"
		if r.Actual != nil {
			actual = fmt.Sprintf("%x", r.Actual)
		}
		fmt.Fprintf(bw, "%-3d %-7s %-8s %x %s\n", r.PCR, r.Alg, r.Status, r.Expected, actual)
	}
	for _, a := range c.Skipped {
		fmt.Fprintf(bw, "bank %v: predicted but not in the readings; not compared (name it with --bank to require it)\n", a)
	}
	switch {
	case len(c.Rows) == 0:
		fmt.Fprintln(bw, "FAIL: no predicted bank is in the readings")
	case c.OK():
		fmt.Fprintf(bw, "OK: %d values match\n", len(c.Rows))
	default:
		bad := 0
		for _, r := range c.Rows {
			if r.Status != Match {
				bad++
			}
		}
		fmt.Fprintf(bw, "FAIL: %d of %d values do not match\n", bad, len(c.Rows))
	}
	return bw.Flush()
}
