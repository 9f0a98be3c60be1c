package eventlog

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-eventlog/register"
	"github.com/google/go-eventlog/tcg"

	"github.com/vtpmboot/vtpmboot/boot/measure"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// The test's own hash table, so expected values do not go through
// pcrbank's Alg→hash mapping or its extend rule.
var stdHash = map[pcrbank.Alg]func() hash.Hash{
	pcrbank.SHA1:   sha1.New,
	pcrbank.SHA256: sha256.New,
	pcrbank.SHA384: sha512.New384,
	pcrbank.SHA512: sha512.New,
}

var cryptoHash = map[pcrbank.Alg]crypto.Hash{
	pcrbank.SHA1:   crypto.SHA1,
	pcrbank.SHA256: crypto.SHA256,
	pcrbank.SHA384: crypto.SHA384,
	pcrbank.SHA512: crypto.SHA512,
}

func sum(a pcrbank.Alg, parts ...[]byte) []byte {
	h := stdHash[a]()
	for _, p := range parts {
		h.Write(p)
	}
	return h.Sum(nil)
}

// bootInputs is one guest's files; the plan measures them, and the test
// computes what the PCRs must become from the same bytes on its own.
type bootInputs struct {
	kernel  []byte
	initrds [][]byte
	cmdline string
}

var sampleBoots = map[string]bootInputs{
	"two-initrds": {kernel: bytes.Repeat([]byte("MZ kernel "), 4000), initrds: [][]byte{[]byte("microcode"), bytes.Repeat([]byte{7}, 70000)}, cmdline: "root=/dev/xvda1 ro quiet"},
	"no-initrd":   {kernel: []byte("tiny kernel"), cmdline: ""},
	"unicode":     {kernel: []byte{0, 1, 2, 3}, initrds: [][]byte{{}}, cmdline: "init=/sbin/init — ünïcode"},
}

