package predict

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vtpmboot/vtpmboot/boot/measure"
	"github.com/vtpmboot/vtpmboot/host/pcrfile"
	"github.com/vtpmboot/vtpmboot/internal/contract"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

func writeRandom(t testing.TB, dir, name string, n int) (string, []byte) {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p, b
}

func s256(parts ...[]byte) []byte { return contract.Digest(crypto.SHA256, parts...) }

// TestRunMatchesContract checks Run against the contract oracle
// (internal/contract), including starting values.
func TestRunMatchesContract(t *testing.T) {
	dir := t.TempDir()
	// Sizes straddle StreamHasher's 1 MiB chunk so chunk joins are covered.
	kp, kernel := writeRandom(t, dir, "vmlinuz", 3<<20+17)
	i1p, i1 := writeRandom(t, dir, "initrd1", 1<<20)
	i2p, i2 := writeRandom(t, dir, "initrd2", 5)
	cmdline := "root=/dev/xvda1 ro console=hvc0"
	init4 := bytes.Repeat([]byte{0xab}, 32)

	r, err := Run(Options{
		Init:   []PCRInit{{PCR: 4, Alg: pcrbank.SHA256, Value: init4}},
		Inputs: FileInputs(kp, []string{i1p, i2p}, cmdline),
	})
	if err != nil {
		t.Fatal(err)
	}
	b := contract.Boot{Kernel: kernel, Initrds: [][]byte{i1, i2}, Cmdline: cmdline}
	want := pcrfile.Readings{
		pcrbank.SHA1:   {4: b.PCR4(crypto.SHA1, nil), 5: b.PCR5(crypto.SHA1, nil)},
		pcrbank.SHA256: {4: b.PCR4(crypto.SHA256, init4), 5: b.PCR5(crypto.SHA256, nil)},
	}
	for a, pcrs := range want {
		for p, v := range pcrs {
			if !bytes.Equal(r.Final[a][p], v) {
				t.Errorf("%v PCR %d = %x, want %x", a, p, r.Final[a][p], v)
			}
		}
	}
	if len(r.Steps) != 3 {
		t.Fatalf("%d steps, want 3", len(r.Steps))
	}

	var text bytes.Buffer
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		"extend PCR 4 with kernel " + `"` + kp + `"`,
		"digest " + string(hexs(s256(kernel))),
		"before " + string(hexs(init4)),
		"after  " + string(hexs(want[pcrbank.SHA256][4])),
		"PCR 5  sha1    " + string(hexs(want[pcrbank.SHA1][5])),
	} {
		if !strings.Contains(text.String(), s) {
			t.Errorf("text output lacks %q:\n%s", s, text.String())
		}
	}
}

func hexs(b []byte) []byte {
	const h = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, h[c>>4], h[c&15])
	}
	return out
}

func TestNoInitrdIsEmptyDigest(t *testing.T) {
	r, err := Run(Options{Banks: []pcrbank.Alg{pcrbank.SHA256},
		Inputs: measure.Inputs{Kernel: measure.BytesSource("k", []byte("K")), Cmdline: ""}})
	if err != nil {
		t.Fatal(err)
	}
	want := contract.Boot{}.PCR5(crypto.SHA256, nil)
	if !bytes.Equal(r.Final[pcrbank.SHA256][5], want) {
		t.Errorf("PCR 5 = %x, want %x", r.Final[pcrbank.SHA256][5], want)
	}
	if len(r.Final) != 1 {
		t.Errorf("banks %v, want only sha256", r.Final.Algs())
	}
}

