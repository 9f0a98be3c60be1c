// Package report is the wire format between the e2e target system's /init
// (internal/target/targetinit) and the tests reading its serial console: PCR
// values, the kernel command line and the firmware event log, between
// markers, with a checksum so a kernel message printed into the middle of
// the block is caught instead of misread.
package report

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// Markers around the block. The END line carries the SHA-256 of the body.
const (
	Begin     = "==== VTPMBOOT TARGET REPORT BEGIN v1 ===="
	endPrefix = "==== VTPMBOOT TARGET REPORT END sha256="
	endSuffix = " ===="
)

// Report is what the target system saw.
type Report struct {
	// Version is Version12 or Version20; VersionSoftware when no TPM was found.
	Version pcrbank.Version
	// PCRs maps bank → PCR index → value, for every bank the kernel exposes.
	PCRs map[pcrbank.Alg]map[int][]byte
	// Cmdline is /proc/cmdline exactly, trailing newline included.
	Cmdline string
	// EventLog is binary_bios_measurements; empty when there was none.
	EventLog []byte
	// Errors are problems the target hit while collecting the above.
	Errors []string
	// Extra holds further named values (key: no spaces; value: any
	// string), e.g. the ACPI TPM table or the output of a command the
	// target ran; lines "x KEY BASE64".
	Extra map[string]string
}

// Where the e2e seal test leaves the sealed secret in the guest's TPM for
// targetinit: TPM 2.0 a persistent sealed-data object under a persistent
// primary; TPM 1.2 an NV index holding a 2-byte big-endian length and the
// TPM_STORED_DATA12 blob (sealed with the SRK, well-known SRK auth).
// targetinit reports the outcome in Extra under ExtraUnsealed (the secret)
// or ExtraUnsealError (the TPM's refusal or what failed).
const (
	SealedPrimary2 = 0x81000001
	SealedObject2  = 0x81000002
	SealedNV12     = 0x00012000
	// UnsealFlag on the target's command line asks targetinit to unseal.
	UnsealFlag       = "e2e.unseal"
	ExtraUnsealed    = "unsealed"
	ExtraUnsealError = "unseal-error"
)

// Format renders the block, trailing newline included.
func (r *Report) Format() string {
	var body strings.Builder
	switch r.Version {
	case pcrbank.Version12:
		body.WriteString("tpm-version 1.2\n")
	case pcrbank.Version20:
		body.WriteString("tpm-version 2.0\n")
	default:
		body.WriteString("tpm-version none\n")
	}
	algs := make([]pcrbank.Alg, 0, len(r.PCRs))
	for a := range r.PCRs {
		algs = append(algs, a)
	}
	pcrbank.SortAlgs(algs)
	for _, a := range algs {
		idx := make([]int, 0, len(r.PCRs[a]))
		for i := range r.PCRs[a] {
			idx = append(idx, i)
		}
		sort.Ints(idx)
		for _, i := range idx {
			fmt.Fprintf(&body, "pcr %s %d %x\n", a, i, r.PCRs[a][i])
		}
	}
	fmt.Fprintf(&body, "cmdline %x\n", r.Cmdline)
	// An empty log is "-" so the line never ends in a space a terminal
	// might strip.
	ev := base64.StdEncoding.EncodeToString(r.EventLog)
	if ev == "" {
		ev = "-"
	}
	fmt.Fprintf(&body, "eventlog %s\n", ev)
	for _, e := range r.Errors {
		fmt.Fprintf(&body, "error %s\n", strconv.Quote(e))
	}
	keys := make([]string, 0, len(r.Extra))
	for k := range r.Extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&body, "x %s %s\n", k, base64.StdEncoding.EncodeToString([]byte(r.Extra[k])))
	}
	sum := sha256.Sum256([]byte(body.String()))
	return Begin + "\n" + body.String() + endPrefix + hex.EncodeToString(sum[:]) + endSuffix + "\n"
}

