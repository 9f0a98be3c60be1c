package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// TPMPolicy says what the stub does when the guest has no TPM.
type TPMPolicy string

const (
	// TPMRequired powers the guest off when there is no TPM: the default,
	// because a guest that boots unmeasured looks exactly like one that
	// was never set up for attestation.
	TPMRequired TPMPolicy = "required"
	// TPMOptional boots without measuring when there is no TPM at all. A
	// TPM that is present but fails is still fatal.
	TPMOptional TPMPolicy = "optional"
)

// DefaultTimeout bounds the wait for block devices and the TPM.
const DefaultTimeout = 10 * time.Second

// maxTimeout keeps a typo (vtpmboot.timeout=6000000) from hanging a guest
// for days before it reports a missing disk.
const maxTimeout = time.Hour

// Prefix starts every stub option on the command line.
const Prefix = "vtpmboot."

// StubOptions are the stub's settings from the kernel command line.
type StubOptions struct {
	// Entry selects the boot entry (discover.SelectEntry syntax); empty
	// takes the boot loader's default.
	Entry string
	// Disk restricts the search to one device: "xvda1", "vda" (a whole
	// disk), "LABEL=root" or "UUID=...". Empty searches every disk.
	Disk string
	TPM  TPMPolicy
	// Timeout bounds the wait for block devices and the TPM.
	Timeout time.Duration
	// Debug prints more about each phase.
	Debug bool
}

// DefaultStubOptions are the options of an empty command line.
func DefaultStubOptions() StubOptions {
	return StubOptions{TPM: TPMRequired, Timeout: DefaultTimeout}
}

// Param is one parameter of a kernel command line as the kernel splits it.
type Param struct {
	Name string
	// Value is the text after the first '=', quotes removed as the kernel
	// removes them; HasValue is false for a bare "name".
	Value    string
	HasValue bool
}

// SplitCmdline splits a command line into parameters exactly as Linux's
// next_arg() (lib/cmdline.c, kernel/params.c) does, so "a=\"b c\"" is one
// parameter with value "b c", and quotes in odd places are handled the
// kernel's way rather than a shell's.
func SplitCmdline(cmdline string) []Param {
	args := []byte(cmdline)
	var out []Param
	i := skipSpaces(args, 0)
	for i < len(args) {
		var p Param
		p, i = nextArg(args, i)
		out = append(out, p)
	}
	return out
}

// isSpace is the kernel's isspace(): the C locale's white space plus the
// Latin-1 no-break space (0xa0), which lib/ctype.c also marks as space.
func isSpace(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\v', '\f', '\r', 0xa0:
		return true
	}
	return false
}

