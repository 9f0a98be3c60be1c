package e2e

import (
	"encoding/hex"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/vtpmboot/vtpmboot/boot/eventlog"
	"github.com/vtpmboot/vtpmboot/boot/stub"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// Lines splits serial console output into lines without "\r".
func Lines(console string) []string {
	return strings.Split(strings.ReplaceAll(console, "\r", ""), "\n")
}

// StubLines are the stub's own lines ("vtpmboot: ..."), in order.
func StubLines(console string) []string {
	var out []string
	for _, l := range Lines(console) {
		if strings.HasPrefix(l, stub.LinePrefix) {
			out = append(out, l)
		}
	}
	return out
}

// FatalLines are the stub's "vtpmboot: FATAL: ..." lines.
func FatalLines(console string) []string {
	var out []string
	for _, l := range StubLines(console) {
		if strings.HasPrefix(l, stub.FatalPrefix) {
			out = append(out, l)
		}
	}
	return out
}

// Phase is one "vtpmboot: phase <name> <N>ms" line (docs/stub.md).
type Phase struct {
	Name string
	Ms   int
}

// Phases are the stub's phase timings in console order.
func Phases(console string) []Phase {
	var out []Phase
	for _, l := range StubLines(console) {
		if name, ms, ok := stub.ParsePhase(l); ok {
			out = append(out, Phase{name, ms})
		}
	}
	return out
}

var printkRE = regexp.MustCompile(`^\[\s*(\d+\.\d+)\] (.*)$`)

// KernelTime is the printk timestamp (seconds since the kernel started) of
// the first kernel line containing substr, from console output of a kernel
// booted with printk.time=1. after skips everything before the first line
// containing it ("" skips nothing).
func KernelTime(console, after, substr string) (float64, bool) {
	seen := after == ""
	for _, l := range Lines(console) {
		if !seen {
			seen = strings.Contains(l, after)
			continue
		}
		m := printkRE.FindStringSubmatch(l)
		if m == nil || !strings.Contains(m[2], substr) {
			continue
		}
		v, err := strconv.ParseFloat(m[1], 64)
		return v, err == nil
	}
	return 0, false
}

// Step is one extend as the stub's trace reports it (measure.WriteTrace):
// the PCR values it read from the TPM before and after.
type Step struct {
	PCR           int
	Kind          string
	Digest        map[pcrbank.Alg][]byte
	Before, After map[pcrbank.Alg][]byte
}

var (
	stepRE  = regexp.MustCompile(`^extend PCR (\d+) with (\S+) `)
	valueRE = regexp.MustCompile(`^  (\S*)\s+(digest|before|after)\s+([0-9a-f]+)$`)
)

// Trace parses the stub's measurement trace from the console.
func Trace(console string) ([]Step, error) {
	var steps []Step
	var bank pcrbank.Alg
	for n, l := range Lines(console) {
		if m := stepRE.FindStringSubmatch(l); m != nil {
			pcr, _ := strconv.Atoi(m[1])
			steps = append(steps, Step{PCR: pcr, Kind: m[2], Digest: map[pcrbank.Alg][]byte{}, Before: map[pcrbank.Alg][]byte{}, After: map[pcrbank.Alg][]byte{}})
			continue
		}
		m := valueRE.FindStringSubmatch(l)
		if m == nil || len(steps) == 0 {
			continue
		}
		s := &steps[len(steps)-1]
		if m[1] != "" {
			a, err := pcrbank.ParseAlg(m[1])
			if err != nil {
				return nil, fmt.Errorf("console line %d: %w", n+1, err)
			}
			bank = a
		}
		v, err := hex.DecodeString(m[3])
		if err != nil || len(v) != bank.Size() {
			return nil, fmt.Errorf("console line %d: bad %v value %q", n+1, bank, m[3])
		}
		map[string]map[pcrbank.Alg][]byte{"digest": s.Digest, "before": s.Before, "after": s.After}[m[2]][bank] = v
	}
	return steps, nil
}

// StubEventLog is the stub's event log, printed base64 between
// "vtpmboot: BEGIN EVENTLOG" and "vtpmboot: END EVENTLOG" (the last one,
// through the same extractor as pcrsim eventlog extract).
func StubEventLog(console string) ([]byte, error) {
	return eventlog.ExtractConsoleLast(strings.NewReader(console))
}
