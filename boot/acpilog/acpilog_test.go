package acpilog

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"hash"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-eventlog/register"
	"github.com/google/go-eventlog/tcg"

	"github.com/vtpmboot/vtpmboot/boot/eventlog"
	"github.com/vtpmboot/vtpmboot/boot/measure"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// The testdata are what targetinit read in a QEMU 7.2 + SeaBIOS + swtpm
// guest (internal/target TestSmoke with VTPMBOOT_CAPTURE_ACPI): the ACPI table
// (/sys/firmware/acpi/tables/TCPA or TPM2) and the log area's bytes up to
// its last non-zero byte; the rest of the area, up to the table's length,
// was checked to be zeros, so area() rebuilds the area exactly.
func capture(t testing.TB, name string) (table []byte, a Area, mem []byte) {
	t.Helper()
	table, err := os.ReadFile(filepath.Join("testdata", name+".table"))
	if err != nil {
		t.Fatal(err)
	}
	used, err := os.ReadFile(filepath.Join("testdata", name+".area"))
	if err != nil {
		t.Fatal(err)
	}
	a, err = ParseTable(table)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	mem = make([]byte, a.Len)
	copy(mem, used)
	return table, a, mem
}

var cases = []struct {
	name   string
	table  string
	format eventlog.Format
	v      pcrbank.Version
}{
	{"seabios-tpm12", "TCPA", eventlog.SHA1Log, pcrbank.Version12},
	{"seabios-tpm20", "TPM2", eventlog.CryptoAgile, pcrbank.Version20},
}

func TestParseRealTables(t *testing.T) {
	for _, c := range cases {
		table, a, _ := capture(t, c.name)
		if a.Table != c.table || TableFor(c.v) != c.table {
			t.Errorf("%s: table %q, want %q", c.name, a.Table, c.table)
		}
		// QEMU declares TPM_LOG_AREA_MINIMUM_SIZE (64 KiB), and the test
		// reads the fields at the TCG ACPI spec's offsets itself.
		if a.Len != 64<<10 {
			t.Errorf("%s: log area %d bytes, QEMU declares 65536", c.name, a.Len)
		}
		lasa := map[string]int{"TCPA": 42, "TPM2": 68}[c.table]
		if got := binary.LittleEndian.Uint64(table[lasa:]); got != a.Addr {
			t.Errorf("%s: address 0x%x, table bytes say 0x%x", c.name, a.Addr, got)
		}
	}
}

func TestParseTableErrors(t *testing.T) {
	table, _, _ := capture(t, "seabios-tpm20")
	fix := func(b []byte) []byte {
		b[9] = 0
		var s byte
		for _, c := range b {
			s += c
		}
		b[9] = -s
		return b
	}
	short := bytes.Clone(table[:52])
	binary.LittleEndian.PutUint32(short[4:], 52)
	noAddr := bytes.Clone(table)
	binary.LittleEndian.PutUint64(noAddr[68:], 0)
	huge := bytes.Clone(table)
	binary.LittleEndian.PutUint32(huge[64:], 1<<30)
	badSum := bytes.Clone(table)
	badSum[70]++
	for _, c := range []struct {
		name  string
		b     []byte
		want  string
		noLog bool
	}{
		{"empty", nil, "shorter than its header", false},
		{"revision 3 table without log fields", fix(short), "too short for log fields", true},
		{"zero address", fix(noAddr), "address 0x0", true},
		{"huge area", fix(huge), "more than", false},
		{"bad checksum", badSum, "checksum", false},
		{"length field past the bytes", table[:60], "length field", false},
	} {
		_, err := ParseTable(c.b)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
		if errors.Is(err, ErrNoArea) != c.noLog {
			t.Errorf("%s: errors.Is(ErrNoArea) = %v", c.name, !c.noLog)
		}
	}
}

var stdHash = map[pcrbank.Alg]func() hash.Hash{
	pcrbank.SHA1: sha1.New, pcrbank.SHA256: sha256.New, pcrbank.SHA384: sha512.New384, pcrbank.SHA512: sha512.New,
}