// TestJSONShape decodes the output generically, so a renamed field or a
// different nesting fails even if our own reader would accept it.
func TestJSONShape(t *testing.T) {
	r, err := Run(Options{Inputs: measure.Inputs{Kernel: measure.BytesSource("/boot/vmlinuz", []byte("K")), Cmdline: "a<b&c"}})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := r.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"source":"a<b&c"`) {
		t.Errorf("command line escaped: %s", buf.String())
	}
	var doc map[string]any
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	// The contract version and the starting values (none here) are
	// recorded too, so a stored prediction says what it assumed.
	if len(doc) != 4 || doc["contract"] != float64(1) || len(doc["init"].(map[string]any)) != 0 {
		t.Errorf("top-level keys %v, want contract 1, banks, init {} and events", doc)
	}
	banks := doc["banks"].(map[string]any)
	wantK := hexs(contract.Boot{Kernel: []byte("K")}.PCR4(crypto.SHA1, nil))
	if got := banks["sha1"].(map[string]any)["4"]; got != string(wantK) {
		t.Errorf("banks.sha1.4 = %v, want %s", got, wantK)
	}
	evs := doc["events"].([]any)
	kinds := []string{"kernel", "cmdline", "initrd"}
	for i, e := range evs {
		m := e.(map[string]any)
		if m["kind"] != kinds[i] || len(m) != 4 {
			t.Errorf("event %d = %v", i, m)
		}
		if m["pcr"].(float64) != float64(4+min(i, 1)) {
			t.Errorf("event %d pcr %v", i, m["pcr"])
		}
	}
	if d := evs[0].(map[string]any)["digests"].(map[string]any)["sha256"]; d != string(hexs(s256([]byte("K")))) {
		t.Errorf("kernel sha256 digest %v", d)
	}
	if evs[2].(map[string]any)["source"] != "(none)" {
		t.Errorf("initrd source %v", evs[2])
	}
}

func TestParsePCRInit(t *testing.T) {
	in, err := ParsePCRInit("4:SHA1:0x" + strings.Repeat("AB", 20))
	if err != nil || in.PCR != 4 || in.Alg != pcrbank.SHA1 || in.Value[19] != 0xab {
		t.Fatalf("%+v %v", in, err)
	}
	for _, bad := range []string{"", "4", "4:sha1", "x:sha1:00", "24:sha1:00", "-1:sha1:00", "4:md5:00", "4:sha1:zz", "4:sha1:00", "4:sha1:00:00"} {
		if _, err := ParsePCRInit(bad); err == nil {
			t.Errorf("ParsePCRInit(%q) accepted", bad)
		}
	}
}

func TestRunErrors(t *testing.T) {
	dir := t.TempDir()
	k, _ := writeRandom(t, dir, "k", 10)
	for name, o := range map[string]Options{
		"missing kernel":   {Inputs: FileInputs(filepath.Join(dir, "nope"), nil, "")},
		"directory initrd": {Inputs: FileInputs(k, []string{dir}, "")},
		"init bank inactive": {Banks: []pcrbank.Alg{pcrbank.SHA1}, Inputs: FileInputs(k, nil, ""),
			Init: []PCRInit{{PCR: 4, Alg: pcrbank.SHA256, Value: make([]byte, 32)}}},
		"init twice": {Inputs: FileInputs(k, nil, ""),
			Init: []PCRInit{{PCR: 4, Alg: pcrbank.SHA1, Value: make([]byte, 20)}, {PCR: 4, Alg: pcrbank.SHA1, Value: make([]byte, 20)}}},
	} {
		if _, err := Run(o); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestCompare(t *testing.T) {
	a1, a2 := bytes.Repeat([]byte{1}, 20), bytes.Repeat([]byte{2}, 32)
	exp := pcrfile.Readings{pcrbank.SHA1: {4: a1, 5: a1}, pcrbank.SHA256: {4: a2, 5: a2}}

	c := Compare(exp, pcrfile.Readings{pcrbank.SHA1: {4: a1, 5: a1, 0: a1}}, nil)
	if !c.OK() || len(c.Rows) != 2 || len(c.Skipped) != 1 || c.Skipped[0] != pcrbank.SHA256 {
		t.Errorf("sha1-only readings, default banks: %+v", c)
	}
	c = Compare(exp, pcrfile.Readings{pcrbank.SHA1: {4: a1, 5: a1}}, []pcrbank.Alg{pcrbank.SHA1, pcrbank.SHA256})
	if c.OK() || len(c.Rows) != 4 || c.Rows[1].Status != Missing {
		t.Errorf("required sha256 absent: %+v", c)
	}
	c = Compare(exp, pcrfile.Readings{pcrbank.SHA1: {4: a1}}, nil)
	if c.OK() {
		t.Errorf("PCR 5 absent from a present bank passed: %+v", c)
	}
	c = Compare(exp, pcrfile.Readings{pcrbank.SHA384: {4: make([]byte, 48)}}, nil)
	if c.OK() {
		t.Error("no bank in common passed")
	}
	var out bytes.Buffer
	c.WriteTable(&out)
	if !strings.Contains(out.String(), "FAIL: no predicted bank") {
		t.Errorf("table: %s", out.String())
	}
	bad := bytes.Repeat([]byte{9}, 32)
	c = Compare(exp, pcrfile.Readings{pcrbank.SHA1: {4: a1, 5: a1}, pcrbank.SHA256: {4: a2, 5: bad}}, nil)
	if c.OK() || c.Rows[3].Status != Mismatch {
		t.Errorf("mismatch: %+v", c)
	}
	out.Reset()
	c.WriteTable(&out)
	if !strings.Contains(out.String(), "5   sha256  MISMATCH "+string(hexs(a2))+" "+string(hexs(bad))) {
		t.Errorf("table: %s", out.String())
	}
}
