package pcrbank

import (
	"crypto"
	_ "crypto/sha1" // registers crypto.SHA1 for Alg.New
	_ "crypto/sha256"
	_ "crypto/sha512"
	"encoding/hex"
	"fmt"
	"hash"
	"sort"
	"strings"
)

// Alg is a PCR bank's hash algorithm, numbered by its TCG TPM_ALG_ID so the
// value can go straight into TPM 2.0 commands and crypto-agile event logs.
type Alg uint16

// The banks vtpmboot knows. TPM 1.2 has only SHA1.
const (
	SHA1   Alg = 0x0004
	SHA256 Alg = 0x000B
	SHA384 Alg = 0x000C
	SHA512 Alg = 0x000D
)

// AllAlgs lists every supported bank in ascending TPM_ALG_ID order, which is
// also the order vtpmboot uses everywhere it prints or logs banks.
var AllAlgs = []Alg{SHA1, SHA256, SHA384, SHA512}

// DefaultAlgs are the banks pcrsim predicts when none are named.
var DefaultAlgs = []Alg{SHA1, SHA256}

func (a Alg) cryptoHash() (crypto.Hash, bool) {
	switch a {
	case SHA1:
		return crypto.SHA1, true
	case SHA256:
		return crypto.SHA256, true
	case SHA384:
		return crypto.SHA384, true
	case SHA512:
		return crypto.SHA512, true
	}
	return 0, false
}

// Valid reports whether vtpmboot can compute this bank.
func (a Alg) Valid() bool { _, ok := a.cryptoHash(); return ok }

// String gives the bank's lower-case name as tpm2-tools spells it ("sha256").
func (a Alg) String() string {
	switch a {
	case SHA1:
		return "sha1"
	case SHA256:
		return "sha256"
	case SHA384:
		return "sha384"
	case SHA512:
		return "sha512"
	}
	return fmt.Sprintf("alg-0x%04x", uint16(a))
}

// Size is the digest length in bytes; 0 for an unknown algorithm.
func (a Alg) Size() int {
	h, ok := a.cryptoHash()
	if !ok {
		return 0
	}
	return h.Size()
}

// New returns a fresh hash for the bank. It panics on an invalid Alg, which
// only a programming error can produce: every Alg from outside goes through
// ParseAlg or a TPM capability check first.
func (a Alg) New() hash.Hash {
	h, ok := a.cryptoHash()
	if !ok {
		panic(fmt.Sprintf("pcrbank: no hash for %v", a))
	}
	return h.New()
}

// Zero is the bank's reset value of PCRs 0..15.
func (a Alg) Zero() []byte { return make([]byte, a.Size()) }

// ParseAlg accepts a bank name such as "sha256" (case-insensitive).
func ParseAlg(s string) (Alg, error) {
	for _, a := range AllAlgs {
		if strings.EqualFold(strings.TrimSpace(s), a.String()) {
			return a, nil
		}
	}
	return 0, fmt.Errorf("unknown PCR bank %q (want one of sha1, sha256, sha384, sha512)", s)
}

// ParseAlgList parses a comma-separated bank list, dropping duplicates and
// returning the banks in canonical order.
func ParseAlgList(s string) ([]Alg, error) {
	seen := map[Alg]bool{}
	for _, part := range strings.Split(s, ",") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		a, err := ParseAlg(part)
		if err != nil {
			return nil, err
		}
		seen[a] = true
	}
	if len(seen) == 0 {
		return nil, fmt.Errorf("empty PCR bank list %q", s)
	}
	out := make([]Alg, 0, len(seen))
	for a := range seen {
		out = append(out, a)
	}
	SortAlgs(out)
	return out, nil
}

// SortAlgs puts banks in canonical (ascending TPM_ALG_ID) order.
func SortAlgs(algs []Alg) { sort.Slice(algs, func(i, j int) bool { return algs[i] < algs[j] }) }

// Digests holds one digest per bank.
type Digests map[Alg][]byte

// Algs returns the banks present, in canonical order.
func (d Digests) Algs() []Alg {
	out := make([]Alg, 0, len(d))
	for a := range d {
		out = append(out, a)
	}
	SortAlgs(out)
	return out
}

// Hex returns the digest for a as lower-case hex ("" when absent).
func (d Digests) Hex(a Alg) string { return hex.EncodeToString(d[a]) }

// Clone returns a deep copy.
func (d Digests) Clone() Digests {
	out := make(Digests, len(d))
	for a, v := range d {
		out[a] = append([]byte(nil), v...)
	}
	return out
}

// ExtendValue computes a PCR extend in software: H(old || digest). It is the
// one place the extend rule lives on the software side.
func ExtendValue(a Alg, old, digest []byte) []byte {
	h := a.New()
	h.Write(old)
	h.Write(digest)
	return h.Sum(nil)
}
