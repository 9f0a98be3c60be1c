package tpmfront

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Tags of TPM 1.2 and 2.0 command and response headers.
const (
	tag12RquCommand = 0x00C1
	tag12RquAuth1   = 0x00C2
	tag12RquAuth2   = 0x00C3
	tag12RspCommand = 0x00C4
	tag12RspAuth1   = 0x00C5
	tag12RspAuth2   = 0x00C6
	tag20NoSessions = 0x8001
	tag20Sessions   = 0x8002
)

const headerSize = 10

// MaxResponse bounds a response. Real TPMs and swtpm answer within 4096
// bytes (TPM_BUFFER_MAX / MAX_RESPONSE_SIZE); the headroom is for vendors
// with larger buffers. A header claiming more is a broken or hostile peer,
// and believing it would make us wait for bytes that never come.
const MaxResponse = 8192

// DefaultTimeout bounds one command on a socket. Extends and PCR reads take
// milliseconds; a TPM that needs longer is wedged, and the stub must say so
// rather than hang the guest's boot forever.
const DefaultTimeout = 30 * time.Second

// deadliner is implemented by net.Conn: only sockets get timeouts. Linux
// TPM character devices are opened blocking (see open_linux.go) and rely
// on the kernel driver's own command timeouts.
type deadliner interface {
	SetDeadline(time.Time) error
}

// conn frames commands and responses over a byte stream. A socket may hand
// a response over in pieces and a character device hands it over whole;
// conn reads the header, then exactly the size it announces, so either way
// one call returns one complete response.
type conn struct {
	mu      sync.Mutex // one command at a time
	rw      io.ReadWriteCloser
	timeout time.Duration
	// closed is separate from mu so Close can interrupt a command that
	// is stuck waiting for a TPM that stopped answering.
	closed atomic.Bool
	buf    [MaxResponse]byte
}

func newConn(rw io.ReadWriteCloser, timeout time.Duration) *conn {
	return &conn{rw: rw, timeout: timeout}
}

// Busy codes: the command was not executed and may simply be sent again.
const (
	rc12Retry     = 0x800
	rc12DoingTest = 0x802
	rc20Retry     = 0x922
	rc20Yielded   = 0x908
	rc20Testing   = 0x90A
)

// maxBusyRetries with a doubling back-off starting at busyBackoff waits
// about four seconds in all before giving the busy code to the caller.
const maxBusyRetries = 11

// busyBackoff is a variable so the fuzz target, which can make a "TPM"
// answer busy forever, does not sleep.
var busyBackoff = time.Millisecond

// Send runs one command and returns its whole response (header included).
// It implements go-tpm's transport.TPM. Transport errors name the command;
// TPM response codes are left for the caller, which knows how to parse
// the rest of the response.
func (c *conn) Send(cmd []byte) ([]byte, error) {
	name := "TPM command"
	if len(cmd) >= headerSize {
		name = commandName(binary.BigEndian.Uint16(cmd), binary.BigEndian.Uint32(cmd[6:]))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return nil, fmt.Errorf("%s: %w", name, ErrClosed)
	}
	for try := 0; ; try++ {
		rsp, err := c.roundTrip(cmd)
		if err != nil {
			if c.closed.Load() {
				err = fmt.Errorf("%w (%v)", ErrClosed, err)
			}
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		rc := binary.BigEndian.Uint32(rsp[6:])
		busy := rc == rc12Retry || rc == rc12DoingTest || rc == rc20Retry || rc == rc20Yielded || rc == rc20Testing
		if !busy || try >= maxBusyRetries {
			return append([]byte(nil), rsp...), nil
		}
		time.Sleep(busyBackoff << try)
	}
}

func (c *conn) roundTrip(cmd []byte) ([]byte, error) {
	if d, ok := c.rw.(deadliner); ok && c.timeout > 0 {
		// *os.File has SetDeadline too, but a TPM character device is
		// opened blocking, outside the poller, and says ErrNoDeadline:
		// it relies on the kernel driver's timeouts, as documented above.
		if err := d.SetDeadline(time.Now().Add(c.timeout)); err != nil && !errors.Is(err, os.ErrNoDeadline) {
			return nil, fmt.Errorf("set deadline: %w", err)
		}
	}
	if _, err := c.rw.Write(cmd); err != nil {
		return nil, fmt.Errorf("send to TPM: %w", err)
	}
	return readResponse(c.rw, c.buf[:])
}

// readResponse reads one response into buf (len MaxResponse).
func readResponse(r io.Reader, buf []byte) ([]byte, error) {
	n := 0
	// One big read first: a character device returns the whole response
	// to one read and, on older kernels, drops whatever a short read left.
	for n < headerSize {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			if n >= headerSize {
				break
			}
			return nil, readErr(err, n)
		}
	}
	size := binary.BigEndian.Uint32(buf[2:])
	if size < headerSize || size > uint32(len(buf)) {
		return nil, fmt.Errorf("TPM response header announces %d bytes (want %d..%d)", size, headerSize, len(buf))
	}
	if n < int(size) {
		m, err := io.ReadFull(r, buf[n:size])
		n += m
		if err != nil {
			return nil, readErr(err, n)
		}
	}
	if n > int(size) {
		// More than one response in flight means we lost track of which
		// answer belongs to which command: never guess.
		return nil, fmt.Errorf("TPM sent %d bytes after a %d-byte response", n-int(size), size)
	}
	return buf[:size], nil
}

func readErr(err error, got int) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("TPM closed the connection after %d bytes of the response: %w", got, io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("read TPM response: %w", err)
}

func (c *conn) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	return c.rw.Close()
}
