// Package pcrbank is the PCR vocabulary every part of vtpmboot shares: the
// banks (Alg), one digest per bank (Digests), the extend rule
// (ExtendValue), the Target interface a PCR store implements, and Soft, a
// software bank that computes what a TPM would. It is its own package, as
// go-eventlog keeps its register types apart from the TPM transport, so
// that code which only computes or compares PCR values (the measurement
// plan, the event log, pcrsim) does not import a device driver.
package pcrbank

import (
	"errors"
	"fmt"
)

// Version tells which kind of PCR store a Target is.
type Version int

const (
	VersionSoftware Version = iota
	Version12
	Version20
)

func (v Version) String() string {
	switch v {
	case Version12:
		return "TPM 1.2"
	case Version20:
		return "TPM 2.0"
	}
	return "software PCR bank"
}

// NumPCRs is the number of PCRs of a PC Client TPM.
const NumPCRs = 24

// Target is a PCR store that measurements are extended into.
type Target interface {
	// Version says whether this is a TPM 1.2, a TPM 2.0 or a software bank.
	Version() Version
	// Banks lists the active PCR banks in canonical order. On TPM 2.0 these
	// are the allocated banks (TPM_CAP_PCRS); on TPM 1.2 it is only SHA1.
	Banks() ([]Alg, error)
	// Extend extends pcr in every active bank at once. digests must carry
	// exactly one digest of the right size for each active bank: extending
	// only some banks would leave the others open to a later forged extend.
	Extend(pcr int, digests Digests) error
	// ReadPCR returns the current value of pcr in bank alg.
	ReadPCR(pcr int, alg Alg) ([]byte, error)
	Close() error
}

// ExtendResulter is a Target whose extend command itself answers with the
// PCR's new value: TPM 1.2's TPM_ORD_Extend returns outDigest. Callers
// that check the TPM compare that value with the one they expect, too.
type ExtendResulter interface {
	ExtendResult(pcr int, digests Digests) (Digests, error)
}

// ErrBankMismatch is returned by Extend when the digests do not cover
// exactly the active banks.
var ErrBankMismatch = errors.New("digests do not match the active PCR banks")

// CheckDigests verifies that d has exactly one correctly sized digest for
// each of banks. Every Target implementation calls it before extending.
func CheckDigests(banks []Alg, d Digests) error {
	if len(d) != len(banks) {
		return fmt.Errorf("%w: have %v, active %v", ErrBankMismatch, d.Algs(), banks)
	}
	for _, a := range banks {
		v, ok := d[a]
		if !ok {
			return fmt.Errorf("%w: no %v digest (active %v)", ErrBankMismatch, a, banks)
		}
		if len(v) != a.Size() {
			return fmt.Errorf("%w: %v digest is %d bytes, want %d", ErrBankMismatch, a, len(v), a.Size())
		}
	}
	return nil
}

func checkPCR(pcr int) error {
	if pcr < 0 || pcr >= NumPCRs {
		return fmt.Errorf("PCR %d out of range 0..%d", pcr, NumPCRs-1)
	}
	return nil
}
