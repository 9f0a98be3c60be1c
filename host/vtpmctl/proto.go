// Package vtpmctl is vtpmback's local control interface, server and
// client: the one owner of its wire format. Other host parts (the dom0
// loader, host-side PCR reads, the event-log store) reach a served vTPM
// only through it, since vtpmback holds swtpm's single data and control
// connections.
//
// Wire format (docs/vtpmctl.md): one connection per request on a unix
// stream socket (default /run/vtpmboot/vtpmback.sock, mode 0600 in a
// 0700 directory, peers checked with SO_PEERCRED: uid 0 only). The
// client writes one JSON Request and half-closes; the server answers one
// JSON Response and closes. Both are bounded (MaxRequest, MaxResponse).
package vtpmctl

import (
	"errors"
	"fmt"
	"regexp"
)

// DefaultSocket is where vtpmback listens unless told otherwise.
const DefaultSocket = "/run/vtpmboot/vtpmback.sock"

// Operations.
const (
	OpBoot   = "boot"    // a boot of Domid with vTPM UUID starts: reset, then apply Measurements
	OpPCRs   = "pcrs"    // read PCRs
	OpPutLog = "put-log" // store this boot's event log
	OpGetLog = "get-log" // fetch it
	OpStatus = "status"  // the bindings vtpmback knows
)

// Limits. A request's event log is the largest field; 1 MiB is far more
// than a boot's few events (the stub's log is a few KiB).
const (
	MaxLog          = 1 << 20
	MaxRequest      = MaxLog*4/3 + 64<<10 // base64 of the log, plus the rest
	MaxResponse     = MaxRequest
	MaxMeasurements = 64
	MaxEventData    = 4096
)

// Request is one control request. UUID is the vTPM (xl's vtpm= uuid);
// Domid the domain whose boot it concerns (OpBoot, OpPutLog).
type Request struct {
	Op           string        `json:"op"`
	UUID         string        `json:"uuid,omitempty"`
	Domid        *uint32       `json:"domid,omitempty"`
	Measurements []Measurement `json:"measurements,omitempty"`
	// PCRs selects what OpPCRs reads; empty means 0..23.
	PCRs []int `json:"pcrs,omitempty"`
	// Log is OpPutLog's event log (base64 in JSON).
	Log []byte `json:"log,omitempty"`
}

// Measurement is one extend: a digest per bank (algorithm name as
// tpmfront.ParseAlg reads it, "sha1", "sha256", ...; hex digest) and the
// event data that describes it. Every bank the TPM has must be given.
type Measurement struct {
	PCR     int               `json:"pcr"`
	Digests map[string]string `json:"digests"`
	Event   []byte            `json:"event,omitempty"`
}

// Response is the answer. Error is nil on success.
type Response struct {
	Error *Error `json:"error,omitempty"`
	// PCRs (OpPCRs): bank name -> PCR index (decimal) -> hex value.
	PCRs map[string]map[string]string `json:"pcrs,omitempty"`
	// Version (OpPCRs): "1.2" or "2.0".
	Version string `json:"version,omitempty"`
	Log     []byte `json:"log,omitempty"`
	// Reset (OpBoot): whether this request reset the TPM (false when
	// the boot had been reset already, e.g. a retried request).
	Reset    bool      `json:"reset,omitempty"`
	Bindings []Binding `json:"bindings,omitempty"`
}

// Binding is one vTPM as vtpmback sees it.
type Binding struct {
	UUID  string `json:"uuid"`
	Domid uint32 `json:"domid"`
	// Boot counts the resets vtpmback did for this vTPM; a restore or a
	// soft reset keeps it.
	Boot uint64 `json:"boot"`
	// State: "running", "dead" (its swtpm died under the domain),
	// "stopped".
	State string `json:"state"`
	// Measured: the loader measured this boot (OpBoot).
	Measured bool `json:"measured,omitempty"`
}

