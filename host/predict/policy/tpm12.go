package policy

import (
	"crypto/sha1"
	"encoding/binary"
	"fmt"

	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// Composite12 is the TPM 1.2 TPM_COMPOSITE_HASH of the selected SHA-1 PCR
// values (TPM 1.2 Main Part 2, 8.1-8.3 and 5.4.1): SHA-1 over the
// TPM_PCR_COMPOSITE
//
//	TPM_PCR_SELECTION { UINT16 sizeOfSelect = 3; BYTE pcrSelect[3] }
//	UINT32 valueSize = 20 × number of selected PCRs
//	TPM_PCRVALUE pcrValue[] in ascending PCR order
//
// This is the digestAtRelease TPM_Seal takes in its TPM_PCR_INFO (or
// TPM_PCR_INFO_LONG, whose releasePCRSelection must then be the same
// 3-byte selection): TPM_Unseal recomputes it from the current PCRs and
// refuses with TPM_WRONGPCRVAL when they differ. sizeOfSelect is part of
// the hash; 3 (24 PCRs) is what go-tpm's tpm package (newPCRSelection,
// createPCRComposite), TrouSerS (for a TPM reporting 24 PCRs) and the
// vTPM use. Locality is not part of the composite: TPM_PCR_INFO_LONG
// carries it separately in localityAtRelease.
func Composite12(sel Selection, values [][]byte) ([]byte, error) {
	if len(values) != len(sel) {
		return nil, fmt.Errorf("%d values for %d selected PCRs", len(values), len(sel))
	}
	m := sel.mask()
	b := binary.BigEndian.AppendUint16(nil, uint16(len(m)))
	b = append(b, m[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(20*len(values)))
	for _, v := range values {
		if len(v) != 20 {
			return nil, fmt.Errorf("TPM 1.2 PCR value of %d bytes, want 20", len(v))
		}
		b = append(b, v...)
	}
	h := sha1.Sum(b)
	return h[:], nil
}

// TPM12 is the TPM 1.2 view of a set: one composite per distinct allowed
// boot. TPM 1.2 has no OR: a blob is sealed to one composite, so several
// allowed boots need one sealed blob each.
type TPM12 struct {
	Tuples     [][][]byte
	Labels     [][]string
	Composites [][]byte
}

// TPM12Policy computes the composites from the sha1 bank.
func (s *Set) TPM12Policy() (*TPM12, error) {
	if !s.HasBank(pcrbank.SHA1) {
		return nil, fmt.Errorf("the TPM 1.2 composite needs the sha1 bank (banks %v)", s.Banks)
	}
	p := &TPM12{}
	p.Tuples, p.Labels = s.Tuples(pcrbank.SHA1)
	for _, vs := range p.Tuples {
		c, err := Composite12(s.Selection, vs)
		if err != nil {
			return nil, err
		}
		p.Composites = append(p.Composites, c)
	}
	return p, nil
}
