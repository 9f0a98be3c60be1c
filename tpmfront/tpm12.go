package tpmfront

import (
	"encoding/binary"
	"fmt"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// tpm12 is a TPM 1.2: one SHA-1 bank, raw TPM_ORD_Extend and
// TPM_ORD_PcrRead, no authorization (PCRs 0..15 need none).
type tpm12 struct {
	c *conn
}

func (t *tpm12) Version() pcrbank.Version      { return pcrbank.Version12 }
func (t *tpm12) Banks() ([]pcrbank.Alg, error) { return []pcrbank.Alg{pcrbank.SHA1}, nil }
func (t *tpm12) Close() error                  { return t.c.Close() }

// checkTPMPCR rejects what cannot be a PCR index at all; whether the TPM
// has that PCR is the TPM's call, and its refusal comes back with a code.
func checkTPMPCR(pcr int) error {
	if pcr < 0 || pcr > 0xff {
		return fmt.Errorf("PCR %d is not a PCR index", pcr)
	}
	return nil
}

func (t *tpm12) Extend(pcr int, d pcrbank.Digests) error {
	_, err := t.ExtendResult(pcr, d)
	return err
}

// ExtendResult extends and returns the new value TPM_ORD_Extend answered
// with (outDigest), which measure.Apply checks.
func (t *tpm12) ExtendResult(pcr int, d pcrbank.Digests) (pcrbank.Digests, error) {
	if err := checkTPMPCR(pcr); err != nil {
		return nil, fmt.Errorf("extend: %w", err)
	}
	if err := pcrbank.CheckDigests([]pcrbank.Alg{pcrbank.SHA1}, d); err != nil {
		return nil, fmt.Errorf("extend PCR %d: %w", pcr, err)
	}
	cmd := make([]byte, 34)
	binary.BigEndian.PutUint16(cmd[0:], tag12RquCommand)
	binary.BigEndian.PutUint32(cmd[2:], 34)
	binary.BigEndian.PutUint32(cmd[6:], ord12Extend)
	binary.BigEndian.PutUint32(cmd[10:], uint32(pcr))
	copy(cmd[14:], d[pcrbank.SHA1])
	out, err := t.run("TPM_ORD_Extend", cmd, 20)
	if err != nil {
		return nil, fmt.Errorf("extend PCR %d: %w", pcr, err)
	}
	return pcrbank.Digests{pcrbank.SHA1: out}, nil
}

func (t *tpm12) ReadPCR(pcr int, a pcrbank.Alg) ([]byte, error) {
	if err := checkTPMPCR(pcr); err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	if a != pcrbank.SHA1 {
		return nil, fmt.Errorf("read PCR %d: bank %v is not active (a TPM 1.2 has only sha1)", pcr, a)
	}
	cmd := make([]byte, 14)
	binary.BigEndian.PutUint16(cmd[0:], tag12RquCommand)
	binary.BigEndian.PutUint32(cmd[2:], 14)
	binary.BigEndian.PutUint32(cmd[6:], ord12PCRRead)
	binary.BigEndian.PutUint32(cmd[10:], uint32(pcr))
	out, err := t.run("TPM_ORD_PcrRead", cmd, 20)
	if err != nil {
		return nil, fmt.Errorf("read PCR %d: %w", pcr, err)
	}
	return out, nil
}

// run sends cmd and returns the want-byte output parameters after the
// response header.
func (t *tpm12) run(name string, cmd []byte, want int) ([]byte, error) {
	rsp, err := t.c.Send(cmd)
	if err != nil {
		return nil, err
	}
	tag := binary.BigEndian.Uint16(rsp)
	if tag != tag12RspCommand {
		return nil, fmt.Errorf("%s: response has tag 0x%04x, want 0x%04x (is this a TPM 1.2?)", name, tag, tag12RspCommand)
	}
	if rc := binary.BigEndian.Uint32(rsp[6:]); rc != 0 {
		return nil, &TPMError{Version: pcrbank.Version12, Command: name, Code: rc}
	}
	if len(rsp) != headerSize+want {
		return nil, fmt.Errorf("%s: response is %d bytes, want %d", name, len(rsp), headerSize+want)
	}
	return append([]byte(nil), rsp[headerSize:]...), nil
}
