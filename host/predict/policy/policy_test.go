package policy

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/vtpmboot/vtpmboot/host/pcrfile"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// The expected values here are written out from the specifications' byte
// layouts with crypto/sha*, not with this package's helpers. The same
// digests are checked against tpm2-tools on swtpm in cmd/pcrsim.

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func s256(parts ...[]byte) []byte { h := sha256.Sum256(cat(parts...)); return h[:] }

func rep(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }

// pred is an allowed boot whose sha1 and sha256 PCR 4 and 5 are filled
// with the given bytes.
func pred(label string, b4, b5 byte) Prediction {
	return Prediction{Label: label, Banks: []pcrbank.Alg{pcrbank.SHA1, pcrbank.SHA256},
		Final: pcrfile.Readings{pcrbank.SHA1: {4: rep(b4, 20), 5: rep(b5, 20)}, pcrbank.SHA256: {4: rep(b4, 32), 5: rep(b5, 32)}},
		Init:  pcrfile.Readings{}, Contract: 1,
		Events: []Event{{PCR: 4, Digests: pcrbank.Digests{pcrbank.SHA1: rep(b4, 20), pcrbank.SHA256: rep(b4, 32)}},
			{PCR: 5, Digests: pcrbank.Digests{pcrbank.SHA1: rep(b5, 20), pcrbank.SHA256: rep(b5, 32)}}}}
}

func TestPolicyPCRSpec(t *testing.T) {
	v4, v5 := rep(0x44, 32), rep(0x55, 32)
	// TPM 2.0 Part 3 23.7: H(0^32 || TPM_CC_PolicyPCR 0x17F ||
	// TPML_PCR_SELECTION{count 1, TPM_ALG_SHA256 0x000B, sizeofSelect 3,
	// 0x30 0x00 0x00 (PCRs 4 and 5)} || H(PCR4 || PCR5)).
	want := s256(make([]byte, 32), []byte{0, 0, 1, 0x7f}, []byte{0, 0, 0, 1, 0, 0x0b, 3, 0x30, 0, 0}, s256(v4, v5))
	if got := PolicyPCR(pcrbank.SHA256, pcrbank.SHA256, Selection{4, 5}, [][]byte{v4, v5}); !bytes.Equal(got, want) {
		t.Errorf("PolicyPCR = %x, want %x", got, want)
	}
	// A sha1 bank under a sha256 policy session; PCRs 0, 7, 23.
	w0, w7, w23 := rep(1, 20), rep(7, 20), rep(0x23, 20)
	want = s256(make([]byte, 32), []byte{0, 0, 1, 0x7f}, []byte{0, 0, 0, 1, 0, 0x04, 3, 0x81, 0, 0x80}, s256(w0, w7, w23))
	if got := PolicyPCR(pcrbank.SHA256, pcrbank.SHA1, Selection{0, 7, 23}, [][]byte{w0, w7, w23}); !bytes.Equal(got, want) {
		t.Errorf("PolicyPCR sha1 bank = %x, want %x", got, want)
	}
}

