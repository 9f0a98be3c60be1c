package tpmback

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// TPM runs one command and returns its response.
type TPM interface {
	Transmit(cmd []byte) ([]byte, error)
	Close() error
}

// Handle does what the page's state asks, once: run a submitted command
// (or refuse a malformed one), acknowledge a cancel. notify says the
// state changed and the frontend must be told. err describes a refused
// request or a TPM failure; the page is consistent either way.
func Handle(page []byte, tpm TPM) (notify bool, err error) {
	if err := checkPage(page); err != nil {
		return false, err
	}
	// The header is read once: the state that picks what to do is the
	// state the request is checked against.
	h := loadHeader(page)
	switch h.state {
	case StateSubmit:
		req, err := parseRequest(page, h)
		if err != nil {
			Refuse(page)
			return true, fmt.Errorf("refused: %w", err)
		}
		rsp, err := tpm.Transmit(req.Command)
		if err != nil {
			Refuse(page)
			return true, fmt.Errorf("TPM: %w", err)
		}
		// A cancel that came in while the TPM worked is answered with
		// the finished command, as tpmif.h allows.
		return true, WriteResponse(page, rsp)
	case StateCancel:
		Refuse(page)
		return true, nil
	}
	return false, nil
}

// maxResponse bounds what is read from the TPM socket: more than a page
// cannot be passed on anyway, but it must be read to stay in step.
const maxResponse = 1 << 16

// SocketTPM is a TPM on a stream: an swtpm --server socket.
//
// A stream carries no request ids: the only thing that pairs a response
// with its command is that it is the next one on the stream. After a
// command fails half-way (a timeout, a response too large to read, a
// short read), the stream may still hold that command's answer, or the
// rest of it, and the next command would read it as its own. So a
// failed connection is never used again: Transmit closes it and, without
// Dial, fails every later command saying why.
type SocketTPM struct {
	C net.Conn
	// Timeout bounds one command (0: none). swtpm answers in
	// milliseconds; a TPM 2.0 key generation can take seconds.
	Timeout time.Duration
	// Dial, if set, opens a new connection to the same TPM after a
	// failed command (swtpm accepts the next client once the old one
	// is closed, and answers a command only on the connection it came
	// on). Only the TPM's owner can know the socket still leads to the
	// same TPM, not a new one started in its place; DialSocket leaves it
	// nil.
	Dial func() (net.Conn, error)

	mu     sync.Mutex // guards C against Close during a redial
	broken error      // why C was given up; nil while it is in step
	closed bool
}

// ErrAbandoned is a command refused because an earlier one failed on the
// same connection and no new one could be made.
var ErrAbandoned = errors.New("TPM connection abandoned after a failed command (its answer could still arrive and be taken for the next command's)")

// errTPMClosed is a command after Close.
var errTPMClosed = errors.New("TPM connection closed")

// DialSocket connects to an swtpm server socket (unix path).
func DialSocket(path string) (*SocketTPM, error) {
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &SocketTPM{C: c, Timeout: 2 * time.Minute}, nil
}

// conn gives the connection to use: the current one if it is in step, a
// new one from Dial if not.
func (s *SocketTPM) conn() (net.Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errTPMClosed
	}
	if s.broken == nil {
		return s.C, nil
	}
	if s.Dial == nil {
		return nil, fmt.Errorf("%w: %v", ErrAbandoned, s.broken)
	}
	c, err := s.Dial()
	if err != nil {
		return nil, fmt.Errorf("%w: %v; new connection: %v", ErrAbandoned, s.broken, err)
	}
	s.C, s.broken = c, nil
	return c, nil
}

// abandon closes c, which failed with why, for good.
func (s *SocketTPM) abandon(c net.Conn, why error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c.Close()
	if s.C == c {
		s.broken = why
	}
}

// Transmit sends cmd and reads one response, framed by its size field.
func (s *SocketTPM) Transmit(cmd []byte) ([]byte, error) {
	c, err := s.conn()
	if err != nil {
		return nil, err
	}
	rsp, err := roundTrip(c, cmd, s.Timeout)
	if err != nil {
		s.abandon(c, err)
		return nil, err
	}
	return rsp, nil
}

func roundTrip(c net.Conn, cmd []byte, timeout time.Duration) ([]byte, error) {
	if timeout > 0 {
		if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
			return nil, fmt.Errorf("set deadline: %w", err)
		}
	}
	if _, err := c.Write(cmd); err != nil {
		return nil, fmt.Errorf("send command: %w", err)
	}
	var hdr [tpmHeaderSize]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return nil, fmt.Errorf("read response header: %w", err)
	}
	n := binary.BigEndian.Uint32(hdr[2:6])
	if n < tpmHeaderSize || n > maxResponse {
		return nil, fmt.Errorf("response size %d (want %d to %d)", n, tpmHeaderSize, maxResponse)
	}
	rsp := make([]byte, n)
	copy(rsp, hdr[:])
	if _, err := io.ReadFull(c, rsp[tpmHeaderSize:]); err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	return rsp, nil
}

// Close closes the socket; swtpm then accepts the next client. A
// Transmit in flight fails; later ones fail at once.
func (s *SocketTPM) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.broken != nil {
		return nil // abandon closed it
	}
	return s.C.Close()
}

// Channel is the frontend's shared page and event channel, mapped and
// bound.
type Channel interface {
	Page() []byte
	Notify() error
	// Wait blocks until the frontend notifies, re-arming the channel
	// before it returns; after Interrupt it returns ErrClosed.
	Wait() error
	// Interrupt ends a Wait, now or to come; it may be called while
	// Serve runs.
	Interrupt()
	// Close unbinds and unmaps, once Serve has returned: the page must
	// not vanish under it.
	Close() error
}

// ErrClosed is Channel.Wait's error once the channel is interrupted.
var ErrClosed = errors.New("tpmback: channel closed")

// Serve answers the frontend until ch is closed, reporting each refused
// request or TPM failure to logf. It handles the page once before the
// first wait: the frontend may have submitted before we were bound, and
// that notification went nowhere.
func Serve(ch Channel, tpm TPM, logf func(string, ...any)) error {
	page := ch.Page()
	for {
		notify, err := Handle(page, tpm)
		if err != nil {
			logf("%v", err)
		}
		if notify {
			if err := ch.Notify(); err != nil {
				return err
			}
		}
		if err := ch.Wait(); err != nil {
			if errors.Is(err, ErrClosed) {
				return nil
			}
			return err
		}
	}
}
