package predict

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/vtpmboot/vtpmboot/boot/eventlog"
	"github.com/vtpmboot/vtpmboot/boot/measure"
	"github.com/vtpmboot/vtpmboot/host/pcrfile"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// FirmwareLogPath is where Linux exposes the firmware's event log (with
// the stub's events after it when the stub could append them).
const FirmwareLogPath = "/sys/kernel/security/tpm0/binary_bios_measurements"

// StartFromLog replays the firmware's part of l (the events before the
// stub's, eventlog.SplitStub) and returns PCR 4 and 5 of every bank in
// banks as starting values for a prediction.
func StartFromLog(l *eventlog.Log, banks []pcrbank.Alg) ([]PCRInit, error) {
	fw := l.Prefix(l.SplitStub())
	vals, err := fw.Values(banks)
	if err != nil {
		return nil, err
	}
	var out []PCRInit
	for _, a := range banks {
		for _, i := range []int{4, 5} {
			out = append(out, PCRInit{PCR: i, Alg: a, Value: vals[a][i]})
		}
	}
	return out, nil
}

// ReadTarget reads pcrs of every bank of t.
func ReadTarget(t pcrbank.Target, pcrs []int) (pcrfile.Readings, error) {
	banks, err := t.Banks()
	if err != nil {
		return nil, fmt.Errorf("list PCR banks: %w", err)
	}
	r := pcrfile.Readings{}
	for _, a := range banks {
		r[a] = map[int][]byte{}
		for _, i := range pcrs {
			v, err := t.ReadPCR(i, a)
			if err != nil {
				return nil, fmt.Errorf("read %v PCR %d: %w", a, i, err)
			}
			r[a][i] = v
		}
	}
	return r, nil
}

// EventDiff is one way the stub's events in a log differ from a
// prediction.
type EventDiff struct {
	// Index is the event's position among the verified events
	// (eventlog.Log.Verify: the log's events of the PCRs read, 0-based);
	// -1 when the event is missing.
	Index int
	// N is the measurement's number in the plan (1..3).
	N        int
	What     string
	Expected string
	Actual   string
}

func (d EventDiff) String() string {
	at := "missing"
	if d.Index >= 0 {
		at = "log event " + strconv.Itoa(d.Index)
	}
	return fmt.Sprintf("measurement %d (%s) %s: expected %s, log has %s", d.N, at, d.What, d.Expected, d.Actual)
}

// CompareEvents compares the stub's events among events, which
// eventlog.Log.Verify returned (eventlog.IsStubEvent, in log order), with
// the prediction want, in every bank both carry: the
// PCR, the event data and each digest. No differences means the log's
// events are exactly the predicted measurements.
func CompareEvents(events []eventlog.Event, want []measure.Measurement) []EventDiff {
	var idx []int
	for i, e := range events {
		if eventlog.IsStubEvent(e) {
			idx = append(idx, i)
		}
	}
	var diffs []EventDiff
	if len(idx) != len(want) {
		diffs = append(diffs, EventDiff{Index: -1, N: 0, What: "number of vtpmboot events", Expected: strconv.Itoa(len(want)), Actual: strconv.Itoa(len(idx))})
	}
	for n, m := range want {
		if n >= len(idx) {
			diffs = append(diffs, EventDiff{Index: -1, N: n + 1, What: "event", Expected: fmt.Sprintf("%q in PCR %d", m.EventData, m.PCR), Actual: "nothing"})
			continue
		}
		e := events[idx[n]]
		if e.PCR != m.PCR {
			diffs = append(diffs, EventDiff{Index: idx[n], N: n + 1, What: "PCR", Expected: strconv.Itoa(m.PCR), Actual: strconv.Itoa(e.PCR)})
		}
		if !bytes.Equal(e.Data, m.EventData) {
			diffs = append(diffs, EventDiff{Index: idx[n], N: n + 1, What: "event data", Expected: fmt.Sprintf("%q", m.EventData), Actual: fmt.Sprintf("%q", e.Data)})
		}
		for _, a := range m.Digests.Algs() {
			got := e.Digest(a)
			if got == nil {
				continue // a bank the log does not carry: nothing to compare
			}
			if !bytes.Equal(got, m.Digests[a]) {
				diffs = append(diffs, EventDiff{Index: idx[n], N: n + 1, What: a.String() + " digest", Expected: fmt.Sprintf("%x", m.Digests[a]), Actual: fmt.Sprintf("%x", got)})
			}
		}
	}
	return diffs
}

// PlanFromJSON turns the events of a pcrsim JSON prediction back into
// measurements to compare a log with, their event text rebuilt by the
// plan's own measure.EventData. A document without events, or with one
// that does not parse, gives nil: there is then nothing to compare
// events with, and the PCR values are still compared.
func PlanFromJSON(b []byte) []measure.Measurement {
	var doc pcrfile.JSONDoc
	if json.Unmarshal(b, &doc) != nil || len(doc.Events) == 0 {
		return nil
	}
	var out []measure.Measurement
	for _, ev := range doc.Events {
		d := pcrbank.Digests{}
		for name, h := range ev.Digests {
			a, err := pcrbank.ParseAlg(name)
			v, err2 := hex.DecodeString(h)
			if err != nil || err2 != nil || len(v) != a.Size() {
				return nil
			}
			d[a] = v
		}
		k := measure.Kind(ev.Kind)
		out = append(out, measure.Measurement{PCR: ev.PCR, Kind: k, Source: ev.Source, Digests: d,
			EventData: measure.EventData(k, ev.Source)})
	}
	return out
}