// Error codes on the wire; each has a sentinel below for errors.Is.
const (
	CodeBadRequest    = "bad-request"
	CodeDenied        = "denied"
	CodeUnknownVTPM   = "unknown-vtpm"
	CodeBusy          = "busy"
	CodeAlreadyBooted = "already-measured"
	CodeTPMDead       = "tpm-dead"
	CodeTPM           = "tpm-error"
	CodeInternal      = "internal"
)

// Error is a refused or failed request, from the wire.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return fmt.Sprintf("vtpmback: %s (%s)", e.Message, e.Code) }

// Is makes errors.Is(err, ErrBusy) and the like work on a decoded Error.
func (e *Error) Is(target error) bool {
	s, ok := target.(sentinel)
	return ok && string(s) == e.Code
}

type sentinel string

func (s sentinel) Error() string { return "vtpmback: " + string(s) }

// Sentinels for errors.Is, one per code.
var (
	ErrBadRequest    error = sentinel(CodeBadRequest)
	ErrDenied        error = sentinel(CodeDenied)
	ErrUnknownVTPM   error = sentinel(CodeUnknownVTPM)
	ErrBusy          error = sentinel(CodeBusy)
	ErrAlreadyBooted error = sentinel(CodeAlreadyBooted)
	ErrTPMDead       error = sentinel(CodeTPMDead)
	ErrTPM           error = sentinel(CodeTPM)
	ErrInternal      error = sentinel(CodeInternal)
)

// Errorf makes an Error with a code; handlers return it so the client
// sees the code. Any other error becomes CodeInternal.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// uuidRE is what libxl writes (LIBXL_UUID_FMT): lower-case hex.
var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// ValidUUID says whether s may name a vTPM (and so become a path).
func ValidUUID(s string) bool { return uuidRE.MatchString(s) }

// Check validates a request's shape before any handler sees it.
func (r *Request) Check() error {
	needUUID := true
	switch r.Op {
	case OpBoot, OpPutLog:
		if r.Domid == nil {
			return Errorf(CodeBadRequest, "%s needs a domid", r.Op)
		}
	case OpPCRs, OpGetLog:
	case OpStatus:
		needUUID = false
	default:
		return Errorf(CodeBadRequest, "unknown op %q", r.Op)
	}
	if (needUUID || r.UUID != "") && !ValidUUID(r.UUID) {
		return Errorf(CodeBadRequest, "uuid %q is not a lower-case UUID", r.UUID)
	}
	if r.Domid != nil && (*r.Domid == 0 || *r.Domid >= 0x7ff0) {
		// DOMID_FIRST_RESERVED is 0x7ff0 (xen/include/public/xen.h);
		// domain 0 has no vtpm frontend.
		return Errorf(CodeBadRequest, "domid %d is not a guest's", *r.Domid)
	}
	if len(r.Measurements) > MaxMeasurements {
		return Errorf(CodeBadRequest, "%d measurements, at most %d", len(r.Measurements), MaxMeasurements)
	}
	for i, m := range r.Measurements {
		if m.PCR < 0 || m.PCR > 23 {
			return Errorf(CodeBadRequest, "measurement %d: PCR %d outside 0..23", i, m.PCR)
		}
		if len(m.Digests) == 0 {
			return Errorf(CodeBadRequest, "measurement %d: no digests", i)
		}
		if len(m.Event) > MaxEventData {
			return Errorf(CodeBadRequest, "measurement %d: %d bytes of event data, at most %d", i, len(m.Event), MaxEventData)
		}
	}
	for _, p := range r.PCRs {
		if p < 0 || p > 23 {
			return Errorf(CodeBadRequest, "PCR %d outside 0..23", p)
		}
	}
	if len(r.Log) > MaxLog {
		return Errorf(CodeBadRequest, "event log of %d bytes, at most %d", len(r.Log), MaxLog)
	}
	if r.Op != OpPutLog && r.Log != nil {
		return Errorf(CodeBadRequest, "%s takes no log", r.Op)
	}
	return nil
}

// asError turns a handler's error into a wire Error.
func asError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: CodeInternal, Message: err.Error()}
}
