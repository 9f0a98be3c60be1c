package tpmfront

import (
	"errors"
	"fmt"
	"github.com/vtpmboot/vtpmboot/pcrbank"

	"github.com/google/go-tpm/tpm2"
)

// TPMError is a TPM's refusal of a command: a non-zero response code. The
// connection itself is fine; callers can errors.As for it to tell a TPM
// that said no from one that went away.
type TPMError struct {
	Version pcrbank.Version // pcrbank.Version12 or pcrbank.Version20
	Command string          // e.g. "TPM_ORD_Extend", "TPM2_PCR_Extend"
	Code    uint32          // the response code exactly as the TPM sent it
}

func (e *TPMError) Error() string {
	if e.Version == pcrbank.Version12 {
		return fmt.Sprintf("TPM 1.2 error 0x%x (%s) in %s", e.Code, tpm12CodeName(e.Code), e.Command)
	}
	// go-tpm's table decodes format-1 codes (which handle/parameter is
	// wrong), which is the part a person reading a boot log needs.
	return fmt.Sprintf("TPM 2.0 error 0x%08x (%s) in %s", e.Code, tpm2.TPMRC(e.Code).Error(), e.Command)
}

// ErrClosed is returned for any command on a Target after Close.
var ErrClosed = errors.New("TPM connection is closed")

