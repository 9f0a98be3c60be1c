// Package tpmback is the backend half of Xen's vTPM protocol, version 2
// (xen/include/public/io/tpmif.h), as Linux's xen-tpmfront speaks it: one
// shared page, struct tpmif_shared_page at its start and the TPM packet
// after it, and a state byte the two ends pass back and forth. It serves
// the frontend's commands from any TPM transport (an swtpm socket), and
// drives the xenbus handshake (device.go).
package tpmback

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"
)

// States of the shared page (enum tpmif_state). The frontend sets
// Submit and Cancel, the backend Idle and Finish.
const (
	StateIdle   = 0 // no contents / vTPM idle / cancel complete
	StateSubmit = 1 // request ready / vTPM working
	StateFinish = 2 // response ready / vTPM idle
	StateCancel = 3 // cancel requested / vTPM working
)

// PageSize is the shared page: the whole of what one grant maps.
const PageSize = 4096

// headerSize is sizeof(struct tpmif_shared_page): u32 length, u8 state,
// u8 locality, u8 pad, u8 nr_extra_pages. The header comment in tpmif.h
// says the grant list starts at 16; both Linux's xen-tpmfront
// (shr_data_offset) and mini-os's tpmback use sizeof, 8, and so do we.
const headerSize = 8

// tpmHeaderSize is the TPM command header: tag u16, size u32, code u32.
const tpmHeaderSize = 10

// MaxPacket is the largest command or response one page carries.
const MaxPacket = PageSize - headerSize

// Errors for a request the backend refuses (the frontend sees a cancel).
var (
	ErrExtraPages = errors.New("request uses extra pages (nr_extra_pages > 0), which this backend does not map")
	ErrLength     = errors.New("bad request length")
	ErrState      = errors.New("page is not in state SUBMIT")
)

// Request is a frontend's command as read from the page.
type Request struct {
	Locality uint8
	// Command is a copy: the frontend may rewrite the page at any time.
	Command []byte
}

// ParseRequest reads the command the frontend submitted. It copies the
// bytes out before checking them, so what is checked is what is sent.
func ParseRequest(page []byte) (Request, error) {
	if len(page) < PageSize {
		return Request{}, fmt.Errorf("shared page of %d bytes", len(page))
	}
	var hdr [headerSize]byte
	copy(hdr[:], page[:headerSize])
	length := binary.LittleEndian.Uint32(hdr[0:])
	state, locality, nExtra := hdr[4], hdr[5], hdr[7]
	if state != StateSubmit {
		return Request{}, fmt.Errorf("%w (state %d)", ErrState, state)
	}
	if nExtra != 0 {
		return Request{}, fmt.Errorf("%w: %d", ErrExtraPages, nExtra)
	}
	if length < tpmHeaderSize || length > MaxPacket {
		return Request{}, fmt.Errorf("%w: %d bytes (want %d to %d)", ErrLength, length, tpmHeaderSize, MaxPacket)
	}
	cmd := make([]byte, length)
	copy(cmd, page[headerSize:headerSize+int(length)])
	// The TPM's own size field must agree, or the TPM would read past
	// (or short of) what the frontend meant.
	if n := binary.BigEndian.Uint32(cmd[2:6]); n != length {
		return Request{}, fmt.Errorf("%w: page says %d bytes, the TPM header %d", ErrLength, length, n)
	}
	return Request{Locality: locality, Command: cmd}, nil
}

// word is the 32-bit word at offset 4 (state, locality, pad,
// nr_extra_pages), accessed atomically so the state change is ordered
// after the data it publishes.
func word(page []byte) *uint32 { return (*uint32)(unsafe.Pointer(&page[4])) }

// State reads the page's state byte.
func State(page []byte) uint8 { return uint8(atomic.LoadUint32(word(page))) }

// setState publishes state, keeping the other three bytes.
func setState(page []byte, state uint8) {
	w := word(page)
	for {
		old := atomic.LoadUint32(w)
		if atomic.CompareAndSwapUint32(w, old, old&^0xff|uint32(state)) {
			return
		}
	}
}

// WriteResponse puts rsp on the page and sets state Finish, in that
// order. A response that does not fit is refused: the page is left Idle
// (the frontend reads a cancel) rather than truncated.
func WriteResponse(page, rsp []byte) error {
	if len(rsp) < tpmHeaderSize || len(rsp) > MaxPacket {
		setState(page, StateIdle)
		return fmt.Errorf("%w: TPM response of %d bytes (want %d to %d)", ErrLength, len(rsp), tpmHeaderSize, MaxPacket)
	}
	copy(page[headerSize:], rsp)
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&page[0])), uint32(len(rsp)))
	setState(page, StateFinish)
	return nil
}

// Refuse sets state Idle: to the frontend, a cancelled command
// (xen-tpmfront's vtpm_recv returns -ECANCELED).
func Refuse(page []byte) { setState(page, StateIdle) }
