package eventlog

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/vtpmboot/vtpmboot/boot/measure"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

func FuzzParse(f *testing.F) {
	paths, err := filepath.Glob(filepath.Join(testenv.RepoRoot(), "testdata", "eventlog", "*.bin"))
	if err != nil || len(paths) == 0 {
		f.Fatalf("no seed logs in testdata/eventlog (%v)", err)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, boot := range sampleBoots {
		for _, algs := range [][]pcrbank.Alg{{pcrbank.SHA1}, {pcrbank.SHA1, pcrbank.SHA256}, pcrbank.AllAlgs} {
			format := CryptoAgile
			if len(algs) == 1 {
				format = SHA1Log
			}
			b, err := Marshal(format, algs, boot.plan(f, algs))
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		// Whatever Parse keeps comes out of the input, so it cannot exceed it.
		kept := 0
		for i, e := range l.UntrustedEvents {
			if e.PCR < 0 || e.PCR >= pcrbank.NumPCRs {
				t.Fatalf("event %d: PCR %d", i, e.PCR)
			}
			kept += len(e.Data)
			for _, d := range e.Digests {
				a, v := d.Alg, d.Value
				if !a.Valid() || len(v) != a.Size() {
					t.Fatalf("event %d: %v digest of %d bytes", i, a, len(v))
				}
				kept += len(v)
			}
		}
		if kept > len(b) {
			t.Fatalf("parsed %d bytes of digests and data from a %d-byte log", kept, len(b))
		}
		if len(l.Algs) == 0 {
			return
		}
		soft, err := pcrbank.NewSoft(l.Algs)
		if err != nil {
			t.Fatal(err)
		}
		replayErr := l.Replay(soft)

		// A log whose events all carry every bank re-encodes: Write and
		// Parse must agree with each other on arbitrary contents.
		var ms []measure.Measurement
		for _, e := range l.UntrustedEvents {
			if pcrbank.CheckDigests(l.Algs, e.DigestMap()) != nil {
				return
			}
			ms = append(ms, measure.Measurement{PCR: e.PCR, Digests: e.DigestMap(), EventData: e.Data})
		}
		if replayErr != nil {
			t.Fatalf("replay of a log with every digest: %v", replayErr)
		}
		out, err := Marshal(l.Format, l.Algs, ms)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		l2, err := Parse(out)
		if err != nil {
			t.Fatalf("parse re-encoded log: %v", err)
		}
		if l2.Format != l.Format || len(l2.UntrustedEvents) != len(l.UntrustedEvents) {
			t.Fatalf("re-encoded log: %v with %d events, want %v with %d", l2.Format, len(l2.UntrustedEvents), l.Format, len(l.UntrustedEvents))
		}
		for i, e := range l2.UntrustedEvents {
			want := l.UntrustedEvents[i]
			if e.PCR != want.PCR || !bytes.Equal(e.Data, want.Data) {
				t.Fatalf("re-encoded event %d differs", i)
			}
			for _, a := range l.Algs {
				if !bytes.Equal(e.Digest(a), want.Digest(a)) {
					t.Fatalf("re-encoded event %d %v digest differs", i, a)
				}
			}
		}
	})
}

// TestParseAllocationBounded feeds the logs that pack the most events into
// the fewest bytes and checks the memory Parse allocates stays a small
// multiple of the input: a hostile log must not cost more than it weighs.
func TestParseAllocationBounded(t *testing.T) {
	const n = 50000
	var agile bytes.Buffer
	hdr, err := Marshal(CryptoAgile, []pcrbank.Alg{pcrbank.SHA1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	agile.Write(hdr)
	for range n {
		// PCR 0, EV_NO_ACTION, zero digests, zero data: 12 bytes.
		binary.Write(&agile, binary.LittleEndian, [3]uint32{0, EVNoAction, 0})
		agile.Write([]byte{0, 0, 0, 0})
	}
	sha1 := bytes.Repeat(make([]byte, 32), n)
	for name, b := range map[string][]byte{"crypto-agile": agile.Bytes(), "sha1": sha1} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		l, err := Parse(b)
		runtime.ReadMemStats(&after)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(l.UntrustedEvents) != n {
			t.Fatalf("%s: %d events, want %d", name, len(l.UntrustedEvents), n)
		}
		ratio := float64(after.TotalAlloc-before.TotalAlloc) / float64(len(b))
		t.Logf("%s: %d-byte log, %.1f bytes allocated per input byte", name, len(b), ratio)
		if ratio > 8 {
			t.Errorf("%s: Parse allocated %.0fx its input", name, ratio)
		}
	}
}

// TestParseTenMiBOfEmptyEvents is the case that once allocated about 195
// MB: 10 MiB of all-zero SHA-1 records (PCR 0, type 0, zero digest, no
// data), which Parse accepts as 327680 events.
func TestParseTenMiBOfEmptyEvents(t *testing.T) {
	b := make([]byte, 10<<20)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	l, err := Parse(b)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.UntrustedEvents) != len(b)/32 {
		t.Fatalf("%d events, want %d", len(l.UntrustedEvents), len(b)/32)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("10 MiB of empty events: %d events, %.1f MB allocated", len(l.UntrustedEvents), float64(alloc)/1e6)
	if alloc > 8*uint64(len(b)) {
		t.Errorf("Parse allocated %d bytes for a %d-byte log", alloc, len(b))
	}
}

// FuzzExtractConsole: whatever a console holds, extraction returns an
// error or logs that are valid base64 decodings no larger than the limit,
// never a panic; seeded from consoles captured in QEMU boots.
func FuzzExtractConsole(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join(testenv.RepoRoot(), "testdata", "e2e", "*.console"))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	log, err := Marshal(CryptoAgile, pcrbank.DefaultAlgs, sampleBoots["two-initrds"].plan(f, pcrbank.DefaultAlgs))
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(BeginMarker + "\r\n" + base64.StdEncoding.EncodeToString(log) + "\r\n" + EndMarker + "\r\n"))
	f.Add([]byte("[t] " + BeginMarker + "\nAAAA\n[t] " + EndMarker + "\n" + BeginMarker + "\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		logs, err := ExtractConsole(bytes.NewReader(b))
		if err != nil {
			return
		}
		for _, l := range logs {
			if len(l) > MaxLogSize || len(l) > len(b) {
				t.Fatalf("extracted %d bytes from a %d-byte console", len(l), len(b))
			}
		}
	})
}