func TestPolicyORTree(t *testing.T) {
	or := func(ds ...[]byte) []byte {
		return s256(append([][]byte{make([]byte, 32), {0, 0, 1, 0x71}}, ds...)...)
	}
	leaf := func(i int) []byte { return s256([]byte{byte(i)}) }
	leaves := func(n int) [][]byte {
		var out [][]byte
		for i := 0; i < n; i++ {
			out = append(out, leaf(i))
		}
		return out
	}
	tr, err := NewORTree(pcrbank.SHA256, leaves(1), false)
	if err != nil || !bytes.Equal(tr.Root(), leaf(0)) || len(tr.Groups) != 0 {
		t.Fatalf("one leaf: %v %+v", err, tr)
	}
	tr, err = NewORTree(pcrbank.SHA256, leaves(3), false)
	if err != nil || !bytes.Equal(tr.Root(), or(leaf(0), leaf(1), leaf(2))) {
		t.Fatalf("three leaves: %v", err)
	}
	tr, err = NewORTree(pcrbank.SHA256, leaves(8), false)
	if err != nil || len(tr.Groups) != 1 {
		t.Fatalf("eight leaves: %v %d levels", err, len(tr.Groups))
	}
	// Nine: two groups of 5 and 4 (never a group of one, which
	// TPM2_PolicyOR refuses), ORed again.
	tr, err = NewORTree(pcrbank.SHA256, leaves(9), true)
	if err != nil {
		t.Fatal(err)
	}
	l := leaves(9)
	want := or(or(l[:5]...), or(l[5:]...))
	if !bytes.Equal(tr.Root(), want) {
		t.Errorf("nine leaves root %x, want %x", tr.Root(), want)
	}
	if p := tr.Path(6); len(p) != 2 || len(p[0]) != 4 || !bytes.Equal(p[0][1], l[6]) || len(p[1]) != 2 {
		t.Errorf("path of leaf 6: %x", p)
	}
	if _, err := NewORTree(pcrbank.SHA256, leaves(9), false); !errors.Is(err, ErrTooManyBranches) {
		t.Errorf("nine leaves, flat: %v", err)
	}
	// 65 leaves: 9 groups at level 0 (sizes 8,7,...), 2 at level 1, root.
	tr, err = NewORTree(pcrbank.SHA256, leaves(65), true)
	if err != nil || len(tr.Groups) != 3 || len(tr.Levels[1]) != 9 || len(tr.Levels[2]) != 2 {
		t.Fatalf("65 leaves: %v, levels %d", err, len(tr.Levels))
	}
	for lvl, gs := range tr.Groups {
		for _, g := range gs {
			if n := g[1] - g[0]; n < 2 || n > 8 {
				t.Errorf("level %d group of %d", lvl, n)
			}
		}
	}
	if _, err := PolicyOR(pcrbank.SHA256, leaves(1)); err == nil {
		t.Error("PolicyOR of one branch accepted")
	}
}

func TestComposite12Spec(t *testing.T) {
	v4, v5 := rep(0x44, 20), rep(0x55, 20)
	// TPM 1.2 Part 2 8.2 TPM_PCR_COMPOSITE: TPM_PCR_SELECTION (UINT16
	// sizeOfSelect = 3, pcrSelect 0x30 0x00 0x00), UINT32 valueSize = 40,
	// then the values; TPM_COMPOSITE_HASH is its SHA-1.
	h := sha1.Sum(cat([]byte{0, 3, 0x30, 0, 0}, []byte{0, 0, 0, 40}, v4, v5))
	got, err := Composite12(Selection{4, 5}, [][]byte{v4, v5})
	if err != nil || !bytes.Equal(got, h[:]) {
		t.Errorf("composite %x %v, want %x", got, err, h)
	}
	if _, err := Composite12(Selection{4}, [][]byte{rep(1, 32)}); err == nil {
		t.Error("a 32-byte value accepted")
	}
}

func TestSet(t *testing.T) {
	a, b, c := pred("a", 1, 2), pred("b", 1, 3), pred("dup of a", 1, 2)
	s, err := NewSet(nil, []Prediction{a, b, c})
	if err != nil {
		t.Fatal(err)
	}
	tuples, labels := s.Tuples(pcrbank.SHA256)
	if len(tuples) != 2 || len(labels[0]) != 2 || labels[0][1] != "dup of a" {
		t.Fatalf("tuples %x labels %q", tuples, labels)
	}
	k, err := s.Keylime(pcrbank.SHA256)
	if err != nil || len(k["4"]) != 1 || len(k["5"]) != 2 || k["5"][0] != strings.Repeat("02", 32) {
		t.Errorf("keylime %v %v", k, err)
	}
	docs, lbls, err := s.Pcrlock()
	if err != nil || len(docs) != 2 || len(lbls[0]) != 2 || len(docs[0].Records) != 2 || docs[0].Records[1].Digests[1].HashAlg != "sha256" {
		t.Errorf("pcrlock %+v %v", docs, err)
	}
	d, err := s.Build(Options{})
	if err != nil || len(d.TPM2["sha256"].Branches) != 2 || len(d.TPM2["sha256"].ORLevels) != 1 || len(d.TPM12.Composites) != 2 {
		t.Errorf("doc %+v %v", d, err)
	}

	// PCR 7 is not extended: only a given value makes it usable.
	if _, err := NewSet(Selection{4, 7}, []Prediction{a}); err == nil || !strings.Contains(err.Error(), "--pcr-init 7:sha1=HEX") {
		t.Errorf("PCR 7 without a value: %v", err)
	}
	a.Init[pcrbank.SHA1] = map[int][]byte{7: rep(7, 20)}
	a.Init[pcrbank.SHA256] = map[int][]byte{7: rep(7, 32)}
	s, err = NewSet(Selection{4, 7}, []Prediction{a})
	if err != nil {
		t.Fatal(err)
	}
	if vs, _ := s.Predictions[0].Values(pcrbank.SHA256, s.Selection); !bytes.Equal(vs[1], rep(7, 32)) {
		t.Errorf("PCR 7 value %x", vs[1])
	}
	if _, err := s.Keylime(pcrbank.SHA256); err != nil {
		t.Error(err)
	}
	if _, err := (&Set{Selection: Selection{4, 10}, Banks: s.Banks, Predictions: s.Predictions}).Keylime(pcrbank.SHA256); err == nil {
		t.Error("Keylime policy over PCR 10 (IMA) accepted")
	}

	only1 := pred("sha1 only", 1, 2)
	only1.Banks = []pcrbank.Alg{pcrbank.SHA1}
	delete(only1.Final, pcrbank.SHA256)
	if _, err := NewSet(nil, []Prediction{b, only1}); err == nil || !strings.Contains(err.Error(), "mixed banks") {
		t.Errorf("mixed banks: %v", err)
	}
	if _, err := NewSet(nil, nil); err == nil {
		t.Error("empty set accepted")
	}
}