func (b bootInputs) plan(t testing.TB, algs []pcrbank.Alg) []measure.Measurement {
	t.Helper()
	in := measure.Inputs{Kernel: measure.BytesSource("/boot/vmlinuz", b.kernel), Cmdline: b.cmdline}
	for i, ir := range b.initrds {
		in.Initrds = append(in.Initrds, measure.BytesSource(fmt.Sprintf("/boot/initrd%d", i), ir))
	}
	ms, err := measure.Plan(algs, in, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// initrdImage lays initrds out as GRUB2 loads several: zero bytes after each
// but the last, up to a multiple of 4.
func initrdImage(files [][]byte) [][]byte {
	var out [][]byte
	for i, f := range files {
		out = append(out, f)
		if i < len(files)-1 && len(f)%4 != 0 {
			out = append(out, make([]byte, 4-len(f)%4))
		}
	}
	return out
}

// expectPCRs is the contract computed from scratch: PCR4 = H(0||H(kernel)),
// PCR5 = H(H(0||H(cmdline))||H(initrd image)), the image being the initrds
// with zeros up to a multiple of 4 between them.
func (b bootInputs) expectPCRs(algs []pcrbank.Alg) map[pcrbank.Alg]map[int][]byte {
	out := map[pcrbank.Alg]map[int][]byte{}
	for _, a := range algs {
		zero := make([]byte, stdHash[a]().Size())
		p5 := sum(a, zero, sum(a, []byte(b.cmdline)))
		out[a] = map[int][]byte{
			4: sum(a, zero, sum(a, b.kernel)),
			5: sum(a, p5, sum(a, initrdImage(b.initrds)...)),
		}
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	cases := []struct {
		f    Format
		algs []pcrbank.Alg
	}{
		{SHA1Log, []pcrbank.Alg{pcrbank.SHA1}},
		{CryptoAgile, []pcrbank.Alg{pcrbank.SHA256}},
		{CryptoAgile, []pcrbank.Alg{pcrbank.SHA1, pcrbank.SHA256}},
		{CryptoAgile, pcrbank.AllAlgs},
	}
	for name, boot := range sampleBoots {
		for _, tc := range cases {
			t.Run(fmt.Sprintf("%s/%v/%v", name, tc.f, tc.algs), func(t *testing.T) {
				ms := boot.plan(t, tc.algs)
				var buf bytes.Buffer
				if err := Write(&buf, tc.f, tc.algs, ms); err != nil {
					t.Fatal(err)
				}
				l, err := Parse(buf.Bytes())
				if err != nil {
					t.Fatal(err)
				}
				if l.Format != tc.f || fmt.Sprint(l.Algs) != fmt.Sprint(tc.algs) {
					t.Fatalf("parsed %v %v, wrote %v %v", l.Format, l.Algs, tc.f, tc.algs)
				}
				if len(l.UntrustedEvents) != len(ms) {
					t.Fatalf("parsed %d events, wrote %d", len(l.UntrustedEvents), len(ms))
				}
				for i, e := range l.UntrustedEvents {
					m := ms[i]
					if e.PCR != m.PCR || e.Type != EVIPL || !bytes.Equal(e.Data, m.EventData) {
						t.Errorf("event %d: got PCR %d type 0x%x data %q, want PCR %d EV_IPL %q", i, e.PCR, e.Type, e.Data, m.PCR, m.EventData)
					}
					for _, a := range tc.algs {
						if !bytes.Equal(e.Digest(a), m.Digests[a]) {
							t.Errorf("event %d %v digest: got %x, want %x", i, a, e.Digest(a), m.Digests[a])
						}
					}
				}
				soft, err := pcrbank.NewSoft(tc.algs)
				if err != nil {
					t.Fatal(err)
				}
				if err := l.Replay(soft); err != nil {
					t.Fatal(err)
				}
				for a, pcrs := range boot.expectPCRs(tc.algs) {
					for pcr, want := range pcrs {
						got, _ := soft.ReadPCR(pcr, a)
						if !bytes.Equal(got, want) {
							t.Errorf("replayed PCR %d %v = %x, want %x", pcr, a, got, want)
						}
					}
				}
			})
		}
	}
}

// goEventlogVerify has go-eventlog parse log and replay it against want:
// Verify fails unless its own replay of every listed PCR equals want.
func goEventlogVerify(t *testing.T, log []byte, want map[pcrbank.Alg]map[int][]byte) []tcg.Event {
	t.Helper()
	el, err := tcg.ParseEventLog(log, tcg.ParseOpts{})
	if err != nil {
		t.Fatalf("go-eventlog cannot parse the log: %v", err)
	}
	var mrs []register.MR
	for a, pcrs := range want {
		for pcr, v := range pcrs {
			mrs = append(mrs, register.PCR{Index: pcr, Digest: v, DigestAlg: cryptoHash[a]})
		}
	}
	evs, err := el.Verify(mrs)
	if err != nil {
		t.Fatalf("go-eventlog replay disagrees: %v", err)
	}
	return evs
}

// goEventlogBanks are the banks go-eventlog can replay (it maps only
// SHA-1/256/384 algorithm IDs to hashes).
var goEventlogBanks = []pcrbank.Alg{pcrbank.SHA1, pcrbank.SHA256, pcrbank.SHA384}

func only(m map[pcrbank.Alg]map[int][]byte, algs []pcrbank.Alg) map[pcrbank.Alg]map[int][]byte {
	out := map[pcrbank.Alg]map[int][]byte{}
	for _, a := range algs {
		if v, ok := m[a]; ok {
			out[a] = v
		}
	}
	return out
}

func TestGoEventlogReadsOurLogs(t *testing.T) {
	boot := sampleBoots["two-initrds"]
	for _, tc := range []struct {
		f    Format
		algs []pcrbank.Alg
	}{
		{SHA1Log, []pcrbank.Alg{pcrbank.SHA1}},
		{CryptoAgile, []pcrbank.Alg{pcrbank.SHA1, pcrbank.SHA256}},
		{CryptoAgile, []pcrbank.Alg{pcrbank.SHA256, pcrbank.SHA384}},
	} {
		t.Run(fmt.Sprintf("%v/%v", tc.f, tc.algs), func(t *testing.T) {
			ms := boot.plan(t, tc.algs)
			b, err := Marshal(tc.f, tc.algs, ms)
			if err != nil {
				t.Fatal(err)
			}
			want := boot.expectPCRs(tc.algs)
			evs := goEventlogVerify(t, b, want)
			// Every bank replays on its own, so each bank verifies all three.
			if len(evs) != len(ms) {
				t.Errorf("go-eventlog verified %d events, want %d", len(evs), len(ms))
			}
			for _, e := range evs {
				if e.Type != tcg.Ipl {
					t.Errorf("go-eventlog sees event type %v, want EV_IPL", e.Type)
				}
			}
			// A wrong PCR value must fail, or the check above proves nothing.
			bad := boot.expectPCRs(tc.algs)
			bad[tc.algs[0]][5] = sum(tc.algs[0], []byte("not the PCR"))
			el, _ := tcg.ParseEventLog(b, tcg.ParseOpts{})
			var mrs []register.MR
			for a, pcrs := range only(bad, tc.algs[:1]) {
				for pcr, v := range pcrs {
					mrs = append(mrs, register.PCR{Index: pcr, Digest: v, DigestAlg: cryptoHash[a]})
				}
			}
			if _, err := el.Verify(mrs); err == nil {
				t.Error("go-eventlog verified a wrong PCR 5")
			}
		})
	}
}

// tpm2EventlogPCRs runs tpm2_eventlog on path and returns the PCR values it
// replays (the "pcrs:" section of its YAML).
func tpm2EventlogPCRs(t *testing.T, path string) map[pcrbank.Alg]map[int][]byte {
	t.Helper()
	testenv.NeedCommands(t, "tpm2_eventlog")
	out, err := exec.Command("tpm2_eventlog", path).CombinedOutput()
	if err != nil {
		t.Fatalf("tpm2_eventlog %s: %v\n%s", path, err, out)
	}
	pcrs := map[pcrbank.Alg]map[int][]byte{}
	in := false
	var bank pcrbank.Alg
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if line == "pcrs:" {
			in = true
			continue
		}
		if !in {
			continue
		}
		f := strings.TrimSpace(line)
		if strings.HasSuffix(f, ":") && !strings.Contains(f, " ") {
			a, err := pcrbank.ParseAlg(strings.TrimSuffix(f, ":"))
			if err != nil {
				t.Fatalf("tpm2_eventlog bank %q: %v", f, err)
			}
			bank = a
			pcrs[a] = map[int][]byte{}
			continue
		}
		idx, val, ok := strings.Cut(f, ":")
		if !ok || bank == 0 {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSpace(idx))
		if err != nil {
			t.Fatalf("tpm2_eventlog line %q: %v", line, err)
		}
		v, err := hex.DecodeString(strings.TrimPrefix(strings.TrimSpace(val), "0x"))
		if err != nil {
			t.Fatalf("tpm2_eventlog line %q: %v", line, err)
		}
		pcrs[bank][n] = v
	}
	if len(pcrs) == 0 {
		t.Fatalf("tpm2_eventlog printed no pcrs for %s:\n%s", path, out)
	}
	return pcrs
}

func TestTPM2EventlogReadsOurLog(t *testing.T) {
	testenv.NeedCommands(t, "tpm2_eventlog")
	for name, boot := range sampleBoots {
		t.Run(name, func(t *testing.T) {
			algs := pcrbank.AllAlgs
			b, err := Marshal(CryptoAgile, algs, boot.plan(t, algs))
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "log.bin")
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			got := tpm2EventlogPCRs(t, path)
			want := boot.expectPCRs(algs)
			for _, a := range algs {
				if len(got[a]) != 2 {
					t.Errorf("tpm2_eventlog replays %v PCRs %v, want only 4 and 5", a, got[a])
				}
				for pcr, w := range want[a] {
					if !bytes.Equal(got[a][pcr], w) {
						t.Errorf("tpm2_eventlog %v PCR %d = %x, want %x", a, pcr, got[a][pcr], w)
					}
				}
			}
		})
	}
}

func firmwareLog(t testing.TB, name string) []byte {
	t.Helper()
	path := filepath.Join(testenv.RepoRoot(), "testdata", "eventlog", name)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (regenerate with testdata/eventlog/gen/gen.sh)", err)
	}
	return b
}