// Parse finds the last complete block in console output (serial "\r\n"
// line ends are fine) and decodes it.
func Parse(console string) (*Report, error) {
	lines := strings.Split(strings.ReplaceAll(console, "\r", ""), "\n")
	start := -1
	for i := len(lines) - 1; i >= 0; i-- {
		if lines[i] == Begin {
			start = i
			break
		}
	}
	if start < 0 {
		return nil, fmt.Errorf("console: no target report (no %q line)", Begin)
	}
	end := -1
	for i := start + 1; i < len(lines); i++ {
		if strings.HasPrefix(lines[i], endPrefix) {
			end = i
			break
		}
	}
	if end < 0 {
		return nil, fmt.Errorf("console: target report begins on line %d but never ends (output cut off?)", start+1)
	}
	endLine := lines[end]
	want, ok := strings.CutSuffix(strings.TrimPrefix(endLine, endPrefix), endSuffix)
	if !ok {
		return nil, fmt.Errorf("console line %d: malformed end marker %q", end+1, endLine)
	}
	body := strings.Join(lines[start+1:end], "\n") + "\n"
	sum := sha256.Sum256([]byte(body))
	if got := hex.EncodeToString(sum[:]); got != want {
		return nil, fmt.Errorf("console lines %d-%d: target report checksum mismatch (got %s, block says %s): interleaved kernel output?", start+1, end+1, got, want)
	}
	r := &Report{PCRs: map[pcrbank.Alg]map[int][]byte{}}
	seenVersion, seenCmdline, seenLog := false, false, false
	for i, line := range lines[start+1 : end] {
		ln := start + 2 + i
		key, val, _ := strings.Cut(line, " ")
		switch key {
		case "tpm-version":
			switch val {
			case "1.2":
				r.Version = pcrbank.Version12
			case "2.0":
				r.Version = pcrbank.Version20
			case "none":
				r.Version = pcrbank.VersionSoftware
			default:
				return nil, fmt.Errorf("console line %d: unknown TPM version %q", ln, val)
			}
			seenVersion = true
		case "pcr":
			f := strings.Fields(val)
			if len(f) != 3 {
				return nil, fmt.Errorf("console line %d: pcr line needs bank, index, value: %q", ln, line)
			}
			alg, err := pcrbank.ParseAlg(f[0])
			if err != nil {
				return nil, fmt.Errorf("console line %d: %w", ln, err)
			}
			idx, err := strconv.Atoi(f[1])
			if err != nil || idx < 0 || idx >= pcrbank.NumPCRs {
				return nil, fmt.Errorf("console line %d: bad PCR index %q", ln, f[1])
			}
			v, err := hex.DecodeString(f[2])
			if err != nil || len(v) != alg.Size() {
				return nil, fmt.Errorf("console line %d: %v PCR %d value %q is not %d hex bytes", ln, alg, idx, f[2], alg.Size())
			}
			if r.PCRs[alg] == nil {
				r.PCRs[alg] = map[int][]byte{}
			}
			if _, dup := r.PCRs[alg][idx]; dup {
				return nil, fmt.Errorf("console line %d: %v PCR %d given twice", ln, alg, idx)
			}
			r.PCRs[alg][idx] = v
		case "cmdline":
			b, err := hex.DecodeString(val)
			if err != nil {
				return nil, fmt.Errorf("console line %d: cmdline: %w", ln, err)
			}
			r.Cmdline = string(b)
			seenCmdline = true
		case "eventlog":
			if val != "-" {
				b, err := base64.StdEncoding.DecodeString(val)
				if err != nil {
					return nil, fmt.Errorf("console line %d: eventlog: %w", ln, err)
				}
				r.EventLog = b
			}
			seenLog = true
		case "x":
			k, v, ok := strings.Cut(val, " ")
			b, err := base64.StdEncoding.DecodeString(v)
			if !ok || k == "" || err != nil {
				return nil, fmt.Errorf("console line %d: bad extra line %q", ln, line)
			}
			if r.Extra == nil {
				r.Extra = map[string]string{}
			}
			r.Extra[k] = string(b)
		case "error":
			s, err := strconv.Unquote(val)
			if err != nil {
				return nil, fmt.Errorf("console line %d: error line %q: %w", ln, val, err)
			}
			r.Errors = append(r.Errors, s)
		default:
			return nil, fmt.Errorf("console line %d: unknown target report line %q", ln, line)
		}
	}
	if !seenVersion || !seenCmdline || !seenLog {
		return nil, fmt.Errorf("console lines %d-%d: target report lacks tpm-version, cmdline or eventlog", start+1, end+1)
	}
	return r, nil
}
