package report

import (
	"bytes"
	"crypto/sha1"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vtpmboot/vtpmboot/internal/testenv"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

func consoles(t testing.TB) map[string]string {
	files, err := filepath.Glob(filepath.Join(testenv.RepoRoot(), "testdata", "e2e", "*.console"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/e2e/*.console: %v", err)
	}
	out := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(f)] = string(b)
	}
	return out
}

// The captured consoles come from real boots (TestSmoke with
// VTPMBOOT_E2E_CONSOLES): serial "\r\n" line ends, kernel messages around
// the block.
func TestParseCaptured(t *testing.T) {
	for name, c := range consoles(t) {
		r, err := Parse(c)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !strings.HasPrefix(r.Cmdline, "console=ttyS0") || len(r.EventLog) == 0 || len(r.PCRs) == 0 {
			t.Errorf("%s: incomplete report %+v", name, r)
		}
	}
}

func TestRoundTripAndCorruption(t *testing.T) {
	h := sha1.Sum([]byte("x"))
	r := &Report{
		Version:  pcrbank.Version12,
		PCRs:     map[pcrbank.Alg]map[int][]byte{pcrbank.SHA1: {4: h[:], 0: make([]byte, 20)}},
		Cmdline:  "console=ttyS0 a=\"b c\"\n",
		EventLog: []byte{0, 1, 2, 255},
		Errors:   []string{"read x: \"quoted\"\nnewline"},
	}
	s := "noise\r\n" + strings.ReplaceAll(r.Format(), "\n", "\r\n") + "[ 1.0] reboot: Power down\r\n"
	got, err := Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != r.Version || got.Cmdline != r.Cmdline || !bytes.Equal(got.EventLog, r.EventLog) ||
		!bytes.Equal(got.PCRs[pcrbank.SHA1][4], h[:]) || len(got.Errors) != 1 || got.Errors[0] != r.Errors[0] {
		t.Errorf("round trip: got %+v, want %+v", got, r)
	}
	// A kernel message landing inside the block must be caught.
	lines := strings.Split(r.Format(), "\n")
	inj := strings.Join(append(append(lines[:3:3], "[   2.5] random: crng init done"), lines[3:]...), "\n")
	if _, err := Parse(inj); err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Errorf("interleaved line: err = %v, want checksum mismatch", err)
	}
	if _, err := Parse(strings.Join(lines[:4], "\n")); err == nil || !strings.Contains(err.Error(), "never ends") {
		t.Errorf("cut off: err = %v", err)
	}
	if _, err := Parse("just a kernel log\n"); err == nil {
		t.Error("no block: no error")
	}
}

func FuzzParse(f *testing.F) {
	for _, c := range consoles(f) {
		f.Add(c)
	}
	f.Add((&Report{Version: pcrbank.Version20, Cmdline: "x"}).Format())
	f.Fuzz(func(t *testing.T, console string) {
		r, err := Parse(console)
		if err != nil {
			return
		}
		// Whatever parses must survive its own round trip.
		again, err := Parse(r.Format())
		if err != nil {
			t.Fatalf("re-parse of formatted report: %v", err)
		}
		if again.Format() != r.Format() {
			t.Fatal("round trip changed the report")
		}
	})
}
