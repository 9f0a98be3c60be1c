// Package termsafe makes guest-controlled text safe to print on a console
// or a terminal. File names, titles and command lines come from a guest's
// disk; printed raw, an ESC sequence reaches a dom0 admin's terminal, and
// a newline lets a guest forge whole console lines, such as the markers
// console scrapers cut the stub's event log out by. The stub's console
// lines and pcrsim's stderr go through here, once, at the output.
package termsafe

import (
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Line returns s with everything that is not printable text escaped:
// control characters (newline and tab included), DEL, C1 controls,
// invalid UTF-8, and the Unicode format characters that reorder or hide
// text (bidi overrides and isolates, zero-width joiners). Escapes are Go
// style (\n, \x1b, \u202e), so %q-quoted text passes through unchanged.
func Line(s string) string { return escape(s, false) }

// Text is Line with newlines kept: for output that is several lines by
// design (pcrsim's stderr), where each line is still safe.
func Text(s string) string { return escape(s, true) }

func escape(s string, keepNewline bool) string {
	if clean(s, keepNewline) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\n' && keepNewline:
			b.WriteByte('\n')
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case hidden(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

func clean(s string, keepNewline bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 {
			return false // decide on the slow path
		}
		if (c < 0x20 && !(keepNewline && c == '\n')) || c == 0x7f {
			return false
		}
	}
	return true
}

// hidden are runes that a terminal does not show as themselves: C1
// controls, and format characters that reorder or hide text.
func hidden(r rune) bool {
	switch {
	case r >= 0x80 && r <= 0x9f:
		return true
	case r >= 0x200b && r <= 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r == 0xfeff, r == 0x061c:
		return true
	}
	return false
}

// Writer escapes what is written to w as Text does. Each Write is
// escaped on its own: a caller writing a rune in two pieces gets it
// escaped as invalid UTF-8, which is safe, if not pretty.
func Writer(w io.Writer) io.Writer { return writer{w} }

type writer struct{ w io.Writer }

func (t writer) Write(p []byte) (int, error) {
	s := escape(string(p), true)
	if _, err := io.WriteString(t.w, s); err != nil {
		return 0, err
	}
	return len(p), nil
}
