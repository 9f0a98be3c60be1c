package eventlog

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"strings"
)

// Console markers around the base64 log the stub prints
// (docs/measurements.md): PrintConsole writes them, ExtractConsole reads
// them. They are stub console lines, so they start with the stub's
// "vtpmboot: " (stub.LinePrefix).
const (
	BeginMarker = "vtpmboot: BEGIN EVENTLOG"
	EndMarker   = "vtpmboot: END EVENTLOG"
)

// PrintConsole prints log on a console as the stub does: BeginMarker, the
// log in base64 lines of 76 characters, EndMarker.
func PrintConsole(w io.Writer, log []byte) {
	fmt.Fprintln(w, BeginMarker)
	enc := base64.StdEncoding.EncodeToString(log)
	for len(enc) > 76 {
		fmt.Fprintln(w, enc[:76])
		enc = enc[76:]
	}
	if enc != "" {
		fmt.Fprintln(w, enc)
	}
	fmt.Fprintln(w, EndMarker)
}

// MaxLogSize bounds an event log read from a file or a console: a firmware
// log is tens of KiB (QEMU gives 64 KiB, UEFI machines rarely exceed 1
// MiB); 16 MiB is far beyond anything real and keeps memory bounded.
const MaxLogSize = 16 << 20

// maxConsoleLine bounds one console line, so a console without newlines
// cannot grow a line without limit.
const maxConsoleLine = 1 << 20

// ExtractConsole returns every complete event log the stub printed in a
// saved console (a QEMU serial log, an xl console log), in console order;
// a console holding several boots holds several logs. It is the one place
// that recognizes the markers, so hardening it (the markers can be forged
// by anything else that writes to the console) changes one function.
//
// Rules: CR is dropped; a marker line is the marker alone, optionally
// after a timestamp prefix "[...] " (xenconsoled --timestamp); between the
// markers every line is base64 (the same prefix allowed), anything else is
// an error naming the line, since a log with lines missing cannot be
// trusted; an unterminated block at the end (a boot cut short) is ignored.
func ExtractConsole(r io.Reader) ([][]byte, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxConsoleLine)
	var logs [][]byte
	var b64 strings.Builder
	in, begin := false, 0
	for n := 1; sc.Scan(); n++ {
		l := stripConsolePrefix(strings.TrimRight(sc.Text(), "\r"))
		switch {
		case l == BeginMarker:
			in, begin = true, n
			b64.Reset()
		case !in:
		case l == EndMarker:
			in = false
			b, err := base64.StdEncoding.DecodeString(b64.String())
			if err != nil {
				return nil, fmt.Errorf("console lines %d-%d: event log is not valid base64: %w", begin, n, err)
			}
			logs = append(logs, b)
		default:
			l = strings.TrimSpace(l)
			if !isBase64(l) {
				return nil, fmt.Errorf("console line %d, inside the event log begun on line %d: not base64: %.40q", n, begin, l)
			}
			if b64.Len()+len(l) > MaxLogSize*4/3+4 {
				return nil, fmt.Errorf("console line %d: event log begun on line %d is larger than %d bytes", n, begin, MaxLogSize)
			}
			b64.WriteString(l)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read console: %w", err)
	}
	return logs, nil
}

// ExtractConsoleLast is ExtractConsole's last log: the latest boot's.
func ExtractConsoleLast(r io.Reader) ([]byte, error) {
	logs, err := ExtractConsole(r)
	if err != nil {
		return nil, err
	}
	if len(logs) == 0 {
		return nil, fmt.Errorf("no complete event log (%q ... %q) in the console", BeginMarker, EndMarker)
	}
	return logs[len(logs)-1], nil
}

// stripConsolePrefix drops one leading "[...] " (a timestamp).
func stripConsolePrefix(l string) string {
	if strings.HasPrefix(l, "[") {
		if i := strings.Index(l, "] "); i > 0 && i < 64 {
			return l[i+2:]
		}
	}
	return l
}

func isBase64(s string) bool {
	if s == "" {
		return false
	}
	return bytes.IndexFunc([]byte(s), func(r rune) bool {
		return !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '+' || r == '/' || r == '=')
	}) < 0
}
