package eventlog

import (
	"bytes"
	"fmt"
	"sort"
	"strings"

	"github.com/vtpmboot/vtpmboot/boot/measure"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// Mismatch is one PCR in one bank whose replayed value is not the TPM's.
type Mismatch struct {
	PCR      int
	Alg      pcrbank.Alg
	Replayed []byte
	Actual   []byte
}

// ReplayError is Verify's verdict when the log does not explain the
// readings, in the model of go-attestation's ReplayError: it names every
// PCR (per bank) that does not replay.
type ReplayError struct {
	Mismatches []Mismatch
}

func (e *ReplayError) Error() string {
	byAlg := map[pcrbank.Alg][]string{}
	var algs []pcrbank.Alg
	for _, m := range e.Mismatches {
		if byAlg[m.Alg] == nil {
			algs = append(algs, m.Alg)
		}
		byAlg[m.Alg] = append(byAlg[m.Alg], fmt.Sprint(m.PCR))
	}
	pcrbank.SortAlgs(algs)
	var parts []string
	for _, a := range algs {
		parts = append(parts, fmt.Sprintf("%v PCR %s", a, strings.Join(byAlg[a], ",")))
	}
	return "event log does not replay to " + strings.Join(parts, "; ")
}

// PCRs returns the PCR numbers that failed in any bank, sorted.
func (e *ReplayError) PCRs() []int {
	seen := map[int]bool{}
	var out []int
	for _, m := range e.Mismatches {
		if !seen[m.PCR] {
			seen[m.PCR] = true
			out = append(out, m.PCR)
		}
	}
	sort.Ints(out)
	return out
}

// Values replays the log from all-zero PCRs (a TPM after reset) into a
// software bank per bank in algs and returns every PCR of every bank.
func (l *Log) Values(algs []pcrbank.Alg) (map[pcrbank.Alg]map[int][]byte, error) {
	soft, err := pcrbank.NewSoft(algs)
	if err != nil {
		return nil, err
	}
	if err := l.Replay(soft); err != nil {
		return nil, err
	}
	out := map[pcrbank.Alg]map[int][]byte{}
	for _, a := range algs {
		out[a] = map[int][]byte{}
		for i := range pcrbank.NumPCRs {
			v, err := soft.ReadPCR(i, a)
			if err != nil {
				return nil, err
			}
			out[a][i] = v
		}
	}
	return out, nil
}

// Verify replays the log from zero and compares it with actual (bank →
// PCR → value, e.g. pcrfile.Readings from this machine's TPM): every PCR
// given must equal its replay. A PCR the log has no event for replays to
// zero. It returns a *ReplayError naming the PCRs that differ, or another
// error when the log cannot be replayed in a bank of actual at all (it
// carries no digests for it). On success it returns the verified events,
// as go-eventlog's Verify does: those of UntrustedEvents in a PCR that
// actual holds, in log order; the events of PCRs not read are vouched for
// by nothing and left out.
func (l *Log) Verify(actual map[pcrbank.Alg]map[int][]byte) ([]Event, error) {
	var algs []pcrbank.Alg
	for a := range actual {
		algs = append(algs, a)
	}
	if len(algs) == 0 {
		return nil, fmt.Errorf("verify event log: no PCR readings to verify against")
	}
	pcrbank.SortAlgs(algs)
	replayed, err := l.Values(algs)
	if err != nil {
		return nil, err
	}
	var re ReplayError
	for _, a := range algs {
		pcrs := make([]int, 0, len(actual[a]))
		for i := range actual[a] {
			pcrs = append(pcrs, i)
		}
		sort.Ints(pcrs)
		for _, i := range pcrs {
			if i < 0 || i >= pcrbank.NumPCRs {
				return nil, fmt.Errorf("verify event log: PCR %d out of range", i)
			}
			if !bytes.Equal(replayed[a][i], actual[a][i]) {
				re.Mismatches = append(re.Mismatches, Mismatch{PCR: i, Alg: a, Replayed: replayed[a][i], Actual: actual[a][i]})
			}
		}
	}
	if len(re.Mismatches) > 0 {
		return nil, &re
	}
	var out []Event
	for _, e := range l.UntrustedEvents {
		for _, a := range algs {
			if _, read := actual[a][e.PCR]; read {
				out = append(out, e)
				break
			}
		}
	}
	return out, nil
}

// Append returns a log holding l's events followed by next's, as a
// firmware log followed by the stub's log (printed on its console) reads
// once the stub's events are appended to the firmware's. Both must have
// the same layout and banks.
func (l *Log) Append(next *Log) (*Log, error) {
	if l.Format != next.Format {
		return nil, fmt.Errorf("cannot join a %v and a %v", l.Format, next.Format)
	}
	if fmt.Sprint(l.Algs) != fmt.Sprint(next.Algs) {
		return nil, fmt.Errorf("cannot join logs with banks %v and %v", l.Algs, next.Algs)
	}
	out := &Log{Format: l.Format, Algs: l.Algs}
	out.UntrustedEvents = append(append(make([]Event, 0, len(l.UntrustedEvents)+len(next.UntrustedEvents)), l.UntrustedEvents...), next.UntrustedEvents...)
	return out, nil
}

// IsStubEvent reports whether e has the shape of one of the stub's events:
// EV_IPL in PCR 4 or 5 with data starting measure.EventPrefix. The shape is no
// proof of origin (anything can write such an event); only a replay that
// matches the TPM says the events are what was extended.
func IsStubEvent(e Event) bool {
	return e.Type == EVIPL && (e.PCR == 4 || e.PCR == 5) && bytes.HasPrefix(e.Data, []byte(measure.EventPrefix))
}

// SplitStub returns the index of the first of the stub's events in l, or
// len(l.UntrustedEvents) when there is none: the events before it are the
// firmware's, whose replay gives the values the stub started from.
func (l *Log) SplitStub() int {
	for i, e := range l.UntrustedEvents {
		if IsStubEvent(e) {
			return i
		}
	}
	return len(l.UntrustedEvents)
}

// Prefix returns a log of the first n events of l.
func (l *Log) Prefix(n int) *Log {
	return &Log{Format: l.Format, Algs: l.Algs, UntrustedEvents: l.UntrustedEvents[:n:n]}
}
