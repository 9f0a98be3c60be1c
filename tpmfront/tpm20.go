package tpmfront

import (
	"errors"
	"fmt"
	"github.com/vtpmboot/vtpmboot/pcrbank"
	"strings"

	"github.com/google/go-tpm/tpm2"
)

// tpm20 is a TPM 2.0. Its banks are read once at open: the allocation only
// changes across a TPM reset, which also ends this boot.
type tpm20 struct {
	c     *conn
	banks []pcrbank.Alg
}

func (t *tpm20) Version() pcrbank.Version      { return pcrbank.Version20 }
func (t *tpm20) Banks() ([]pcrbank.Alg, error) { return append([]pcrbank.Alg(nil), t.banks...), nil }
func (t *tpm20) Close() error                  { return t.c.Close() }

// algName names banks tpmfront cannot compute as well, so the refusal at
// open time says which bank a TPM has.
func algName(a tpm2.TPMAlgID) string {
	switch a {
	case tpm2.TPMAlgSM3256:
		return "sm3_256"
	case tpm2.TPMAlgSHA3256:
		return "sha3_256"
	case tpm2.TPMAlgSHA3384:
		return "sha3_384"
	case tpm2.TPMAlgSHA3512:
		return "sha3_512"
	}
	return pcrbank.Alg(a).String()
}

// loadBanks asks for the PCR allocation. A bank with any PCR selected is
// active; one we cannot hash is an error rather than skipped, because a
// bank the stub leaves un-extended stays at its reset value and anyone
// could later extend it to whatever a verifier expects.
func (t *tpm20) loadBanks() error {
	const name = "TPM2_GetCapability"
	var rsp *tpm2.GetCapabilityResponse
	err := t.run(name, func() (err error) {
		rsp, err = tpm2.GetCapability{Capability: tpm2.TPMCapPCRs, Property: 0, PropertyCount: 1}.Execute(t.c)
		return err
	})
	if err != nil {
		return fmt.Errorf("list PCR banks: %w", err)
	}
	sel, err := rsp.CapabilityData.Data.AssignedPCR()
	if err != nil {
		return fmt.Errorf("list PCR banks: %s: %w", name, err)
	}
	seen := map[pcrbank.Alg]bool{}
	var unknown []string
	for _, s := range sel.PCRSelections {
		if !anySet(s.PCRSelect) {
			continue
		}
		a := pcrbank.Alg(s.Hash)
		if !a.Valid() {
			unknown = append(unknown, algName(tpm2.TPMAlgID(s.Hash)))
			continue
		}
		if !seen[a] {
			seen[a] = true
			t.banks = append(t.banks, a)
		}
	}
	if len(unknown) > 0 {
		return fmt.Errorf("TPM 2.0 has PCR bank(s) %v allocated, which vtpmboot cannot compute; "+
			"refusing to measure only some banks (the others could be forged later); deallocate them (tpm2_pcrallocate) or use a TPM with only sha1/sha256/sha384/sha512 banks",
			unknown)
	}
	if len(t.banks) == 0 {
		return errors.New("TPM 2.0 has no PCR bank allocated")
	}
	pcrbank.SortAlgs(t.banks)
	return nil
}

func anySet(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return true
		}
	}
	return false
}

// Extend sends one TPM2_PCR_Extend with a digest for every active bank, so
// no bank is ever left behind by a failure between two commands.
func (t *tpm20) Extend(pcr int, d pcrbank.Digests) error {
	if err := checkTPMPCR(pcr); err != nil {
		return fmt.Errorf("extend: %w", err)
	}
	if err := pcrbank.CheckDigests(t.banks, d); err != nil {
		return fmt.Errorf("extend PCR %d: %w", pcr, err)
	}
	vals := make([]tpm2.TPMTHA, 0, len(t.banks))
	for _, a := range t.banks {
		vals = append(vals, tpm2.TPMTHA{HashAlg: tpm2.TPMIAlgHash(a), Digest: d[a]})
	}
	err := t.run("TPM2_PCR_Extend", func() error {
		_, err := tpm2.PCRExtend{
			PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(pcr), Auth: tpm2.PasswordAuth(nil)},
			Digests:   tpm2.TPMLDigestValues{Digests: vals},
		}.Execute(t.c)
		return err
	})
	if err != nil {
		return fmt.Errorf("extend PCR %d: %w", pcr, err)
	}
	return nil
}

func (t *tpm20) ReadPCR(pcr int, a pcrbank.Alg) ([]byte, error) {
	if err := checkTPMPCR(pcr); err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	active := false
	for _, b := range t.banks {
		active = active || a == b
	}
	if !active {
		return nil, fmt.Errorf("read PCR %d: bank %v is not active (active %v)", pcr, a, t.banks)
	}
	sel := make([]byte, max(3, pcr/8+1))
	sel[pcr/8] = 1 << (pcr % 8)
	var rsp *tpm2.PCRReadResponse
	err := t.run("TPM2_PCR_Read", func() (err error) {
		rsp, err = tpm2.PCRRead{PCRSelectionIn: tpm2.TPMLPCRSelection{
			PCRSelections: []tpm2.TPMSPCRSelection{{Hash: tpm2.TPMIAlgHash(a), PCRSelect: sel}},
		}}.Execute(t.c)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read PCR %d (%v): %w", pcr, a, err)
	}
	// PCR_Read silently drops PCRs it does not have instead of failing.
	out := rsp.PCRSelectionOut.PCRSelections
	if len(out) != 1 || pcrbank.Alg(out[0].Hash) != a || len(rsp.PCRValues.Digests) != 1 ||
		len(out[0].PCRSelect) <= pcr/8 || out[0].PCRSelect[pcr/8]&(1<<(pcr%8)) == 0 {
		return nil, fmt.Errorf("read PCR %d (%v): TPM2_PCR_Read returned no value (no such PCR?)", pcr, a)
	}
	v := rsp.PCRValues.Digests[0].Buffer
	if len(v) != a.Size() {
		return nil, fmt.Errorf("read PCR %d (%v): TPM2_PCR_Read returned %d bytes, want %d", pcr, a, len(v), a.Size())
	}
	return append([]byte(nil), v...), nil
}

// run executes one go-tpm command and turns its response code into a
// *TPMError. go-tpm unmarshals responses by reflection; a malformed
// response must not take the stub down with a panic, so one becomes an
// error naming the command.
func (t *tpm20) run(name string, f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s: malformed response: %v", name, r)
		}
	}()
	err = f()
	var rc tpm2.TPMRC
	if errors.As(err, &rc) {
		return &TPMError{Version: pcrbank.Version20, Command: name, Code: uint32(rc)}
	}
	if err != nil && !strings.HasPrefix(err.Error(), name) {
		// Transport errors already name the command (conn.Send); go-tpm's
		// own unmarshalling errors do not.
		return fmt.Errorf("%s: %w", name, err)
	}
	return err
}