// replaySoft replays l into a fresh software bank of banks and returns the
// PCRs the log touches.
func replaySoft(t *testing.T, l *Log, banks []pcrbank.Alg) map[pcrbank.Alg]map[int][]byte {
	t.Helper()
	soft, err := pcrbank.NewSoft(banks)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Replay(soft); err != nil {
		t.Fatal(err)
	}
	touched := map[int]bool{}
	for _, e := range l.UntrustedEvents {
		if e.Type != EVNoAction {
			touched[e.PCR] = true
		}
	}
	out := map[pcrbank.Alg]map[int][]byte{}
	for _, a := range banks {
		out[a] = map[int][]byte{}
		for pcr := range touched {
			out[a][pcr], _ = soft.ReadPCR(pcr, a)
		}
	}
	return out
}

func TestSeaBIOSTPM20Log(t *testing.T) {
	b := firmwareLog(t, "seabios-tpm20.bin")
	l, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if l.Format != CryptoAgile || fmt.Sprint(l.Algs) != fmt.Sprint(pcrbank.AllAlgs) {
		t.Fatalf("SeaBIOS TPM 2.0 log: %v %v, want crypto-agile with all four banks", l.Format, l.Algs)
	}
	ours := replaySoft(t, l, l.Algs)
	if len(ours[pcrbank.SHA256]) != 8 {
		t.Errorf("SeaBIOS measured PCRs %d, want 0..7", len(ours[pcrbank.SHA256]))
	}
	// go-eventlog's replay must equal ours (it checks our values).
	goEventlogVerify(t, b, only(ours, goEventlogBanks))
	// So must tpm2-tools', for every bank including SHA-512.
	theirs := tpm2EventlogPCRs(t, filepath.Join(testenv.RepoRoot(), "testdata", "eventlog", "seabios-tpm20.bin"))
	for _, a := range l.Algs {
		if len(theirs[a]) != len(ours[a]) {
			t.Errorf("%v: tpm2_eventlog replays %d PCRs, we %d", a, len(theirs[a]), len(ours[a]))
		}
		for pcr, v := range ours[a] {
			if !bytes.Equal(v, theirs[a][pcr]) {
				t.Errorf("%v PCR %d: we replay %x, tpm2_eventlog %x", a, pcr, v, theirs[a][pcr])
			}
		}
	}
}

