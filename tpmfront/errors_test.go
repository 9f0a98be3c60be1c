package tpmfront

import (
	"errors"
	"fmt"
	"github.com/vtpmboot/vtpmboot/pcrbank"
	"testing"
)

func TestTPMErrorText(t *testing.T) {
	for _, c := range []struct {
		err  *TPMError
		want string
	}{
		{&TPMError{pcrbank.Version12, "TPM_ORD_Extend", 0x2}, "TPM 1.2 error 0x2 (TPM_BADINDEX) in TPM_ORD_Extend"},
		{&TPMError{pcrbank.Version12, "TPM_ORD_PcrRead", 0x26}, "TPM 1.2 error 0x26 (TPM_INVALID_POSTINIT) in TPM_ORD_PcrRead"},
		{&TPMError{pcrbank.Version12, "TPM_ORD_Extend", 0x7777}, "TPM 1.2 error 0x7777 (unknown TPM 1.2 return code) in TPM_ORD_Extend"},
		{&TPMError{pcrbank.Version20, "TPM2_PCR_Extend", 0x18b}, "TPM 2.0 error 0x0000018b (TPM_RC_HANDLE (handle 1): the handle is not correct for the use) in TPM2_PCR_Extend"},
		{&TPMError{pcrbank.Version20, "TPM2_PCR_Read", 0x100}, "TPM 2.0 error 0x00000100 (TPM_RC_INITIALIZE: TPM not initialized by TPM2_Startup or already initialized) in TPM2_PCR_Read"},
	} {
		if got := c.err.Error(); got != c.want {
			t.Errorf("got  %q\nwant %q", got, c.want)
		}
		var te *TPMError
		if !errors.As(fmt.Errorf("wrapped: %w", c.err), &te) || te.Code != c.err.Code {
			t.Errorf("errors.As lost %v", c.err)
		}
	}
}
