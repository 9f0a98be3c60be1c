// Package pcrfile parses actual PCR readings as operators collect them:
// tpm2_pcrread's YAML, the TPM 1.2 sysfs `pcrs` file, and pcrsim's own JSON.
// The input comes from wherever a verifier got it, so every parser treats
// it as hostile: bounded work per byte, no recursion beyond encoding/json,
// errors that say which line is wrong, never a panic.
package pcrfile

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// Readings holds PCR values per bank, then per PCR index.
type Readings map[pcrbank.Alg]map[int][]byte

// Algs lists the banks present, in canonical order.
func (r Readings) Algs() []pcrbank.Alg {
	out := make([]pcrbank.Alg, 0, len(r))
	for a := range r {
		out = append(out, a)
	}
	pcrbank.SortAlgs(out)
	return out
}

// PCRs lists the PCR indexes present in bank a, ascending.
func (r Readings) PCRs(a pcrbank.Alg) []int {
	out := make([]int, 0, len(r[a]))
	for p := range r[a] {
		out = append(out, p)
	}
	sort.Ints(out)
	return out
}

// set records one value, refusing a second, different value for the same
// PCR: a file that says two things about one register cannot be trusted
// for either.
func (r Readings) set(a pcrbank.Alg, pcr int, v []byte) error {
	if pcr < 0 || pcr >= pcrbank.NumPCRs {
		return fmt.Errorf("PCR %d out of range 0..%d", pcr, pcrbank.NumPCRs-1)
	}
	if len(v) != a.Size() {
		return fmt.Errorf("%v PCR %d: value is %d bytes, want %d", a, pcr, len(v), a.Size())
	}
	m := r[a]
	if m == nil {
		m = map[int][]byte{}
		r[a] = m
	}
	if old, ok := m[pcr]; ok {
		if !bytes.Equal(old, v) {
			return fmt.Errorf("%v PCR %d given twice with different values", a, pcr)
		}
		return nil
	}
	m[pcr] = v
	return nil
}

// Format is a kind of readings file.
type Format int

const (
	FormatUnknown Format = iota
	// FormatTPM2YAML is tpm2_pcrread's output ("  sha256:\n    4 : 0xAB...").
	FormatTPM2YAML
	// FormatSysfs is TPM 1.2's /sys/class/tpm/tpm0/pcrs ("PCR-04: AB CD ...").
	FormatSysfs
	// FormatJSON is pcrsim's own JSON (only "banks" is read).
	FormatJSON
)

var formatNames = map[Format]string{
	FormatTPM2YAML: "yaml",
	FormatSysfs:    "sysfs",
	FormatJSON:     "json",
}

func (f Format) String() string {
	if s, ok := formatNames[f]; ok {
		return s
	}
	return "unknown"
}

// ParseFormat accepts the names String returns ("yaml", "sysfs", "json").
func ParseFormat(s string) (Format, error) {
	for f, n := range formatNames {
		if strings.EqualFold(strings.TrimSpace(s), n) {
			return f, nil
		}
	}
	return FormatUnknown, fmt.Errorf("unknown readings format %q (want yaml, sysfs or json)", s)
}

// MaxSize bounds what a caller should read before calling Parse: a full
// tpm2_pcrread of four banks is under 8 KiB, so anything near this is not a
// readings file.
const MaxSize = 1 << 20

// Parse detects the format of b and parses it.
func Parse(b []byte) (Readings, Format, error) {
	f := Detect(b)
	if f == FormatUnknown {
		return nil, f, errors.New("unrecognised readings format (want tpm2_pcrread YAML, TPM 1.2 sysfs pcrs, or pcrsim JSON)")
	}
	r, err := ParseAs(b, f)
	return r, f, err
}

