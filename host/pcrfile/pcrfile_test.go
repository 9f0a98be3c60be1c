package pcrfile

import (
	"bytes"
	"crypto/sha1"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vtpmboot/vtpmboot/internal/contract"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

func testdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "testdata", "pcrfile", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The swtpm captures had PCR 4 extended once with H("kernel") in every bank
// (tpm2_pcrextend), so PCR4 = H(0^n || H("kernel")).
func extendedKernel(a pcrbank.Alg) []byte {
	return contract.Boot{Kernel: []byte("kernel")}.PCR4(contract.Hash(a.String()), nil)
}

func TestParseRealTPM2PCRRead(t *testing.T) {
	r, f, err := Parse(testdata(t, "tpm2_pcrread-swtpm-all.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if f != FormatTPM2YAML {
		t.Errorf("format %v, want yaml", f)
	}
	for _, a := range []pcrbank.Alg{pcrbank.SHA1, pcrbank.SHA256, pcrbank.SHA384} {
		if n := len(r[a]); n != 24 {
			t.Errorf("%v: %d PCRs, want 24", a, n)
		}
		if got, want := r[a][4], extendedKernel(a); !bytes.Equal(got, want) {
			t.Errorf("%v PCR 4 = %x, want %x", a, got, want)
		}
		if !bytes.Equal(r[a][5], make([]byte, a.Size())) {
			t.Errorf("%v PCR 5 = %x, want zeros", a, r[a][5])
		}
		// PCRs 17..22 reset to all-ones on a real TPM 2.0.
		if !bytes.Equal(r[a][17], bytes.Repeat([]byte{0xff}, a.Size())) {
			t.Errorf("%v PCR 17 = %x, want all ones", a, r[a][17])
		}
	}
	if len(r) != 3 {
		t.Errorf("banks %v, want sha1 sha256 sha384", r.Algs())
	}
}

func TestParseSubsetAndIssueExample(t *testing.T) {
	r, _, err := Parse(testdata(t, "tpm2_pcrread-swtpm-sha1-sha256-4-5.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if got := r.PCRs(pcrbank.SHA256); len(got) != 2 || got[0] != 4 || got[1] != 5 {
		t.Errorf("sha256 PCRs %v, want [4 5]", got)
	}
	r, f, err := Parse(testdata(t, "issue-example.yaml"))
	if err != nil || f != FormatTPM2YAML {
		t.Fatalf("issue example: %v %v", f, err)
	}
	if !bytes.Equal(r[pcrbank.SHA256][4], extendedKernel(pcrbank.SHA256)) {
		t.Errorf("issue example PCR 4 = %x", r[pcrbank.SHA256][4])
	}
}

func TestParseSysfs(t *testing.T) {
	r, f, err := Parse(testdata(t, "sysfs-pcrs-handwritten.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if f != FormatSysfs {
		t.Errorf("format %v", f)
	}
	if len(r) != 1 || len(r[pcrbank.SHA1]) != 24 {
		t.Fatalf("got banks %v with %d sha1 PCRs", r.Algs(), len(r[pcrbank.SHA1]))
	}
	want := sha1.Sum([]byte("kernel")) // the sample's PCR 4, see testdata
	if !bytes.Equal(r[pcrbank.SHA1][4], want[:]) {
		t.Errorf("PCR 4 = %x, want %x", r[pcrbank.SHA1][4], want)
	}
}

func TestParseJSON(t *testing.T) {
	r, f, err := Parse(testdata(t, "pcrsim.json"))
	if err != nil || f != FormatJSON {
		t.Fatalf("%v %v", f, err)
	}
	for _, a := range []pcrbank.Alg{pcrbank.SHA1, pcrbank.SHA256} {
		if !bytes.Equal(r[a][4], extendedKernel(a)) {
			t.Errorf("%v PCR 4 = %x", a, r[a][4])
		}
	}
}

func TestParseErrors(t *testing.T) {
	zero1 := strings.Repeat("00", 20)
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", "unrecognised"},
		{"garbage", "hello world\n", "unrecognised"},
		{"unknown bank", "sha1:\n  4 : 0x" + zero1 + "\nmd5:\n", "unknown PCR bank"},
		{"short digest", "sha256:\n  4 : 0x" + zero1 + "\n", "want 32"},
		{"bad hex", "sha1:\n  4 : 0xZZ\n", "not hex"},
		{"pcr range", "sha1:\n  24 : 0x" + zero1 + "\n", "PCR number"},
		{"value first", "pcrs:\n  4 : 0x" + zero1 + "\n", "before any bank"},
		{"no colon", "sha1:\n  4 0x00\n", "line 2"},
		{"conflict", "sha1:\n  4 : 0x" + zero1 + "\n  4 : 0x" + strings.Repeat("11", 20) + "\n", "twice"},
		{"header only", "sha1:\n", "no PCR values"},
		{"sysfs short", "PCR-00: 00 00\n", "want 20"},
		{"sysfs bad byte", "PCR-00: " + strings.Repeat("0G ", 20) + "\n", "not hex"},
		{"sysfs wide byte", "PCR-00: " + strings.Repeat("000 ", 20) + "\n", "two hex"},
		{"sysfs junk line", "PCR-00: " + strings.Repeat("00 ", 20) + "\nfoo\n", "line 2"},
		{"json bad", "{", "json readings"},
		{"json bank", `{"banks":{"md5":{"4":"00"}}}`, "unknown PCR bank"},
		{"json empty", `{"banks":{}}`, "no PCR values"},
	} {
		_, _, err := Parse([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want it to mention %q", tc.name, err, tc.want)
		}
	}
}

func TestOtherBanksSkipped(t *testing.T) {
	in := "sm3_256:\n  4 : 0x" + strings.Repeat("AB", 32) + "\nsha1:\n  4 : 0x" + strings.Repeat("cd", 20) + "\n"
	r, _, err := Parse([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(r) != 1 || r[pcrbank.SHA1][4][0] != 0xcd {
		t.Errorf("got %v", r)
	}
}

func TestParseFormat(t *testing.T) {
	for _, f := range []Format{FormatTPM2YAML, FormatSysfs, FormatJSON} {
		g, err := ParseFormat(f.String())
		if err != nil || g != f {
			t.Errorf("ParseFormat(%q) = %v, %v", f.String(), g, err)
		}
	}
	if _, err := ParseFormat("xml"); err == nil {
		t.Error("ParseFormat(xml) succeeded")
	}
	// Forcing a format that does not fit must fail, not guess.
	if _, err := ParseAs(testdata(t, "sysfs-pcrs-handwritten.txt"), FormatJSON); err == nil {
		t.Error("sysfs parsed as JSON")
	}
}

func FuzzParse(f *testing.F) {
	ents, err := os.ReadDir(filepath.Join(testenv.RepoRoot(), "testdata", "pcrfile"))
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range ents {
		f.Add(testdata(f, e.Name()))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, _, err := Parse(b)
		if err != nil {
			return
		}
		for a, pcrs := range r {
			for p, v := range pcrs {
				if p < 0 || p >= pcrbank.NumPCRs || len(v) != a.Size() {
					t.Fatalf("accepted %v PCR %d of %d bytes", a, p, len(v))
				}
			}
		}
	})
}

// TestParseRealSysfs reads what Linux printed under QEMU/SeaBIOS with an
// swtpm TPM 1.2. SeaBIOS extends one separator event into PCRs 0..7 whose
// data is four 0xFF bytes (SeaBIOS tcgbios.c), so PCRs it measured nothing
// else into hold SHA1(0^20 || SHA1(ff ff ff ff)).
func TestParseRealSysfs(t *testing.T) {
	r, f, err := Parse(testdata(t, "sysfs-pcrs-qemu-seabios-swtpm12.txt"))
	if err != nil || f != FormatSysfs {
		t.Fatalf("%v %v", f, err)
	}
	sep := sha1.Sum([]byte{0xff, 0xff, 0xff, 0xff})
	want := sha1.Sum(append(make([]byte, 20), sep[:]...))
	for _, p := range []int{3, 5, 6, 7} {
		if !bytes.Equal(r[pcrbank.SHA1][p], want[:]) {
			t.Errorf("PCR %d = %x, want separator-only %x", p, r[pcrbank.SHA1][p], want)
		}
	}
	if len(r[pcrbank.SHA1]) != 24 || !bytes.Equal(r[pcrbank.SHA1][17], bytes.Repeat([]byte{0xff}, 20)) {
		t.Errorf("got %d PCRs, PCR 17 %x", len(r[pcrbank.SHA1]), r[pcrbank.SHA1][17])
	}
}
