package tpmback

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
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
type SocketTPM struct {
	C net.Conn
	// Timeout bounds one command (0: none). swtpm answers in
	// milliseconds; a TPM 2.0 key generation can take seconds.
	Timeout time.Duration
}

// DialSocket connects to an swtpm server socket (unix path).
func DialSocket(path string) (*SocketTPM, error) {
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &SocketTPM{C: c, Timeout: 2 * time.Minute}, nil
}

// Transmit sends cmd and reads one response, framed by its size field.
func (s *SocketTPM) Transmit(cmd []byte) ([]byte, error) {
	if s.Timeout > 0 {
		s.C.SetDeadline(time.Now().Add(s.Timeout))
	}
	if _, err := s.C.Write(cmd); err != nil {
		return nil, err
	}
	var hdr [tpmHeaderSize]byte
	if _, err := io.ReadFull(s.C, hdr[:]); err != nil {
		return nil, fmt.Errorf("read response header: %w", err)
	}
	n := binary.BigEndian.Uint32(hdr[2:6])
	if n < tpmHeaderSize || n > maxResponse {
		return nil, fmt.Errorf("response size %d", n)
	}
	rsp := make([]byte, n)
	copy(rsp, hdr[:])
	if _, err := io.ReadFull(s.C, rsp[tpmHeaderSize:]); err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	return rsp, nil
}

// Close closes the socket; swtpm then accepts the next client.
func (s *SocketTPM) Close() error { return s.C.Close() }

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