func TestSeaBIOSTPM12Log(t *testing.T) {
	b := firmwareLog(t, "seabios-tpm12.bin")
	l, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if l.Format != SHA1Log {
		t.Fatalf("SeaBIOS TPM 1.2 log parsed as %v", l.Format)
	}
	ours := replaySoft(t, l, []pcrbank.Alg{pcrbank.SHA1})
	if len(ours[pcrbank.SHA1]) != 8 {
		t.Errorf("SeaBIOS measured PCRs %d, want 0..7", len(ours[pcrbank.SHA1]))
	}
	goEventlogVerify(t, b, ours)
}

// TestUnknownAlgSkipped builds, by hand, a crypto-agile log whose header
// and events carry an algorithm vtpmboot cannot compute (SM3_256, 0x0012)
// between two it can: Parse must step over those digests by the header's
// size and keep the rest.
func TestUnknownAlgSkipped(t *testing.T) {
	const sm3 = 0x0012
	var b bytes.Buffer
	w32 := func(v uint32) { binary.Write(&b, binary.LittleEndian, v) }
	w16 := func(v uint16) { binary.Write(&b, binary.LittleEndian, v) }
	var spec bytes.Buffer
	spec.WriteString("Spec ID Event03\x00")
	spec.Write([]byte{0, 0, 0, 0, 0, 2, 2, 2}) // class, minor, major, errata 2 as SeaBIOS, uintn
	binary.Write(&spec, binary.LittleEndian, []uint16{3, 0, 0x0004, 20, sm3, 32, 0x000B, 32})
	spec.Write([]byte{3, 'x', 'y', 'z'}) // vendor info
	w32(0)
	w32(EVNoAction)
	b.Write(make([]byte, 20))
	w32(uint32(spec.Len()))
	b.Write(spec.Bytes())
	data := []byte("event")
	w32(8)
	w32(EVIPL)
	w32(3)
	w16(0x0004)
	b.Write(sum(pcrbank.SHA1, data))
	w16(sm3)
	b.Write(bytes.Repeat([]byte{0xee}, 32))
	w16(0x000B)
	b.Write(sum(pcrbank.SHA256, data))
	w32(uint32(len(data)))
	b.Write(data)

	l, err := Parse(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(l.Algs) != "[sha1 sha256]" || len(l.UntrustedEvents) != 1 || len(l.UntrustedEvents[0].Digests) != 2 {
		t.Fatalf("parsed %v with events %+v", l.Algs, l.UntrustedEvents)
	}
	got := replaySoft(t, l, l.Algs)
	for _, a := range l.Algs {
		want := sum(a, make([]byte, a.Size()), sum(a, data))
		if !bytes.Equal(got[a][8], want) {
			t.Errorf("%v PCR 8 = %x, want %x", a, got[a][8], want)
		}
	}
}

func TestReplayErrors(t *testing.T) {
	boot := sampleBoots["no-initrd"]
	b, err := Marshal(SHA1Log, []pcrbank.Alg{pcrbank.SHA1}, boot.plan(t, []pcrbank.Alg{pcrbank.SHA1}))
	if err != nil {
		t.Fatal(err)
	}
	l, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	soft, _ := pcrbank.NewSoft([]pcrbank.Alg{pcrbank.SHA1, pcrbank.SHA256})
	if err := l.Replay(soft); err == nil || !strings.Contains(err.Error(), "no sha256 digests") {
		t.Errorf("replaying a SHA-1 log into a SHA-256 bank: %v", err)
	}
	// An event missing a bank must fail before anything is extended.
	l.UntrustedEvents[2].Digests = nil
	one, _ := pcrbank.NewSoft([]pcrbank.Alg{pcrbank.SHA1})
	if err := l.Replay(one); err == nil || !strings.Contains(err.Error(), "event 2") {
		t.Errorf("replaying an event without digests: %v", err)
	}
	if v, _ := one.ReadPCR(4, pcrbank.SHA1); !bytes.Equal(v, make([]byte, 20)) {
		t.Errorf("a failed replay extended PCR 4 to %x", v)
	}
}

func TestWriteErrors(t *testing.T) {
	ms := sampleBoots["no-initrd"].plan(t, []pcrbank.Alg{pcrbank.SHA1, pcrbank.SHA256})
	for _, tc := range []struct {
		name string
		f    Format
		algs []pcrbank.Alg
		ms   []measure.Measurement
		want string
	}{
		{"sha1 log with sha256", SHA1Log, []pcrbank.Alg{pcrbank.SHA1, pcrbank.SHA256}, ms, "only the sha1 bank"},
		{"bank without digests", CryptoAgile, []pcrbank.Alg{pcrbank.SHA1, pcrbank.SHA256, pcrbank.SHA384}, ms, "sha384"},
		{"digests beyond banks", CryptoAgile, []pcrbank.Alg{pcrbank.SHA256}, ms, "do not match"},
		{"no banks", CryptoAgile, nil, ms, "needs 1.."},
		{"unknown bank", CryptoAgile, []pcrbank.Alg{0x0012}, ms, "unsupported bank"},
		{"duplicate bank", CryptoAgile, []pcrbank.Alg{pcrbank.SHA1, pcrbank.SHA1}, ms, "twice"},
		{"bad PCR", CryptoAgile, []pcrbank.Alg{pcrbank.SHA1, pcrbank.SHA256}, []measure.Measurement{{PCR: 24, Digests: ms[0].Digests}}, "out of range"},
		{"huge event", CryptoAgile, []pcrbank.Alg{pcrbank.SHA1, pcrbank.SHA256}, []measure.Measurement{{PCR: 4, Digests: ms[0].Digests, EventData: make([]byte, MaxEventData+1)}}, "limit"},
		{"bad format", Format(9), []pcrbank.Alg{pcrbank.SHA1}, ms, "unknown format"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Write(&bytes.Buffer{}, tc.f, tc.algs, tc.ms)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	algs := []pcrbank.Alg{pcrbank.SHA1, pcrbank.SHA256}
	good, err := Marshal(CryptoAgile, algs, sampleBoots["two-initrds"].plan(t, algs))
	if err != nil {
		t.Fatal(err)
	}
	sha1Good, err := Marshal(SHA1Log, algs[:1], sampleBoots["two-initrds"].plan(t, algs[:1]))
	if err != nil {
		t.Fatal(err)
	}
	const hdr = 32 + 37 // SHA-1 header event + Spec ID data with two algs
	patch := func(b []byte, off int, v ...byte) []byte {
		b = bytes.Clone(b)
		copy(b[off:], v)
		return b
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "empty"},
		{"short header", good[:10], "offset 8"},
		{"truncated digest", good[:hdr+12+22+2+10], "sha256 digest needs 32 bytes"},
		{"truncated data", good[:len(good)-1], "data needs"},
		{"huge data size", patch(sha1Good, 28, 0xff, 0xff, 0xff, 0x7f), "over the 1048576-byte limit"},
		{"data beyond end", patch(sha1Good, 28, 0x00, 0x00, 0x01, 0x00), "only"},
		{"PCR out of range", patch(sha1Good, 0, 24), "offset 0 (0x0): event 0: PCR index 24"},
		{"spec version", patch(good, 32+20, 1), "spec version 2.1"},
		{"alg count zero", patch(good, 32+24, 0), "numberOfAlgorithms 0"},
		{"alg count huge", patch(good, 32+24, 0xff, 0xff, 0xff, 0xff), "numberOfAlgorithms 4294967295"},
		{"sha256 size wrong", patch(good, 32+28+6, 31), "sha256 digest size 31"},
		{"duplicate alg", patch(good, 32+28+4, 0x04), "listed twice"},
		{"vendor size", patch(good, 32+36, 5), "vendorInfoSize 5"},
		{"header not in PCR 0", patch(good, 0, 1), "PCR 1, want 0"},
		{"header digest", patch(good, 8, 1), "not zero"},
		{"digest count", patch(good, hdr+8, 3), "3 digests"},
		{"unknown digest alg", patch(good, hdr+12, 0x12), "0x0012 is not in the Spec ID header"},
		{"repeated digest alg", patch(good, hdr+12+22, 0x04, 0x00), "two digests"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.b)
			if err == nil || !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want ErrMalformed containing %q", err, tc.want)
			}
		})
	}
}

func TestReadFileNamesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "broken.bin")
	os.WriteFile(path, []byte{1, 2, 3}, 0o644)
	_, err := ReadFile(path)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("ReadFile error %v does not name %s", err, path)
	}
}

func TestFormatFor(t *testing.T) {
	if FormatFor(pcrbank.Version12) != SHA1Log || FormatFor(pcrbank.Version20) != CryptoAgile || FormatFor(pcrbank.VersionSoftware) != CryptoAgile {
		t.Error("FormatFor: want SHA1Log for TPM 1.2 only")
	}
}

// TestHostileSeeds: each hostile log in testdata/eventlog fails with an
// ErrMalformed error naming where, never a panic or a large allocation.
func TestHostileSeeds(t *testing.T) {
	for name, want := range map[string]string{
		"hostile-truncated.bin":    "only",
		"hostile-not-specid.bin":   "over the",
		"hostile-huge-size.bin":    "over the",
		"hostile-digest-count.bin": "200 digests",
	} {
		b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "testdata", "eventlog", name))
		if err != nil {
			t.Fatal(err)
		}
		_, err = Parse(b)
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "offset") {
			t.Errorf("%s: %v, want ErrMalformed naming an offset and %q", name, err, want)
		}
	}
}

// TestVerifyAppendedLog: the SeaBIOS log with the stub's events appended
// verifies against go-eventlog's replay of the same bytes; one wrong PCR
// gives a ReplayError naming exactly it; SplitStub finds the stub's first
// event where the firmware's end.
func TestVerifyAppendedLog(t *testing.T) {
	for _, name := range []string{"acpi-seabios-tpm12-appended.bin", "acpi-seabios-tpm20-appended.bin"} {
		b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "testdata", "eventlog", name))
		if err != nil {
			t.Fatal(err)
		}
		l, err := Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		el, err := tcg.ParseEventLog(b, tcg.ParseOpts{})
		if err != nil {
			t.Fatal(err)
		}
		actual := map[pcrbank.Alg]map[int][]byte{pcrbank.SHA1: {}}
		for _, ev := range el.Events(register.HashSHA1) {
			if ev.Type == tcg.NoAction {
				continue
			}
			old := actual[pcrbank.SHA1][ev.Index]
			if old == nil {
				old = make([]byte, 20)
			}
			actual[pcrbank.SHA1][ev.Index] = sum(pcrbank.SHA1, old, ev.Digest)
		}
		if _, err := l.Verify(actual); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		// Only the PCRs read vouch for events: with PCRs 4 and 5 alone,
		// the verified events are go-eventlog's events of those PCRs.
		want := 0
		for _, ev := range el.Events(register.HashSHA1) {
			if ev.Index == 4 || ev.Index == 5 {
				want++
			}
		}
		evs, err := l.Verify(map[pcrbank.Alg]map[int][]byte{pcrbank.SHA1: {4: actual[pcrbank.SHA1][4], 5: actual[pcrbank.SHA1][5]}})
		if err != nil || len(evs) != want || want < 3 {
			t.Fatalf("%s: Verify of PCRs 4 and 5 gave %d events, %v; want %d", name, len(evs), err, want)
		}
		for _, e := range evs {
			if e.PCR != 4 && e.PCR != 5 {
				t.Errorf("%s: verified event of PCR %d, which was not read", name, e.PCR)
			}
		}
		if n := l.SplitStub(); n != len(l.UntrustedEvents)-3 || !IsStubEvent(l.UntrustedEvents[n]) || IsStubEvent(l.UntrustedEvents[n-1]) {
			t.Errorf("%s: SplitStub %d of %d events", name, n, len(l.UntrustedEvents))
		}
		actual[pcrbank.SHA1][5] = make([]byte, 20)
		var re *ReplayError
		if evs, err := l.Verify(actual); evs != nil || !errors.As(err, &re) || fmt.Sprint(re.PCRs()) != "[5]" || !strings.Contains(err.Error(), "sha1 PCR 5") {
			t.Errorf("%s: %v, want a ReplayError for sha1 PCR 5", name, err)
		}
	}
}
