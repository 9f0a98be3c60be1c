package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The expected splits are worked out by hand from lib/cmdline.c's
// next_arg() (Linux 6.1), not produced by SplitCmdline.
func TestSplitCmdlineLikeKernel(t *testing.T) {
	tests := []struct {
		in   string
		want []Param
	}{
		{"", nil},
		{"   ", nil},
		{"ro quiet", []Param{{Name: "ro"}, {Name: "quiet"}}},
		{"root=/dev/xvda1 ro", []Param{{"root", "/dev/xvda1", true}, {Name: "ro"}}},
		{`vtpmboot.entry="Debian GNU/Linux" x`, []Param{{"vtpmboot.entry", "Debian GNU/Linux", true}, {Name: "x"}}},
		// A quote opening the whole parameter is dropped, the closing one too.
		{`"vtpmboot.entry=a b" y`, []Param{{"vtpmboot.entry", "a b", true}, {Name: "y"}}},
		// Quotes in the middle of a value stay; they still protect spaces.
		{`a=b"c d"e f`, []Param{{"a", `b"c d"e`, true}, {Name: "f"}}},
		// Only the first '=' splits.
		{"a=b=c", []Param{{"a", "b=c", true}}},
		{"a=", []Param{{"a", "", true}}},
		// An unterminated quote swallows the rest of the line.
		{`a="b c d`, []Param{{"a", "b c d", true}}},
		// A '=' at position 0 does not count (equals == 0 means none).
		{"=x", []Param{{Name: "=x"}}},
		{"\t a \n b\r", []Param{{Name: "a"}, {Name: "b"}}},
		// The closing quote of a value is cut only at the end of the token.
		{`a="b"c`, []Param{{"a", `b"c`, true}}},
		{`a="" b`, []Param{{"a", "", true}, {Name: "b"}}},
		// An embedded NUL ends the line as it would for C.
		{"a=b\x00c d", []Param{{"a", "b", true}}},
		{"--", []Param{{Name: "--"}}},
	}
	for _, tc := range tests {
		got := SplitCmdline(tc.in)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("SplitCmdline(%q) = %#v, want %#v", tc.in, got, tc.want)
		}
	}
}

func TestParseStubOptions(t *testing.T) {
	o, w, err := ParseStubOptions(`BOOT_IMAGE=/vmlinuz console=hvc0 vtpmboot.entry="Debian, with Linux 6.1" vtpmboot.disk=LABEL=boot vtpmboot.tpm=optional vtpmboot.timeout=2.5 vtpmboot.debug vtpmboot.colour=red`)
	if err != nil {
		t.Fatal(err)
	}
	want := StubOptions{Entry: "Debian, with Linux 6.1", Disk: "LABEL=boot", TPM: TPMOptional, Timeout: 2500 * time.Millisecond, Debug: true}
	if o != want {
		t.Errorf("options = %+v, want %+v", o, want)
	}
	if len(w) != 1 || !strings.Contains(w[0], "vtpmboot.colour") {
		t.Errorf("warnings = %q, want one naming vtpmboot.colour", w)
	}

	o, w, err = ParseStubOptions("root=/dev/sda1 ro")
	if err != nil || len(w) != 0 || o != DefaultStubOptions() {
		t.Errorf("no options: %+v %q %v", o, w, err)
	}
	if o.TPM != TPMRequired || o.Timeout != 10*time.Second {
		t.Errorf("defaults = %+v", o)
	}
	// The last occurrence wins, as for kernel parameters.
	if o, _, _ := ParseStubOptions("vtpmboot.tpm=optional vtpmboot.tpm=required vtpmboot.debug=0"); o.TPM != TPMRequired || o.Debug {
		t.Errorf("last wins: %+v", o)
	}
	if o, _, _ := ParseStubOptions("vtpmboot.timeout=0 vtpmboot.disk=/dev/xvda1"); o.Timeout != 0 || o.Disk != "/dev/xvda1" {
		t.Errorf("timeout 0: %+v", o)
	}
}

func TestParseStubOptionsErrors(t *testing.T) {
	for _, in := range []string{
		"vtpmboot.tpm=maybe",
		"vtpmboot.tpm",
		"vtpmboot.timeout=soon",
		"vtpmboot.timeout=-1",
		"vtpmboot.timeout=1e9",
		"vtpmboot.timeout=NaN",
		"vtpmboot.entry",
		"vtpmboot.entry=",
		"vtpmboot.disk=LABEL=",
		"vtpmboot.disk=UUID=",
		"vtpmboot.disk=a/b",
		"vtpmboot.debug=perhaps",
	} {
		_, _, err := ParseStubOptions("quiet " + in)
		if err == nil {
			t.Errorf("ParseStubOptions(%q) succeeded", in)
			continue
		}
		key, _, _ := strings.Cut(in, "=")
		if !strings.Contains(err.Error(), key) {
			t.Errorf("ParseStubOptions(%q) = %v: does not name %s", in, err, key)
		}
	}
}

func FuzzParseStubOptions(f *testing.F) {
	seeds, err := filepath.Glob(filepath.Join("..", "testdata", "config", "*.cmdline"))
	if err != nil || len(seeds) == 0 {
		f.Fatalf("no seeds in testdata/config: %v", err)
	}
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Fuzz(func(t *testing.T, cmdline string) {
		params := SplitCmdline(cmdline)
		for _, p := range params {
			if p.Name == "" && !p.HasValue && cmdline != "" {
				// A name can be empty only when a quote or NUL was cut.
				continue
			}
			if !p.HasValue && p.Value != "" {
				t.Fatalf("value without '=': %#v", p)
			}
		}
		if len(params) > len(cmdline) {
			t.Fatalf("%d params from %d bytes", len(params), len(cmdline))
		}
		o, _, err := ParseStubOptions(cmdline)
		if err != nil {
			return
		}
		if o.TPM != TPMRequired && o.TPM != TPMOptional {
			t.Fatalf("TPM policy %q accepted", o.TPM)
		}
		if o.Timeout < 0 || o.Timeout > maxTimeout {
			t.Fatalf("timeout %v accepted", o.Timeout)
		}
	})
}