// tpm12Codes names the TPM 1.2 return codes (TPM Main Part 2, section 16).
var tpm12Codes = map[uint32]string{
	0x01: "TPM_AUTHFAIL", 0x02: "TPM_BADINDEX", 0x03: "TPM_BAD_PARAMETER",
	0x04: "TPM_AUDITFAILURE", 0x05: "TPM_CLEAR_DISABLED", 0x06: "TPM_DEACTIVATED",
	0x07: "TPM_DISABLED", 0x08: "TPM_DISABLED_CMD", 0x09: "TPM_FAIL",
	0x0a: "TPM_BAD_ORDINAL", 0x0b: "TPM_INSTALL_DISABLED", 0x0c: "TPM_INVALID_KEYHANDLE",
	0x0d: "TPM_KEYNOTFOUND", 0x0e: "TPM_INAPPROPRIATE_ENC", 0x0f: "TPM_MIGRATEFAIL",
	0x10: "TPM_INVALID_PCR_INFO", 0x11: "TPM_NOSPACE", 0x12: "TPM_NOSRK",
	0x13: "TPM_NOTSEALED_BLOB", 0x14: "TPM_OWNER_SET", 0x15: "TPM_RESOURCES",
	0x16: "TPM_SHORTRANDOM", 0x17: "TPM_SIZE", 0x18: "TPM_WRONGPCRVAL",
	0x19: "TPM_BAD_PARAM_SIZE", 0x1a: "TPM_SHA_THREAD", 0x1b: "TPM_SHA_ERROR",
	0x1c: "TPM_FAILEDSELFTEST", 0x1d: "TPM_AUTH2FAIL", 0x1e: "TPM_BADTAG",
	0x1f: "TPM_IOERROR", 0x20: "TPM_ENCRYPT_ERROR", 0x21: "TPM_DECRYPT_ERROR",
	0x22: "TPM_INVALID_AUTHHANDLE", 0x23: "TPM_NO_ENDORSEMENT", 0x24: "TPM_INVALID_KEYUSAGE",
	0x25: "TPM_WRONG_ENTITYTYPE", 0x26: "TPM_INVALID_POSTINIT", 0x27: "TPM_INAPPROPRIATE_SIG",
	0x28: "TPM_BAD_KEY_PROPERTY", 0x29: "TPM_BAD_MIGRATION", 0x2a: "TPM_BAD_SCHEME",
	0x2b: "TPM_BAD_DATASIZE", 0x2c: "TPM_BAD_MODE", 0x2d: "TPM_BAD_PRESENCE",
	0x2e: "TPM_BAD_VERSION", 0x2f: "TPM_NO_WRAP_TRANSPORT", 0x30: "TPM_AUDITFAIL_UNSUCCESSFUL",
	0x31: "TPM_AUDITFAIL_SUCCESSFUL", 0x32: "TPM_NOTRESETABLE", 0x33: "TPM_NOTLOCAL",
	0x34: "TPM_BAD_TYPE", 0x35: "TPM_INVALID_RESOURCE", 0x36: "TPM_NOTFIPS",
	0x37: "TPM_INVALID_FAMILY", 0x38: "TPM_NO_NV_PERMISSION", 0x39: "TPM_REQUIRES_SIGN",
	0x3a: "TPM_KEY_NOTSUPPORTED", 0x3b: "TPM_AUTH_CONFLICT", 0x3c: "TPM_AREA_LOCKED",
	0x3d: "TPM_BAD_LOCALITY", 0x3e: "TPM_READ_ONLY", 0x3f: "TPM_PER_NOWRITE",
	0x40: "TPM_FAMILYCOUNT", 0x41: "TPM_WRITE_LOCKED", 0x42: "TPM_BAD_ATTRIBUTES",
	0x43: "TPM_INVALID_STRUCTURE", 0x44: "TPM_KEY_OWNER_CONTROL", 0x45: "TPM_BAD_COUNTER",
	0x46: "TPM_NOT_FULLWRITE", 0x47: "TPM_CONTEXT_GAP", 0x48: "TPM_MAXNVWRITES",
	0x49: "TPM_NOOPERATOR", 0x4a: "TPM_RESOURCEMISSING", 0x4b: "TPM_DELEGATE_LOCK",
	0x4c: "TPM_DELEGATE_FAMILY", 0x4d: "TPM_DELEGATE_ADMIN", 0x4e: "TPM_TRANSPORT_NOTEXCLUSIVE",
	0x4f: "TPM_OWNER_CONTROL", 0x50: "TPM_DAA_RESOURCES", 0x51: "TPM_DAA_INPUT_DATA0",
	0x52: "TPM_DAA_INPUT_DATA1", 0x53: "TPM_DAA_ISSUER_SETTINGS", 0x54: "TPM_DAA_TPM_SETTINGS",
	0x55: "TPM_DAA_STAGE", 0x56: "TPM_DAA_ISSUER_VALIDITY", 0x57: "TPM_DAA_WRONG_W",
	0x58: "TPM_BAD_HANDLE", 0x59: "TPM_BAD_DELEGATE", 0x5a: "TPM_BADCONTEXT",
	0x5b: "TPM_TOOMANYCONTEXTS", 0x5c: "TPM_MA_TICKET_SIGNATURE", 0x5d: "TPM_MA_DESTINATION",
	0x5e: "TPM_MA_SOURCE", 0x5f: "TPM_MA_AUTHORITY", 0x61: "TPM_PERMANENTEK",
	0x62: "TPM_BAD_SIGNATURE", 0x63: "TPM_NOCONTEXTSPACE",
	0x800: "TPM_RETRY", 0x801: "TPM_NEEDS_SELFTEST", 0x802: "TPM_DOING_SELFTEST",
	0x803: "TPM_DEFEND_LOCK_RUNNING",
}

func tpm12CodeName(code uint32) string {
	if n, ok := tpm12Codes[code]; ok {
		return n
	}
	return "unknown TPM 1.2 return code"
}

// Command codes vtpmboot sends, named for error messages.
const (
	ord12Extend  = 0x14
	ord12PCRRead = 0x15

	cc20PCRExtend     = 0x182
	cc20PCRRead       = 0x17e
	cc20GetCapability = 0x17a
)

func commandName(tag uint16, code uint32) string {
	if tag == tag12RquCommand || tag == tag12RquAuth1 || tag == tag12RquAuth2 {
		switch code {
		case ord12Extend:
			return "TPM_ORD_Extend"
		case ord12PCRRead:
			return "TPM_ORD_PcrRead"
		}
		return fmt.Sprintf("TPM 1.2 ordinal 0x%x", code)
	}
	switch code {
	case cc20PCRExtend:
		return "TPM2_PCR_Extend"
	case cc20PCRRead:
		return "TPM2_PCR_Read"
	case cc20GetCapability:
		return "TPM2_GetCapability"
	}
	return fmt.Sprintf("TPM 2.0 command 0x%x", code)
}