func skipSpaces(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// cstr is the C string starting at b: next_arg() works in place by writing
// NULs, so everything after the first NUL is invisible to the kernel.
func cstr(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

// nextArg mirrors next_arg() on args[start:], including its in-place NUL
// writes, and returns the parameter and where the next one starts.
func nextArg(buf []byte, start int) (Param, int) {
	args := buf[start:]
	inQuote, quoted := false, false
	if len(args) > 0 && args[0] == '"' {
		args = args[1:]
		start++
		inQuote, quoted = true, true
	}
	// The kernel's args are NUL-terminated; ours end at len(args), and an
	// embedded NUL ends the line just as it would in C.
	i, equals := 0, 0
	for ; i < len(args) && args[i] != 0; i++ {
		if isSpace(args[i]) && !inQuote {
			break
		}
		if equals == 0 && args[i] == '=' {
			equals = i
		}
		if args[i] == '"' {
			inQuote = !inQuote
		}
	}
	end := i
	var p Param
	valStart := -1
	if equals != 0 {
		args[equals] = 0
		valStart = equals + 1
		if valStart < len(args) && args[valStart] == '"' {
			valStart++
			if args[i-1] == '"' {
				args[i-1] = 0
			}
		}
	}
	if quoted && i > 0 && args[i-1] == '"' {
		args[i-1] = 0
	}
	p.Name = cstr(args[:end])
	if valStart >= 0 {
		p.HasValue = true
		if valStart <= end {
			p.Value = cstr(args[valStart:end])
		}
	}
	next := start + end
	if end < len(args) {
		if args[end] == 0 {
			// An embedded NUL: C would stop reading the line here.
			return p, len(buf)
		}
		next++
	}
	return p, skipSpaces(buf, next)
}

// ParseStubOptions reads the vtpmboot.* parameters of a kernel command
// line. Unknown vtpmboot.* keys and ignored spellings come back as
// warnings (a typo must be visible on the console, not silently ignored);
// a value the stub cannot honour is an error, because guessing could boot
// something the user did not ask for.
func ParseStubOptions(cmdline string) (StubOptions, []string, error) {
	o := DefaultStubOptions()
	var warnings []string
	for _, p := range SplitCmdline(cmdline) {
		key, ok := strings.CutPrefix(p.Name, Prefix)
		if !ok {
			continue
		}
		needValue := func() error {
			if !p.HasValue || p.Value == "" {
				return fmt.Errorf("kernel command line: %s needs a value (%s=...)", p.Name, p.Name)
			}
			return nil
		}
		switch key {
		case "entry":
			if err := needValue(); err != nil {
				return o, warnings, err
			}
			o.Entry = p.Value
		case "disk":
			if err := needValue(); err != nil {
				return o, warnings, err
			}
			if err := checkDisk(p.Value); err != nil {
				return o, warnings, fmt.Errorf("kernel command line: %s=%q: %w", p.Name, p.Value, err)
			}
			o.Disk = p.Value
		case "tpm":
			switch TPMPolicy(p.Value) {
			case TPMRequired, TPMOptional:
				o.TPM = TPMPolicy(p.Value)
			default:
				return o, warnings, fmt.Errorf("kernel command line: %s=%q: want %q or %q", p.Name, p.Value, TPMRequired, TPMOptional)
			}
		case "timeout":
			if err := needValue(); err != nil {
				return o, warnings, err
			}
			d, err := parseTimeout(p.Value)
			if err != nil {
				return o, warnings, fmt.Errorf("kernel command line: %s=%q: %w", p.Name, p.Value, err)
			}
			o.Timeout = d
		case "debug":
			if !p.HasValue {
				o.Debug = true
				break
			}
			switch p.Value {
			case "1", "y", "yes", "on", "true":
				o.Debug = true
			case "0", "n", "no", "off", "false":
				o.Debug = false
			default:
				return o, warnings, fmt.Errorf("kernel command line: %s=%q: want 1 or 0", p.Name, p.Value)
			}
		default:
			warnings = append(warnings, fmt.Sprintf("unknown option %q ignored (known: vtpmboot.entry, vtpmboot.disk, vtpmboot.tpm, vtpmboot.timeout, vtpmboot.debug)", p.Name))
		}
	}
	return o, warnings, nil
}

// parseTimeout takes whole or fractional seconds ("10", "2.5"), the unit
// the documentation promises, or a Go duration ("500ms") for tests.
func parseTimeout(s string) (time.Duration, error) {
	var d time.Duration
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if f != f || f < 0 || f > maxTimeout.Seconds() {
			return 0, fmt.Errorf("want seconds between 0 and %d", int(maxTimeout.Seconds()))
		}
		d = time.Duration(f * float64(time.Second))
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("want a number of seconds")
		}
		if d < 0 || d > maxTimeout {
			return 0, fmt.Errorf("want seconds between 0 and %d", int(maxTimeout.Seconds()))
		}
	}
	return d, nil
}

// checkDisk rejects disk selectors that could never match, so a typo is
// reported at once rather than after the device timeout.
func checkDisk(s string) error {
	if v, ok := strings.CutPrefix(s, "LABEL="); ok {
		if v == "" {
			return fmt.Errorf("empty label")
		}
		return nil
	}
	if v, ok := strings.CutPrefix(s, "UUID="); ok {
		if v == "" {
			return fmt.Errorf("empty UUID")
		}
		return nil
	}
	name := strings.TrimPrefix(s, "/dev/")
	if name == "" || strings.ContainsAny(name, "/ \t") || name == "." || name == ".." {
		return fmt.Errorf("want a device name (xvda1, vda), LABEL= or UUID=")
	}
	return nil
}
