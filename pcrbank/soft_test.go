package pcrbank

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
)

func TestSoftSetPCRThenExtend(t *testing.T) {
	s, err := NewSoft([]Alg{SHA256, SHA1, SHA256})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := s.Banks(); len(b) != 2 || b[0] != SHA1 || b[1] != SHA256 {
		t.Fatalf("Banks() = %v, want [sha1 sha256]", b)
	}
	start1 := bytes.Repeat([]byte{0xaa}, 20)
	start256 := bytes.Repeat([]byte{0xbb}, 32)
	if err := s.SetPCR(4, SHA1, start1); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPCR(4, SHA256, start256); err != nil {
		t.Fatal(err)
	}
	start1[0] = 0 // SetPCR must have copied
	d1, d256 := sha1.Sum([]byte("k")), sha256.Sum256([]byte("k"))
	if err := s.Extend(4, Digests{SHA1: d1[:], SHA256: d256[:]}); err != nil {
		t.Fatal(err)
	}
	want1 := sha1.Sum(append(bytes.Repeat([]byte{0xaa}, 20), d1[:]...))
	want256 := sha256.Sum256(append(bytes.Repeat([]byte{0xbb}, 32), d256[:]...))
	if got, _ := s.ReadPCR(4, SHA1); !bytes.Equal(got, want1[:]) {
		t.Errorf("sha1 PCR 4 = %x, want %x", got, want1)
	}
	if got, _ := s.ReadPCR(4, SHA256); !bytes.Equal(got, want256[:]) {
		t.Errorf("sha256 PCR 4 = %x, want %x", got, want256)
	}
	// Other PCRs are untouched zeros.
	if got, _ := s.ReadPCR(5, SHA256); !bytes.Equal(got, make([]byte, 32)) {
		t.Errorf("PCR 5 = %x, want zeros", got)
	}
	if s.Version() != VersionSoftware || s.Close() != nil {
		t.Error("Version/Close")
	}
}

func TestSoftErrors(t *testing.T) {
	if _, err := NewSoft(nil); err == nil {
		t.Error("NewSoft(nil) succeeded")
	}
	if _, err := NewSoft([]Alg{0x12}); err == nil {
		t.Error("NewSoft(sm3) succeeded")
	}
	s, err := NewSoft([]Alg{SHA256})
	if err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"set negative PCR":  s.SetPCR(-1, SHA256, make([]byte, 32)),
		"set PCR 24":        s.SetPCR(24, SHA256, make([]byte, 32)),
		"set inactive bank": s.SetPCR(4, SHA1, make([]byte, 20)),
		"set short value":   s.SetPCR(4, SHA256, make([]byte, 31)),
		"set nil value":     s.SetPCR(4, SHA256, nil),
		"extend PCR 24":     s.Extend(24, Digests{SHA256: make([]byte, 32)}),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := s.ReadPCR(24, SHA256); err == nil || !strings.Contains(err.Error(), "24") {
		t.Errorf("ReadPCR(24) = %v", err)
	}
	if _, err := s.ReadPCR(-1, SHA256); err == nil {
		t.Error("ReadPCR(-1) succeeded")
	}
	if _, err := s.ReadPCR(4, SHA1); err == nil || !strings.Contains(err.Error(), "not active") {
		t.Errorf("ReadPCR inactive bank = %v", err)
	}
	for name, d := range map[string]Digests{
		"missing": {},
		"extra":   {SHA256: make([]byte, 32), SHA1: make([]byte, 20)},
		"other":   {SHA1: make([]byte, 20)},
		"short":   {SHA256: make([]byte, 20)},
	} {
		if err := s.Extend(4, d); !errors.Is(err, ErrBankMismatch) {
			t.Errorf("%s: Extend = %v, want ErrBankMismatch", name, err)
		}
	}
	if got, _ := s.ReadPCR(4, SHA256); !bytes.Equal(got, make([]byte, 32)) {
		t.Errorf("refused extends changed PCR 4: %x", got)
	}
}