// Detect guesses the format from the first meaningful line; it does not
// validate the rest.
func Detect(b []byte) Format {
	s := string(bytes.TrimLeft(b, " \t\r\n\ufeff"))
	switch {
	case strings.HasPrefix(s, "{"):
		return FormatJSON
	case strings.HasPrefix(s, "PCR-"):
		return FormatSysfs
	}
	line, _, _ := strings.Cut(s, "\n")
	line = strings.TrimSpace(line)
	if name, ok := strings.CutSuffix(line, ":"); ok {
		if name = strings.TrimSpace(name); name == "pcrs" || isBankName(name) {
			return FormatTPM2YAML
		}
	}
	return FormatUnknown
}

// ParseAs parses b as format f.
func ParseAs(b []byte, f Format) (Readings, error) {
	if len(b) > MaxSize {
		return nil, fmt.Errorf("%d bytes is too large for a readings file (limit %d)", len(b), MaxSize)
	}
	var r Readings
	var err error
	switch f {
	case FormatTPM2YAML:
		r, err = parseYAML(b)
	case FormatSysfs:
		r, err = parseSysfs(b)
	case FormatJSON:
		r, err = parseJSON(b)
	default:
		return nil, fmt.Errorf("unknown readings format %v", f)
	}
	if err != nil {
		return nil, fmt.Errorf("%v readings: %w", f, err)
	}
	if len(r) == 0 {
		return nil, fmt.Errorf("%v readings: no PCR values", f)
	}
	return r, nil
}

// otherBanks are banks tpm2-tools can print that vtpmboot cannot compute;
// their values are skipped rather than rejected so a TPM with an SM3 bank
// can still be verified on its SHA banks.
var otherBanks = map[string]bool{"sm3_256": true, "sha3_256": true, "sha3_384": true, "sha3_512": true}

func isBankName(s string) bool {
	if otherBanks[strings.ToLower(s)] {
		return true
	}
	_, err := pcrbank.ParseAlg(s)
	return err == nil
}

// parseYAML reads the subset of YAML tpm2_pcrread writes: bank headers
// ("sha256:") followed by "N : 0xHEX" lines, optionally under "pcrs:" as
// tpm2_quote prints them. Indentation is not significant here because no
// other nesting occurs in that output.
func parseYAML(b []byte) (Readings, error) {
	r := Readings{}
	var cur pcrbank.Alg
	skip := false // inside a bank we cannot compute
	haveBank := false
	for i, line := range strings.Split(string(b), "\n") {
		ln := i + 1
		s := strings.TrimSpace(line)
		if j := strings.IndexByte(s, '#'); j >= 0 {
			s = strings.TrimSpace(s[:j])
		}
		if s == "" || s == "---" {
			continue
		}
		key, val, ok := strings.Cut(s, ":")
		if !ok {
			return nil, fmt.Errorf("line %d: want \"bank:\" or \"pcr : 0xhex\", got %.40q", ln, s)
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		if val == "" {
			switch {
			case key == "pcrs":
			case otherBanks[strings.ToLower(key)]:
				skip, haveBank = true, true
			default:
				a, err := pcrbank.ParseAlg(key)
				if err != nil {
					return nil, fmt.Errorf("line %d: %w", ln, err)
				}
				cur, skip, haveBank = a, false, true
			}
			continue
		}
		if !haveBank {
			return nil, fmt.Errorf("line %d: PCR value before any bank header", ln)
		}
		pcr, err := parsePCRIndex(key)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", ln, err)
		}
		if skip {
			continue
		}
		v, err := parseHex(val)
		if err != nil {
			return nil, fmt.Errorf("line %d: %v PCR %d: %w", ln, cur, pcr, err)
		}
		if err := r.set(cur, pcr, v); err != nil {
			return nil, fmt.Errorf("line %d: %w", ln, err)
		}
	}
	return r, nil
}

