package policy

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/vtpmboot/vtpmboot/boot/measure"
	"github.com/vtpmboot/vtpmboot/host/pcrfile"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// Options choose how a Set becomes policies.
type Options struct {
	// PolicyAlg is the policy session's hash (the sealed object's
	// nameAlg); zero means sha256, tpm2-tools' and systemd's default.
	PolicyAlg pcrbank.Alg
	// Flat refuses more than MaxORBranches allowed values instead of
	// folding them into a tree of PolicyORs.
	Flat bool
}

// Doc is `pcrsim policy --format json`: what was assumed (the contract
// version, every allowed boot with its starting values) and the policies.
type Doc struct {
	Contract  int          `json:"contract"`
	Selection []int        `json:"selection"`
	PolicyAlg string       `json:"policy_alg"`
	Banks     []string     `json:"banks"`
	Allowed   []AllowedDoc `json:"allowed"`
	// TPM2 maps a bank to its policy.
	TPM2 map[string]TPM2Doc `json:"tpm2"`
	// TPM12 is present when the sha1 bank is predicted.
	TPM12 *TPM12Doc `json:"tpm12,omitempty"`
}

// AllowedDoc is one allowed boot.
type AllowedDoc struct {
	Label string `json:"label"`
	// Values are the selected PCRs per bank; Init the starting values the
	// prediction assumed (all other PCRs started at zero).
	Values map[string]map[string]string `json:"values"`
	Init   map[string]map[string]string `json:"init"`
}

// TPM2Doc is one bank's TPM 2.0 policy.
type TPM2Doc struct {
	// PolicyDigest is what to seal with (tpm2_create -L, TPM2B_DIGEST
	// authPolicy): the PolicyPCR digest for one allowed value, else the
	// root PolicyOR.
	PolicyDigest string `json:"policy_digest"`
	// PCRSelection is the matching tpm2-tools -l argument.
	PCRSelection string      `json:"pcr_selection"`
	Branches     []BranchDoc `json:"branches"`
	// ORLevels are the PolicyOR lists from the leaves up (absent with one
	// branch): ORLevels[0] groups the branches' PolicyPCR digests, each
	// next level groups the PolicyOR digests of the one below.
	ORLevels [][][]string `json:"or_levels,omitempty"`
}

// BranchDoc is one distinct allowed value of the selected PCRs.
type BranchDoc struct {
	Values    map[string]string `json:"values"`
	PolicyPCR string            `json:"policy_pcr"`
	Boots     []string          `json:"boots"`
}

// TPM12Doc is the TPM 1.2 view: one digestAtRelease per distinct allowed
// value of the sha1 bank.
type TPM12Doc struct {
	Structure  string         `json:"structure"`
	Composites []CompositeDoc `json:"composites"`
}

// CompositeDoc is one TPM_COMPOSITE_HASH.
type CompositeDoc struct {
	DigestAtRelease string            `json:"digest_at_release"`
	Values          map[string]string `json:"values"`
	Boots           []string          `json:"boots"`
}

// Structure12 says exactly what the TPM 1.2 composite is, for the JSON.
const Structure12 = "TPM_COMPOSITE_HASH = SHA-1(TPM_PCR_COMPOSITE{TPM_PCR_SELECTION{sizeOfSelect=3}, valueSize, values}): digestAtRelease of TPM_PCR_INFO / TPM_PCR_INFO_LONG (releasePCRSelection the same 3-byte selection; localityAtRelease is separate)"

