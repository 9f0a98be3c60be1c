package termsafe

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

func TestLine(t *testing.T) {
	for in, want := range map[string]string{
		"plain /boot/vmlinuz-6.1 root=UUID=x": "plain /boot/vmlinuz-6.1 root=UUID=x",
		"title\x1b[2J\x1b]0;pwned\x07":        `title\x1b[2J\x1b]0;pwned\x07`,
		"a\nvtpmboot: BEGIN EVENTLOG\nb":      `a\nvtpmboot: BEGIN EVENTLOG\nb`,
		"tab\there\r":                         `tab\there\r`,
		"del\x7f c1\u009b bidi\u202e x":       `del\x7f c1\u009b bidi\u202e x`,
		"bad \xff\xfe utf8":                   `bad \xff\xfe utf8`,
		"Dèbian ünïcode ✓":                    "Dèbian ünïcode ✓",
	} {
		if got := Line(in); got != want {
			t.Errorf("Line(%q) = %q, want %q", in, got, want)
		}
		if strings.ContainsAny(Line(in), "\n\r\x1b\x07\x7f") {
			t.Errorf("Line(%q) still holds a control character", in)
		}
	}
	// %q output is already safe and stays as it is.
	q := fmt.Sprintf("%q", "x\x1b\ny")
	if Line(q) != q {
		t.Errorf("quoted text changed: %q -> %q", q, Line(q))
	}
	if got := Text("one\ntwo\x1b"); got != "one\ntwo\\x1b" {
		t.Errorf("Text kept %q", got)
	}
}

func TestWriter(t *testing.T) {
	var b bytes.Buffer
	fmt.Fprintf(Writer(&b), "pcrsim: error: %s\n", "/boot/\x1b[31mred")
	if b.String() != "pcrsim: error: /boot/\\x1b[31mred\n" {
		t.Errorf("got %q", b.String())
	}
}

func FuzzLine(f *testing.F) {
	f.Add("title\x1b[2J\nfake line\xff\u202e")
	f.Fuzz(func(t *testing.T, s string) {
		out := Line(s)
		for _, r := range out {
			if r < 0x20 || r == 0x7f || hidden(r) {
				t.Fatalf("Line(%q) = %q holds %U", s, out, r)
			}
		}
		if Line(out) != out {
			t.Fatalf("not idempotent: %q -> %q -> %q", s, out, Line(out))
		}
	})
}