// plan is the stub's measurement plan for a small boot.
func plan(t testing.TB, banks []pcrbank.Alg) []measure.Measurement {
	ms, err := measure.Plan(banks, measure.Inputs{
		Kernel:  measure.BytesSource("/boot/vmlinuz-6.1.0-57-amd64", []byte("kernel bytes")),
		Initrds: []measure.Source{measure.BytesSource("/boot/initrd.img-6.1.0-57-amd64", []byte("initrd bytes"))},
		Cmdline: "BOOT_IMAGE=/boot/vmlinuz-6.1.0-57-amd64 root=/dev/vda1 ro",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// banksOf are the banks the captured firmware log's header lists.
func banksOf(t testing.TB, mem []byte, f eventlog.Format) []pcrbank.Alg {
	_, _, ids, err := Walk(mem, f)
	if err != nil {
		t.Fatal(err)
	}
	if f == eventlog.SHA1Log {
		return []pcrbank.Alg{pcrbank.SHA1}
	}
	var out []pcrbank.Alg
	for _, id := range ids {
		out = append(out, pcrbank.Alg(id))
	}
	pcrbank.SortAlgs(out)
	return out
}

// TestAppendRealArea appends the stub's three events to each captured
// SeaBIOS area and checks the result with go-eventlog, and tpm2_eventlog
// where the log is crypto-agile: both must read the firmware's events
// followed by ours, and replaying ours onto the firmware's PCR 4/5 must
// give what crypto/sha computes for the plan's digests.
func TestAppendRealArea(t *testing.T) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, mem := capture(t, c.name)
			before := bytes.Clone(mem)
			fwEnd, fwN, _, err := Walk(mem, c.format)
			if err != nil {
				t.Fatal(err)
			}
			banks := banksOf(t, mem, c.format)
			ms := plan(t, banks)
			r, err := Append(mem, c.format, ms)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%v", r)
			if r.FirmwareBytes != fwEnd || r.FirmwareEvents != fwN {
				t.Errorf("result %+v, walk found %d bytes, %d events", r, fwEnd, fwN)
			}
			if !bytes.Equal(mem[:fwEnd], before[:fwEnd]) {
				t.Fatal("the firmware's events were changed")
			}
			end := fwEnd + r.Appended
			if !bytes.Equal(mem[end:], before[end:]) || bytes.Count(mem[end:], []byte{0}) != len(mem)-end {
				t.Fatal("bytes after the appended events changed or are not zero")
			}
			// go-eventlog reads the area as the next kernel shows it.
			el, err := tcg.ParseEventLog(mem[:end], tcg.ParseOpts{})
			if err != nil {
				t.Fatalf("go-eventlog: %v", err)
			}
			for _, ha := range el.Algs {
				a := map[register.HashAlg]pcrbank.Alg{register.HashSHA1: pcrbank.SHA1, register.HashSHA256: pcrbank.SHA256, register.HashSHA384: pcrbank.SHA384}[ha]
				if a == 0 {
					continue
				}
				evs := el.Events(ha)
				if len(evs) < 3 {
					t.Fatalf("%v: %d events", a, len(evs))
				}
				tail := evs[len(evs)-3:]
				for i, ev := range tail {
					if ev.Index != ms[i].PCR || uint32(ev.Type) != eventlog.EVIPL || string(ev.Data) != string(ms[i].EventData) {
						t.Errorf("%v event %d: PCR %d type %v data %q, want PCR %d %q", a, i, ev.Index, ev.Type, ev.Data, ms[i].PCR, ms[i].EventData)
					}
					if !bytes.Equal(ev.Digest, ms[i].Digests[a]) {
						t.Errorf("%v event %d digest %x, want %x", a, i, ev.Digest, ms[i].Digests[a])
					}
				}
			}
			if c.format == eventlog.CryptoAgile {
				tpm2Eventlog(t, mem[:end], before[:fwEnd], ms)
			}
			// VTPMBOOT_WRITE_SEEDS=DIR writes the appended logs, as the
			// next kernel reads them, as boot/eventlog fuzz seeds.
			if dir := os.Getenv("VTPMBOOT_WRITE_SEEDS"); dir != "" {
				if err := os.WriteFile(filepath.Join(dir, "acpi-"+c.name+"-appended.bin"), mem[:end], 0o644); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// tpm2Eventlog checks with tpm2-tools that PCR 4 and 5 of the appended log
// are the firmware log's values extended by our digests (crypto/sha here).
func tpm2Eventlog(t *testing.T, appended, firmware []byte, ms []measure.Measurement) {
	testenv.NeedCommands(t, "tpm2_eventlog")
	fw := runEventlog(t, firmware)
	got := runEventlog(t, appended)
	for a, h := range stdHash {
		want := map[int][]byte{4: fw[a.String()+":4"], 5: fw[a.String()+":5"]}
		for _, m := range ms {
			x := h()
			x.Write(want[m.PCR])
			x.Write(m.Digests[a])
			want[m.PCR] = x.Sum(nil)
		}
		for _, i := range []int{4, 5} {
			if g := got[a.String()+":"+string(rune('0'+i))]; !bytes.Equal(g, want[i]) {
				t.Errorf("tpm2_eventlog %v PCR %d = %x, want %x", a, i, g, want[i])
			}
		}
	}
}

func runEventlog(t *testing.T, log []byte) map[string][]byte {
	p := filepath.Join(t.TempDir(), "log.bin")
	if err := os.WriteFile(p, log, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("tpm2_eventlog", p).Output()
	if err != nil {
		t.Fatalf("tpm2_eventlog: %v", err)
	}
	return parsePCRs(t, string(out))
}

// parsePCRs reads tpm2_eventlog's "pcrs:" section: "  sha256:\n    4 : 0x..".
func parsePCRs(t *testing.T, out string) map[string][]byte {
	res := map[string][]byte{}
	_, sect, ok := strings.Cut(out, "\npcrs:\n")
	if !ok {
		t.Fatalf("tpm2_eventlog printed no pcrs section")
	}
	bank := ""
	for _, l := range strings.Split(sect, "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) == 1 && strings.HasSuffix(f[0], ":"):
			bank = strings.TrimSuffix(f[0], ":")
		case len(f) == 3 && f[1] == ":":
			v := make([]byte, (len(f[2])-2)/2)
			for i := range v {
				var b byte
				for _, c := range f[2][2+2*i : 4+2*i] {
					b <<= 4
					switch {
					case c >= '0' && c <= '9':
						b |= byte(c - '0')
					default:
						b |= byte(c|0x20-'a') + 10
					}
				}
				v[i] = b
			}
			res[bank+":"+f[0]] = v
		}
	}
	return res
}

func TestAppendFailsSafe(t *testing.T) {
	for _, c := range cases {
		_, _, mem := capture(t, c.name)
		end, _, _, err := Walk(mem, c.format)
		if err != nil {
			t.Fatal(err)
		}
		banks := banksOf(t, mem, c.format)
		ms := plan(t, banks)
		ours, err := eventlog.MarshalEvents(c.format, banks, ms)
		if err != nil {
			t.Fatal(err)
		}
		garbage := bytes.Clone(mem)
		garbage[end+100] = 1
		otherBanks := plan(t, []pcrbank.Alg{pcrbank.SHA256})
		for _, x := range []struct {
			name string
			mem  []byte
			ms   []measure.Measurement
			want error
			msg  string
		}{
			{"area one byte short", bytes.Clone(mem[:end+len(ours)+terminatorLen-1]), ms, ErrTooSmall, ""},
			{"area just fits", bytes.Clone(mem[:end+len(ours)+terminatorLen]), ms, nil, ""},
			{"no firmware log", make([]byte, len(mem)), ms, ErrNoArea, ""},
			{"bytes after the log", garbage, ms, nil, "not empty after the firmware's log"},
			{"banks differ", bytes.Clone(mem), otherBanks, nil, map[eventlog.Format]string{eventlog.SHA1Log: "no sha1 digest", eventlog.CryptoAgile: "Spec ID header"}[c.format]},
			{"no measurements", bytes.Clone(mem), nil, nil, map[eventlog.Format]string{eventlog.SHA1Log: "", eventlog.CryptoAgile: "no measurements"}[c.format]},
		} {
			before := bytes.Clone(x.mem)
			_, err := Append(x.mem, c.format, x.ms)
			switch {
			case x.want == nil && x.msg == "":
				if err != nil && x.name != "no measurements" {
					t.Errorf("%s %s: %v", c.name, x.name, err)
				}
				continue
			case x.want != nil && !errors.Is(err, x.want):
				t.Errorf("%s %s: error %v, want %v", c.name, x.name, err, x.want)
			case x.msg != "" && (err == nil || !strings.Contains(err.Error(), x.msg)):
				t.Errorf("%s %s: error %v, want %q", c.name, x.name, err, x.msg)
			}
			if !bytes.Equal(x.mem, before) {
				t.Errorf("%s %s: the area was changed by a failed append", c.name, x.name)
			}
		}
	}
}

// TestAppendWrongFormat: a TPM 2.0 log read as TPM 1.2 and vice versa is
// refused, never appended in the wrong layout.
func TestAppendWrongFormat(t *testing.T) {
	_, _, mem20 := capture(t, "seabios-tpm20")
	if _, err := Append(bytes.Clone(mem20), eventlog.SHA1Log, plan(t, []pcrbank.Alg{pcrbank.SHA1})); err == nil {
		// The Spec ID header parses as a SHA-1 event, but what follows
		// is TCG_PCR_EVENT2 and does not walk as SHA-1 events.
		t.Error("a crypto-agile log accepted as a SHA-1 log")
	}
	_, _, mem12 := capture(t, "seabios-tpm12")
	if _, err := Append(bytes.Clone(mem12), eventlog.CryptoAgile, plan(t, pcrbank.DefaultAlgs)); err == nil || !strings.Contains(err.Error(), "Spec ID") {
		t.Errorf("a SHA-1 log accepted as crypto-agile: %v", err)
	}
}

func FuzzAppend(f *testing.F) {
	for _, c := range cases {
		_, _, mem := capture(f, c.name)
		end, _, _, _ := Walk(mem, c.format)
		f.Add(mem[:min(len(mem), end+600)], c.format == eventlog.CryptoAgile)
	}
	ms12 := plan(f, []pcrbank.Alg{pcrbank.SHA1})
	ms20 := plan(f, pcrbank.AllAlgs)
	f.Fuzz(func(t *testing.T, mem []byte, agile bool) {
		format, ms := eventlog.SHA1Log, ms12
		if agile {
			format, ms = eventlog.CryptoAgile, ms20
		}
		before := bytes.Clone(mem)
		r, err := Append(mem, format, ms)
		if err != nil {
			if !bytes.Equal(mem, before) {
				t.Fatal("failed append changed the area")
			}
			return
		}
		end := r.FirmwareBytes + r.Appended
		if !bytes.Equal(mem[:r.FirmwareBytes], before[:r.FirmwareBytes]) || !bytes.Equal(mem[end:], before[end:]) {
			t.Fatal("append changed bytes outside its events")
		}
		if end+terminatorLen > len(mem) {
			t.Fatal("no end record left")
		}
		l, err := eventlog.Parse(mem[:end])
		if err != nil {
			t.Fatalf("appended log does not parse: %v", err)
		}
		if len(l.UntrustedEvents) < len(ms) {
			t.Fatal("appended events missing")
		}
	})
}

func FuzzParseTable(f *testing.F) {
	for _, c := range cases {
		table, _, _ := capture(f, c.name)
		f.Add(table)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ParseTable(b)
		if err == nil && (a.Len == 0 || a.Len > maxArea || a.Addr == 0) {
			t.Fatalf("accepted %+v", a)
		}
	})
}
