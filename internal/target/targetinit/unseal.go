package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	tpm12 "github.com/google/go-tpm/tpm"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"

	"github.com/vtpmboot/vtpmboot/internal/target/report"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// unsealRequested reports whether the command line carries e2e.unseal:
// only the seal test's guests touch the TPM beyond reading PCRs.
func unsealRequested(cmdline string) bool {
	for _, f := range strings.Fields(cmdline) {
		if f == report.UnsealFlag {
			return true
		}
	}
	return false
}

// unseal asks the TPM, from inside the booted guest, for the secret the
// test sealed on the host before the boot; only PCR values equal to the
// prediction let the TPM release it. It runs after the PCRs were read.
func unseal(r *report.Report) {
	var secret []byte
	var err error
	switch r.Version {
	case pcrbank.Version20:
		secret, err = unseal20()
	case pcrbank.Version12:
		secret, err = unseal12()
	default:
		err = errors.New("no TPM")
	}
	if err != nil {
		extra(r, report.ExtraUnsealError, err.Error())
		return
	}
	extra(r, report.ExtraUnsealed, string(secret))
}

// unseal20: a policy session, PolicyPCR over sha256:4,5 (the TPM puts its
// current values in), then TPM2_Unseal of the persistent sealed object.
// Nothing here knows the expected values.
func unseal20() ([]byte, error) {
	t, err := linuxtpm.Open("/dev/tpmrm0")
	if err != nil {
		return nil, err
	}
	defer t.Close()
	pub, err := tpm2.ReadPublic{ObjectHandle: tpm2.TPMHandle(report.SealedObject2)}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("read public of %#x: %w", report.SealedObject2, err)
	}
	sess, closeSess, err := tpm2.PolicySession(t, tpm2.TPMAlgSHA256, 16)
	if err != nil {
		return nil, fmt.Errorf("policy session: %w", err)
	}
	defer closeSess()
	sel := tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{Hash: tpm2.TPMAlgSHA256, PCRSelect: tpm2.PCClientCompatible.PCRs(4, 5)}}}
	if _, err := (tpm2.PolicyPCR{PolicySession: sess.Handle(), Pcrs: sel}).Execute(t); err != nil {
		return nil, fmt.Errorf("PolicyPCR: %w", err)
	}
	out, err := tpm2.Unseal{ItemHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(report.SealedObject2), Name: pub.Name, Auth: sess}}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("unseal: %w", err)
	}
	return out.OutData.Buffer, nil
}

// unseal12 reads the blob from NV and has the TPM unseal it with the SRK
// (well-known auth): TPM_Unseal checks digestAtRelease against its PCRs.
func unseal12() ([]byte, error) {
	rw, err := tpm12.OpenTPM("/dev/tpm0")
	if err != nil {
		return nil, err
	}
	defer rw.Close()
	h, err := tpm12.NVReadValue(rw, report.SealedNV12, 0, 2, nil)
	if err != nil || len(h) != 2 {
		return nil, fmt.Errorf("read NV %#x: %v", report.SealedNV12, err)
	}
	blob, err := tpm12.NVReadValue(rw, report.SealedNV12, 2, uint32(binary.BigEndian.Uint16(h)), nil)
	if err != nil {
		return nil, fmt.Errorf("read NV %#x: %w", report.SealedNV12, err)
	}
	srkAuth := make([]byte, 20)
	return tpm12.Unseal(rw, blob, srkAuth)
}