// Build computes the whole document.
func (s *Set) Build(o Options) (*Doc, error) {
	alg := o.PolicyAlg
	if alg == 0 {
		alg = pcrbank.SHA256
	}
	d := &Doc{Contract: measure.ContractVersion, Selection: s.Selection, PolicyAlg: alg.String(), TPM2: map[string]TPM2Doc{}}
	for _, a := range s.Banks {
		d.Banks = append(d.Banks, a.String())
	}
	for i := range s.Predictions {
		p := &s.Predictions[i]
		ad := AllowedDoc{Label: p.Label, Values: map[string]map[string]string{}, Init: readingsDoc(p.Init)}
		for _, a := range s.Banks {
			vs, _ := p.Values(a, s.Selection)
			ad.Values[a.String()] = valuesDoc(s.Selection, vs)
		}
		d.Allowed = append(d.Allowed, ad)
	}
	for _, a := range s.Banks {
		p, err := s.TPM2Policy(a, alg, !o.Flat)
		if err != nil {
			return nil, err
		}
		td := TPM2Doc{PolicyDigest: hex.EncodeToString(p.Tree.Root()), PCRSelection: TPM2SelectionArg(a, s.Selection)}
		for i, vs := range p.Tuples {
			td.Branches = append(td.Branches, BranchDoc{Values: valuesDoc(s.Selection, vs), PolicyPCR: hex.EncodeToString(p.Leaves[i]), Boots: p.Labels[i]})
		}
		for lvl, groups := range p.Tree.Groups {
			var gs [][]string
			for _, g := range groups {
				var hs []string
				for _, dg := range p.Tree.Levels[lvl][g[0]:g[1]] {
					hs = append(hs, hex.EncodeToString(dg))
				}
				gs = append(gs, hs)
			}
			td.ORLevels = append(td.ORLevels, gs)
		}
		d.TPM2[a.String()] = td
	}
	if s.HasBank(pcrbank.SHA1) {
		p, err := s.TPM12Policy()
		if err != nil {
			return nil, err
		}
		d.TPM12 = &TPM12Doc{Structure: Structure12}
		for i, c := range p.Composites {
			d.TPM12.Composites = append(d.TPM12.Composites, CompositeDoc{DigestAtRelease: hex.EncodeToString(c),
				Values: valuesDoc(s.Selection, p.Tuples[i]), Boots: p.Labels[i]})
		}
	}
	return d, nil
}

func valuesDoc(sel Selection, vs [][]byte) map[string]string {
	m := map[string]string{}
	for i, p := range sel {
		m[strconv.Itoa(p)] = hex.EncodeToString(vs[i])
	}
	return m
}

func readingsDoc(r pcrfile.Readings) map[string]map[string]string {
	out := map[string]map[string]string{}
	for a, pcrs := range r {
		m := map[string]string{}
		for p, v := range pcrs {
			m[strconv.Itoa(p)] = hex.EncodeToString(v)
		}
		out[a.String()] = m
	}
	return out
}

// WriteText prints the document for people: the allowed boots, then per
// bank the policy digest and its branches, then the TPM 1.2 composites.
// Labels come from guest configurations and are quoted.
func (d *Doc) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "selection PCRs %v, policy hash %s, measurement contract %d\n", d.Selection, d.PolicyAlg, d.Contract)
	fmt.Fprintf(bw, "%d allowed boot(s):\n", len(d.Allowed))
	for i, a := range d.Allowed {
		fmt.Fprintf(bw, "  %d %q\n", i, a.Label)
		for _, b := range d.Banks {
			if len(a.Init[b]) > 0 {
				fmt.Fprintf(bw, "    %-7s starting values %s\n", b, d.values(a.Init[b]))
			}
		}
	}
	for _, b := range d.Banks {
		t := d.TPM2[b]
		fmt.Fprintf(bw, "TPM 2.0 %s (tpm2-tools -l %s): policy digest %s\n", b, t.PCRSelection, t.PolicyDigest)
		for i, br := range t.Branches {
			fmt.Fprintf(bw, "  branch %d PolicyPCR %s %s\n", i, br.PolicyPCR, d.values(br.Values))
		}
		for lvl, gs := range t.ORLevels {
			fmt.Fprintf(bw, "  PolicyOR level %d: %d group(s)\n", lvl, len(gs))
		}
	}
	if d.TPM12 != nil {
		for i, c := range d.TPM12.Composites {
			fmt.Fprintf(bw, "TPM 1.2 digestAtRelease %d: %s %s\n", i, c.DigestAtRelease, d.values(c.Values))
		}
	}
	return bw.Flush()
}

// values prints PCR=value pairs in PCR order ("4=ab12… 5=cd34…").
func (d *Doc) values(m map[string]string) string {
	var parts []string
	for p := 0; p < pcrbank.NumPCRs; p++ {
		if v, ok := m[strconv.Itoa(p)]; ok {
			parts = append(parts, strconv.Itoa(p)+"="+v)
		}
	}
	return strings.Join(parts, " ")
}
