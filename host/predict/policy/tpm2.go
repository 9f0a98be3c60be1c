package policy

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// TPM 2.0 command codes that enter policy digests (TPM 2.0 Library, Part 2,
// 6.5 TPM_CC).
const (
	ccPolicyOR  = 0x00000171
	ccPolicyPCR = 0x0000017F
)

// MaxORBranches is the most digests one TPM2_PolicyOR takes (Part 3,
// 23.6: pHashList holds 2 to 8 digests).
const MaxORBranches = 8

// pcrSelectionBytes marshals a TPML_PCR_SELECTION with one
// TPMS_PCR_SELECTION: count, hash, sizeofSelect and the bitmap. The
// selection is part of the policy digest, so sizeofSelect matters: 3 is
// what tpm2-tools (pcr_parse_selection), systemd and go-tpm
// (PCClientCompatible) send for 24 PCRs, and what the unsealing side must
// send too.
func pcrSelectionBytes(bank pcrbank.Alg, sel Selection) []byte {
	m := sel.mask()
	b := binary.BigEndian.AppendUint32(nil, 1)
	b = binary.BigEndian.AppendUint16(b, uint16(bank))
	b = append(b, byte(len(m)))
	return append(b, m[:]...)
}

// PCRDigest is TPM2_PolicyPCR's pcrDigest: the policy session's hash over
// the selected PCR values concatenated in selection order (ascending PCR
// index), as the TPM computes it from its PCRs.
func PCRDigest(policyAlg pcrbank.Alg, values [][]byte) []byte {
	h := policyAlg.New()
	for _, v := range values {
		h.Write(v)
	}
	return h.Sum(nil)
}

// PolicyPCR is the policy digest of a policy made of one TPM2_PolicyPCR
// over bank:sel with the given values, starting from the all-zero digest
// (Part 3, 23.7):
//
//	policyDigest = H(0…0 ‖ TPM_CC_PolicyPCR ‖ TPML_PCR_SELECTION ‖ pcrDigest)
//
// This is what tpm2_createpolicy --policy-pcr prints and what
// tpm2_create -L takes.
func PolicyPCR(policyAlg, bank pcrbank.Alg, sel Selection, values [][]byte) []byte {
	h := policyAlg.New()
	h.Write(policyAlg.Zero())
	h.Write(binary.BigEndian.AppendUint32(nil, ccPolicyPCR))
	h.Write(pcrSelectionBytes(bank, sel))
	h.Write(PCRDigest(policyAlg, values))
	return h.Sum(nil)
}

// PolicyOR is the digest of TPM2_PolicyOR over branches (Part 3, 23.6): it
// resets the session digest to zero, then
//
//	policyDigest = H(0…0 ‖ TPM_CC_PolicyOR ‖ digest₁ ‖ … ‖ digestₙ)
func PolicyOR(policyAlg pcrbank.Alg, branches [][]byte) ([]byte, error) {
	if len(branches) < 2 || len(branches) > MaxORBranches {
		return nil, fmt.Errorf("TPM2_PolicyOR takes 2 to %d branches, not %d", MaxORBranches, len(branches))
	}
	h := policyAlg.New()
	h.Write(policyAlg.Zero())
	h.Write(binary.BigEndian.AppendUint32(nil, ccPolicyOR))
	for _, b := range branches {
		h.Write(b)
	}
	return h.Sum(nil), nil
}

// ErrTooManyBranches is returned for more than MaxORBranches allowed
// values when folding into a tree was not allowed.
var ErrTooManyBranches = errors.New("more allowed values than one TPM2_PolicyOR takes")