// parseSysfs reads the format drivers/char/tpm/tpm-sysfs.c pcrs_show
// writes: "PCR-%02d: " then "%02X " per byte of a SHA-1 digest, one PCR a
// line. TPM 1.2 has only the SHA-1 bank.
func parseSysfs(b []byte) (Readings, error) {
	r := Readings{}
	for i, line := range strings.Split(string(b), "\n") {
		ln := i + 1
		s := strings.TrimSpace(line)
		if s == "" {
			continue
		}
		rest, ok := strings.CutPrefix(s, "PCR-")
		if !ok {
			return nil, fmt.Errorf("line %d: want \"PCR-NN: XX XX ...\", got %.40q", ln, s)
		}
		idx, val, ok := strings.Cut(rest, ":")
		if !ok {
			return nil, fmt.Errorf("line %d: no ':' after PCR number", ln)
		}
		pcr, err := parsePCRIndex(idx)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", ln, err)
		}
		fields := strings.Fields(val)
		if len(fields) != pcrbank.SHA1.Size() {
			return nil, fmt.Errorf("line %d: PCR %d has %d bytes, want %d", ln, pcr, len(fields), pcrbank.SHA1.Size())
		}
		v := make([]byte, 0, len(fields))
		for _, f := range fields {
			if len(f) != 2 {
				return nil, fmt.Errorf("line %d: PCR %d: byte %.8q is not two hex digits", ln, pcr, f)
			}
			x, err := hex.DecodeString(f)
			if err != nil {
				return nil, fmt.Errorf("line %d: PCR %d: byte %.8q is not hex", ln, pcr, f)
			}
			v = append(v, x[0])
		}
		if err := r.set(pcrbank.SHA1, pcr, v); err != nil {
			return nil, fmt.Errorf("line %d: %w", ln, err)
		}
	}
	return r, nil
}

// JSONDoc is pcrsim's JSON document. It lives here, next to its parser,
// so the writer (host/predict) and the reader cannot disagree on its shape.
type JSONDoc struct {
	// Contract is the measurement contract version that made the
	// prediction (measure.ContractVersion); 0 in files from before it
	// was recorded.
	Contract int `json:"contract,omitempty"`
	// Banks maps bank name → PCR number (decimal string) → lower-case hex.
	Banks map[string]map[string]string `json:"banks"`
	// Init are the starting values the prediction assumed (--pcr-init),
	// in the same shape as Banks; every PCR not named started at zero.
	Init   map[string]map[string]string `json:"init"`
	Events []JSONEvent                  `json:"events,omitempty"`
}

// JSONEvent is one measurement in pcrsim's JSON.
type JSONEvent struct {
	PCR     int               `json:"pcr"`
	Kind    string            `json:"kind"`
	Source  string            `json:"source"`
	Digests map[string]string `json:"digests"`
}

func parseJSON(b []byte) (Readings, error) {
	var doc JSONDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	r := Readings{}
	for name, pcrs := range doc.Banks {
		a, err := pcrbank.ParseAlg(name)
		if err != nil {
			return nil, fmt.Errorf("banks: %w", err)
		}
		for k, h := range pcrs {
			pcr, err := parsePCRIndex(k)
			if err != nil {
				return nil, fmt.Errorf("banks.%s: %w", a, err)
			}
			v, err := parseHex(h)
			if err != nil {
				return nil, fmt.Errorf("banks.%s.%d: %w", a, pcr, err)
			}
			if err := r.set(a, pcr, v); err != nil {
				return nil, fmt.Errorf("banks.%s: %w", a, err)
			}
		}
	}
	return r, nil
}

func parsePCRIndex(s string) (int, error) {
	s = strings.TrimSpace(s)
	// Bounded before Atoi so a long digit string cannot mean anything odd.
	if s == "" || len(s) > 2 {
		return 0, fmt.Errorf("bad PCR number %.12q", s)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n >= pcrbank.NumPCRs {
		return 0, fmt.Errorf("bad PCR number %.12q (want 0..%d)", s, pcrbank.NumPCRs-1)
	}
	return n, nil
}

// parseHex accepts a digest with or without 0x, in either case.
func parseHex(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if t, ok := strings.CutPrefix(s, "0x"); ok {
		s = t
	} else if t, ok := strings.CutPrefix(s, "0X"); ok {
		s = t
	}
	if len(s) > 2*64 {
		return nil, fmt.Errorf("value of %d hex digits is longer than any digest", len(s))
	}
	v, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("value %.20q is not hex: %w", s, err)
	}
	return v, nil
}
