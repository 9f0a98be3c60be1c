// Package swtpm is vtpmboot's one owner of swtpm's wire formats on the
// host: the control channel (client side), the TPM Startup command
// vtpmback sends after a reset, and starting and provisioning swtpm
// processes (swtpm_setup with vtpmboot's own certificate authority).
//
// The control channel's format is swtpm's include/swtpm/tpm_ioctl.h
// ("Commands used by the non-CUSE TPMs ... All messages contain
// big-endian data"): a request is a 32-bit command code followed by the
// request half of the command's ptm_* union; a response is the response
// half. swtpm's ctrlchannel_process_fd (src/swtpm/ctrlchannel.c) reads a
// request with a single read(2), so a request goes out in one write.
package swtpm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Control command codes (tpm_ioctl.h, the CMD_* enum).
const (
	cmdGetCapability = 0x01
	cmdInit          = 0x02
	cmdShutdown      = 0x03
	cmdStoreVolatile = 0x0a
	cmdStop          = 0x0e
)

// Capability bits returned by CMD_GET_CAPABILITY (tpm_ioctl.h PTM_CAP_*).
const (
	CapInit          uint64 = 1
	CapShutdown      uint64 = 1 << 1
	CapStoreVolatile uint64 = 1 << 6
	CapGetStateBlob  uint64 = 1 << 8
	CapSetStateBlob  uint64 = 1 << 9
	CapStop          uint64 = 1 << 10
)

// initFlagDeleteVolatile is PTM_INIT_FLAG_DELETE_VOLATILE: CMD_INIT
// discards the volatile state file instead of resuming from it, which is
// what a power cycle does to a physical TPM.
const initFlagDeleteVolatile = 1 << 0

// ResultError is a control command that swtpm answered with a nonzero
// TPM result code (ptm_res).
type ResultError struct {
	Command string
	Code    uint32
}

func (e *ResultError) Error() string {
	return fmt.Sprintf("swtpm control %s: TPM result 0x%x", e.Command, e.Code)
}

// ErrProtocol marks a control-channel answer that is not what the
// protocol allows (short, or the connection closed mid-answer).
var ErrProtocol = errors.New("swtpm control channel protocol error")

// Ctrl is a connection to one swtpm's control channel. swtpm serves one
// control client at a time: whoever holds a Ctrl is that swtpm's owner.
// Its methods are safe for concurrent use (one command at a time).
type Ctrl struct {
	mu sync.Mutex
	c  net.Conn
	// Timeout bounds one command. CMD_INIT can take a while: it loads the
	// TPM's state (libtpms may run self tests).
	Timeout time.Duration
}

// DialCtrl connects to a control channel listening on a unix socket
// (swtpm --ctrl type=unixio,path=PATH).
func DialCtrl(path string) (*Ctrl, error) {
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("connect to swtpm control channel %s: %w", path, err)
	}
	return NewCtrl(c), nil
}

// NewCtrl speaks the control protocol on an established connection.
func NewCtrl(c net.Conn) *Ctrl { return &Ctrl{c: c, Timeout: 30 * time.Second} }

// Close closes the connection; swtpm then accepts the next control client.
func (c *Ctrl) Close() error { return c.c.Close() }

// roundTrip sends cmd with body and reads exactly n response bytes. A
// failure leaves the connection out of step, so it is closed: the caller
// dials again rather than read a previous command's answer.
func (c *Ctrl) roundTrip(name string, cmd uint32, body []byte, n int) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	msg := make([]byte, 4+len(body))
	binary.BigEndian.PutUint32(msg, cmd)
	copy(msg[4:], body)
	if c.Timeout > 0 {
		c.c.SetDeadline(time.Now().Add(c.Timeout))
		defer c.c.SetDeadline(time.Time{})
	}
	if _, err := c.c.Write(msg); err != nil {
		c.c.Close()
		return nil, fmt.Errorf("swtpm control %s: send: %w", name, err)
	}
	rsp := make([]byte, n)
	if got, err := io.ReadFull(c.c, rsp); err != nil {
		c.c.Close()
		// swtpm answers a request it cannot parse with a bare 4-byte
		// result (err_bad_input in ctrlchannel.c); a longer answer cut
		// short is that or a dying swtpm.
		if got == 4 && n > 4 {
			if code := binary.BigEndian.Uint32(rsp); code != 0 {
				return nil, &ResultError{Command: name, Code: code}
			}
		}
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("swtpm control %s: %d of %d answer bytes: %w", name, got, n, ErrProtocol)
		}
		return nil, fmt.Errorf("swtpm control %s: read answer: %w", name, err)
	}
	return rsp, nil
}

// result runs a command whose answer is a ptm_res alone.
func (c *Ctrl) result(name string, cmd uint32, body []byte) error {
	rsp, err := c.roundTrip(name, cmd, body, 4)
	if err != nil {
		return err
	}
	if code := binary.BigEndian.Uint32(rsp); code != 0 {
		return &ResultError{Command: name, Code: code}
	}
	return nil
}

// Capabilities returns the PTM_CAP_* bits this swtpm implements.
func (c *Ctrl) Capabilities() (uint64, error) {
	rsp, err := c.roundTrip("GET_CAPABILITY", cmdGetCapability, nil, 8)
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint64(rsp), nil
}

// Init (re)starts the TPM as a power-on does: libtpms is terminated and
// started again from the permanent state. With deleteVolatile, a saved
// volatile state is dropped (a reset: PCRs at their power-on values once
// Startup(CLEAR) is sent); without, the TPM resumes from it (as a
// restore needs; no Startup then).
//
// The flag does not stop a saved volatile state from being loaded:
// swtpm's tpmlib_start (src/swtpm/tpmlib.c) calls TPMLIB_MainInit, which
// reads it, and only then deletes the file. Reset handles that.
func (c *Ctrl) Init(deleteVolatile bool) error {
	var body [4]byte
	if deleteVolatile {
		binary.BigEndian.PutUint32(body[:], initFlagDeleteVolatile)
	}
	return c.result("INIT", cmdInit, body[:])
}

// StoreVolatile writes the TPM's volatile state (PCRs, sessions, loaded
// objects) to the state directory, where a later Init(false) finds it.
func (c *Ctrl) StoreVolatile() error { return c.result("STORE_VOLATILE", cmdStoreVolatile, nil) }

// Stop terminates libtpms without ending the process; Init starts it
// again.
func (c *Ctrl) Stop() error { return c.result("STOP", cmdStop, nil) }

// Shutdown terminates libtpms and makes the swtpm process exit.
func (c *Ctrl) Shutdown() error { return c.result("SHUTDOWN", cmdShutdown, nil) }
