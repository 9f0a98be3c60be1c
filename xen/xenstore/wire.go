// Package xenstore is a client of the Xen store: the wire protocol of
// xen/include/public/io/xs_wire.h over /dev/xen/xenbus (any domain's
// kernel) or xenstored's Unix socket (dom0). It does what a backend needs:
// read, write, list, remove, and watches.
package xenstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Message types (enum xsd_sockmsg_type).
const (
	typeDirectory  = 1
	typeRead       = 2
	typeWatch      = 4
	typeUnwatch    = 5
	typeWrite      = 11
	typeRm         = 13
	typeWatchEvent = 15
	typeError      = 16
)

// PayloadMax is XENSTORE_PAYLOAD_MAX: the store refuses longer messages,
// and a reply claiming more is corrupt.
const PayloadMax = 4096

const headerSize = 16

// Msg is one message: struct xsd_sockmsg and its payload.
type Msg struct {
	Type, ReqID, TxID uint32
	Payload           []byte
}

// ErrTooLong is a message over PayloadMax.
var ErrTooLong = errors.New("xenstore: message longer than XENSTORE_PAYLOAD_MAX")

// ReadMsg reads one message. The length is checked before anything is
// allocated, so a corrupt stream cannot make it allocate gigabytes.
func ReadMsg(r io.Reader) (Msg, error) {
	var h [headerSize]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return Msg{}, err
	}
	m := Msg{
		Type:  binary.LittleEndian.Uint32(h[0:]),
		ReqID: binary.LittleEndian.Uint32(h[4:]),
		TxID:  binary.LittleEndian.Uint32(h[8:]),
	}
	n := binary.LittleEndian.Uint32(h[12:])
	if n > PayloadMax {
		return Msg{}, fmt.Errorf("%w: %d bytes", ErrTooLong, n)
	}
	m.Payload = make([]byte, n)
	if _, err := io.ReadFull(r, m.Payload); err != nil {
		return Msg{}, fmt.Errorf("xenstore: truncated message: %w", err)
	}
	return m, nil
}

// Marshal encodes m (the xenstore wire is host-endian: little on x86).
func (m Msg) Marshal() ([]byte, error) {
	if len(m.Payload) > PayloadMax {
		return nil, fmt.Errorf("%w: %d bytes", ErrTooLong, len(m.Payload))
	}
	b := make([]byte, headerSize+len(m.Payload))
	binary.LittleEndian.PutUint32(b[0:], m.Type)
	binary.LittleEndian.PutUint32(b[4:], m.ReqID)
	binary.LittleEndian.PutUint32(b[8:], m.TxID)
	binary.LittleEndian.PutUint32(b[12:], uint32(len(m.Payload)))
	copy(b[headerSize:], m.Payload)
	return b, nil
}

// strings splits a payload of NUL-terminated strings (a directory
// listing, a watch event); a last string without its NUL is kept.
func splitStrings(p []byte) []string {
	p = bytes.TrimSuffix(p, []byte{0})
	if len(p) == 0 {
		return nil
	}
	parts := bytes.Split(p, []byte{0})
	out := make([]string, len(parts))
	for i, s := range parts {
		out[i] = string(s)
	}
	return out
}

// WatchEvent is an XS_WATCH_EVENT: Path changed (or is the watched path
// itself, right after the watch is set), Token is the watch's.
type WatchEvent struct {
	Path, Token string
	// Overflow is set on an event that stands for events the client
	// dropped (Path and Token are empty): whatever the watches cover may
	// have changed.
	Overflow bool
}

func parseWatchEvent(p []byte) (WatchEvent, error) {
	s := splitStrings(p)
	if len(s) < 2 {
		return WatchEvent{}, fmt.Errorf("xenstore: watch event %q: want path and token", p)
	}
	return WatchEvent{Path: s[0], Token: s[1]}, nil
}

// Error is an XS_ERROR reply: the store's errno name (ENOENT, EACCES...).
type Error struct {
	Op, Path, Errno string
}

func (e *Error) Error() string { return fmt.Sprintf("xenstore %s %s: %s", e.Op, e.Path, e.Errno) }

// Is makes errors.Is(err, ErrNotExist) true for ENOENT.
func (e *Error) Is(target error) bool { return target == ErrNotExist && e.Errno == "ENOENT" }

// ErrNotExist matches a reply of ENOENT.
var ErrNotExist = errors.New("xenstore: no such path")

// validPath refuses what the store would refuse anyway, before sending:
// a NUL would split the request into different strings.
func validPath(p string) error {
	if p == "" || len(p) > 3072 || bytes.IndexByte([]byte(p), 0) >= 0 {
		return fmt.Errorf("xenstore: invalid path %q", p)
	}
	return nil
}