func TestParseSelection(t *testing.T) {
	s, err := ParseSelection("5,4+7,4")
	if err != nil || s.String() != "4,5,7" {
		t.Errorf("%v %v", s, err)
	}
	for _, bad := range []string{"", "24", "-1", "x", "4,,", "004", "1e1"} {
		if _, err := ParseSelection(bad); err == nil && bad != "4,," {
			t.Errorf("ParseSelection(%q) accepted", bad)
		}
	}
}

func TestFromJSON(t *testing.T) {
	var d pcrfile.JSONDoc
	json.Unmarshal([]byte(`{"banks":{"sha256":{"4":"`+strings.Repeat("00", 32)+`"}}}`), &d)
	if _, err := FromJSON("old", &d); err == nil || !strings.Contains(err.Error(), "older pcrsim") {
		t.Errorf("a document without a contract version: %v", err)
	}
	d.Contract = 2
	if _, err := FromJSON("future", &d); err == nil {
		t.Error("contract 2 accepted")
	}
	d.Contract = 1
	d.Init = map[string]map[string]string{"sha1": {"4": strings.Repeat("00", 20)}}
	if _, err := FromJSON("init bank", &d); err == nil {
		t.Error("a starting value in an unpredicted bank accepted")
	}
	d.Init = map[string]map[string]string{"sha256": {"7": strings.Repeat("77", 32)}}
	p, err := FromJSON("ok", &d)
	if v, ok := p.Value(pcrbank.SHA256, 7); err != nil || !ok || v[0] != 0x77 {
		t.Errorf("%+v %v", p, err)
	}
}

// FuzzPolicy feeds prediction documents (what --expected reads) through
// FromJSON and every output: an accepted document must never make a
// policy computation panic or produce a value of the wrong size.
func FuzzPolicy(f *testing.F) {
	seed, err := os.ReadFile("testdata/prediction.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed, "4,5")
	f.Add(seed, "4,5,7")
	f.Add([]byte(`{"contract":1,"banks":{"sha1":{"4":""}}}`), "4")
	f.Fuzz(func(t *testing.T, b []byte, sel string) {
		var d pcrfile.JSONDoc
		if json.Unmarshal(b, &d) != nil {
			return
		}
		p, err := FromJSON("fuzz", &d)
		if err != nil {
			return
		}
		s, err := ParseSelection(sel)
		if err != nil {
			return
		}
		set, err := NewSet(s, []Prediction{p, p})
		if err != nil {
			return
		}
		doc, err := set.Build(Options{})
		if err != nil {
			t.Fatalf("Build of an accepted set: %v", err)
		}
		for bank, td := range doc.TPM2 {
			if len(td.PolicyDigest) != 64 || len(td.Branches) != 1 {
				t.Fatalf("%s: policy %q, %d branches", bank, td.PolicyDigest, len(td.Branches))
			}
		}
		set.Pcrlock()
		for _, a := range set.Banks {
			set.Keylime(a)
		}
	})
}
