package swtpm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// maxResponse bounds one TPM response read from swtpm's data socket
// (swtpm's own buffer is 4 KiB by default; TPM 2.0 allows up to 64 KiB).
const maxResponse = 1 << 16

// ErrClosed is the error of a Data whose connection was closed after a
// failure or by Close.
var ErrClosed = errors.New("swtpm data connection closed")

// Data is a connection to one swtpm's TPM command socket (swtpm --server
// type=unixio). A failed command closes it: the next response on that
// stream could be the failed command's, so it is never read as another's.
// Safe for concurrent use, one command at a time.
type Data struct {
	mu sync.Mutex // one command at a time
	c  net.Conn
	// closed is atomic so that Close does not wait for a command in
	// flight: closing the socket is what ends it.
	closed  atomic.Bool
	Timeout time.Duration // one command; 0: none
}

// DialData connects to a TPM command socket.
func DialData(path string) (*Data, error) {
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("connect to swtpm %s: %w", path, err)
	}
	return &Data{c: c, Timeout: 2 * time.Minute}, nil
}

// Transmit sends one TPM command and returns its response, framed by the
// response header's size field.
func (d *Data) Transmit(cmd []byte) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed.Load() {
		return nil, ErrClosed
	}
	rsp, err := d.roundTrip(cmd)
	if err != nil {
		d.Close()
	}
	return rsp, err
}

func (d *Data) roundTrip(cmd []byte) ([]byte, error) {
	if d.Timeout > 0 {
		d.c.SetDeadline(time.Now().Add(d.Timeout))
	}
	if _, err := d.c.Write(cmd); err != nil {
		return nil, fmt.Errorf("send TPM command: %w", err)
	}
	var hdr [10]byte
	if _, err := io.ReadFull(d.c, hdr[:]); err != nil {
		return nil, fmt.Errorf("read TPM response header: %w", err)
	}
	n := binary.BigEndian.Uint32(hdr[2:6])
	if n < 10 || n > maxResponse {
		return nil, fmt.Errorf("TPM response size %d outside 10..%d", n, maxResponse)
	}
	rsp := make([]byte, n)
	copy(rsp, hdr[:])
	if _, err := io.ReadFull(d.c, rsp[10:]); err != nil {
		return nil, fmt.Errorf("read TPM response: %w", err)
	}
	return rsp, nil
}

// Close closes the connection, ending a command in flight; swtpm then
// accepts the next client.
func (d *Data) Close() error {
	if d.closed.Swap(true) {
		return nil
	}
	return d.c.Close()
}

// Transmitter runs one TPM command.
type Transmitter interface {
	Transmit(cmd []byte) ([]byte, error)
}

// TPM versions as Startup sees them.
const (
	tag12Command  = 0x00c1
	tag12Response = 0x00c4
	tag20NoSess   = 0x8001
)

// Response codes Startup accepts as "already started".
const (
	rc12InvalidPostInit = 0x26  // TPM_INVALID_POSTINIT
	rc20Initialize      = 0x100 // TPM_RC_INITIALIZE
)

var (
	// TPM2_Startup(TPM_SU_CLEAR): Part 3 §9.3.
	startup20 = []byte{0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x44, 0, 0}
	// TPM_Startup(TPM_ST_CLEAR): TPM 1.2 Part 3 §3.2, ordinal 0x99.
	startup12 = []byte{0x00, 0xc1, 0, 0, 0, 12, 0, 0, 0, 0x99, 0, 1}
)

// ErrAlreadyStarted is Startup's error when the TPM had been started
// already: after an Init that loaded a saved volatile state.
var ErrAlreadyStarted = errors.New("TPM already started")

// Startup sends Startup(CLEAR), TPM 2.0 first: a TPM 1.2 answers the 2.0
// command under its own response tag (TPM_BADTAG), and then gets the 1.2
// command. It reports which version answered.
func Startup(t Transmitter) (tpm2 bool, err error) {
	rsp, err := t.Transmit(startup20)
	if err != nil {
		return false, fmt.Errorf("TPM2_Startup: %w", err)
	}
	if binary.BigEndian.Uint16(rsp) == tag20NoSess {
		return true, startupResult("TPM2_Startup", rsp, rc20Initialize)
	}
	if binary.BigEndian.Uint16(rsp) != tag12Response {
		return false, fmt.Errorf("TPM2_Startup: response tag 0x%04x is neither TPM 1.2 nor 2.0", binary.BigEndian.Uint16(rsp))
	}
	rsp, err = t.Transmit(startup12)
	if err != nil {
		return false, fmt.Errorf("TPM_Startup: %w", err)
	}
	return false, startupResult("TPM_Startup", rsp, rc12InvalidPostInit)
}

func startupResult(name string, rsp []byte, already uint32) error {
	switch rc := binary.BigEndian.Uint32(rsp[6:10]); rc {
	case 0:
		return nil
	case already:
		return fmt.Errorf("%s: %w", name, ErrAlreadyStarted)
	default:
		return fmt.Errorf("%s: TPM response code 0x%x", name, rc)
	}
}

// Reset makes the TPM what it is after a power cycle and the firmware's
// Startup(CLEAR): PCRs 0..16 and 23 zero (and libtpms's 17..22 all ones
// on TPM 2.0), no sessions, no loaded objects. CMD_INIT with
// PTM_INIT_FLAG_DELETE_VOLATILE still loads a volatile state saved
// earlier (and only then deletes it, see Init), leaving the TPM started
// with the saved PCRs; Startup then says so, and a second Init, which
// finds no volatile state any more, is the reset.
func Reset(c *Ctrl, t Transmitter) (tpm2 bool, err error) {
	for range 2 {
		if err := c.Init(true); err != nil {
			return false, err
		}
		tpm2, err = Startup(t)
		if !errors.Is(err, ErrAlreadyStarted) {
			return tpm2, err
		}
	}
	return tpm2, fmt.Errorf("reset: %w after deleting the volatile state", err)
}

// ReadWriter turns a Transmitter into the write-a-command,
// read-its-response stream tpmfront.OpenReadWriter speaks, so host-side
// PCR reads and the loader's extends go through the one connection
// vtpmback holds. Closing it does not close t.
func ReadWriter(t Transmitter) io.ReadWriteCloser { return &rw{t: t} }

type rw struct {
	t   Transmitter
	rsp []byte
}

func (r *rw) Write(cmd []byte) (int, error) {
	rsp, err := r.t.Transmit(append([]byte(nil), cmd...))
	if err != nil {
		return 0, err
	}
	r.rsp = rsp
	return len(cmd), nil
}

func (r *rw) Read(p []byte) (int, error) {
	if len(r.rsp) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.rsp)
	r.rsp = r.rsp[n:]
	return n, nil
}

func (r *rw) Close() error { return nil }