// ORTree is a PolicyOR over the leaves (PolicyPCR digests). Up to
// MaxORBranches leaves it is one PolicyOR. Beyond that the leaves are
// split into groups of at most 8 (at least 2 each, sizes as even as
// possible), each group gets its own PolicyOR, and the group digests are
// ORed again, level by level, until one PolicyOR remains: the TCG spec
// allows it because TPM2_PolicyOR only checks that the session's current
// digest is one of its list, whatever produced it. To satisfy it, the
// unsealer runs PolicyPCR, then one PolicyOR per level, each with the
// list of the group that contains the digest reached so far.
type ORTree struct {
	// Levels[0] are the leaves; Levels[i+1][j] is the PolicyOR of group
	// Groups[i][j] of Levels[i]. The last level has one digest: the root.
	Levels [][][]byte
	// Groups[i] partitions Levels[i] into index ranges [start, end).
	Groups [][][2]int
}

// Root is the policy digest an object is sealed with.
func (t *ORTree) Root() []byte { return t.Levels[len(t.Levels)-1][0] }

// NewORTree builds the policy over leaves. One leaf needs no PolicyOR: the
// root is the leaf. More than MaxORBranches leaves are an error unless
// fold is set.
func NewORTree(policyAlg pcrbank.Alg, leaves [][]byte, fold bool) (*ORTree, error) {
	if len(leaves) == 0 {
		return nil, errors.New("no policy branch")
	}
	t := &ORTree{Levels: [][][]byte{leaves}}
	if len(leaves) > MaxORBranches && !fold {
		return nil, fmt.Errorf("%w: %d allowed values, TPM2_PolicyOR takes at most %d (fold them into a tree of PolicyORs, the default, or allow fewer boots)",
			ErrTooManyBranches, len(leaves), MaxORBranches)
	}
	for cur := leaves; len(cur) > 1; {
		n := len(cur)
		groups := (n + MaxORBranches - 1) / MaxORBranches
		var next [][]byte
		var ranges [][2]int
		start := 0
		for g := 0; g < groups; g++ {
			size := n / groups
			if g < n%groups {
				size++
			}
			d, err := PolicyOR(policyAlg, cur[start:start+size])
			if err != nil {
				return nil, err
			}
			next = append(next, d)
			ranges = append(ranges, [2]int{start, start + size})
			start += size
		}
		t.Groups = append(t.Groups, ranges)
		t.Levels = append(t.Levels, next)
		cur = next
	}
	return t, nil
}

// Path returns, for leaf i, the PolicyOR lists to present level by level
// (each a copy of one group's digests) to reach the root.
func (t *ORTree) Path(i int) [][][]byte {
	var out [][][]byte
	for lvl, groups := range t.Groups {
		for j, g := range groups {
			if i >= g[0] && i < g[1] {
				out = append(out, t.Levels[lvl][g[0]:g[1]])
				i = j
				break
			}
		}
	}
	return out
}

// TPM2 is the TPM 2.0 policy of one bank.
type TPM2 struct {
	Bank, PolicyAlg pcrbank.Alg
	// Tuples are the distinct allowed values of the selected PCRs, Labels
	// the boots that give each; Leaves[i] is the PolicyPCR digest of
	// Tuples[i].
	Tuples [][][]byte
	Labels [][]string
	Leaves [][]byte
	Tree   *ORTree
}

// TPM2Policy computes the policy of bank over every allowed boot of s.
func (s *Set) TPM2Policy(bank, policyAlg pcrbank.Alg, fold bool) (*TPM2, error) {
	if !s.HasBank(bank) {
		return nil, fmt.Errorf("bank %v is not predicted (banks %v)", bank, s.Banks)
	}
	p := &TPM2{Bank: bank, PolicyAlg: policyAlg}
	p.Tuples, p.Labels = s.Tuples(bank)
	for _, vs := range p.Tuples {
		p.Leaves = append(p.Leaves, PolicyPCR(policyAlg, bank, s.Selection, vs))
	}
	t, err := NewORTree(policyAlg, p.Leaves, fold)
	if err != nil {
		return nil, fmt.Errorf("bank %v: %w", bank, err)
	}
	p.Tree = t
	return p, nil
}
