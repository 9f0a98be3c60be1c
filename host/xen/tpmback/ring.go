// Package tpmback is the backend half of Xen's vTPM protocol, version 2
// (xen/include/public/io/tpmif.h), as Linux's xen-tpmfront speaks it: one
// shared page, struct tpmif_shared_page at its start and the TPM packet
// after it, and a state byte the two ends pass back and forth. It serves
// the frontend's commands from any TPM transport (an swtpm socket), and
// drives the xenbus handshake (device.go).
//
// Every frontend is taken for hostile: it writes its page and its
// xenstore nodes as it likes, while we read them. What it can do to dom0
// and to other guests is bounded: the page is read once, by atomic words,
// into our memory and checked there (ring.go); the TPM opened and the
// domain mapped come from the backend nodes the toolstack writes, never
// the frontend's; a frontend's watch events cost a few reads of its own
// device and coalesce in the store client; connects and teardowns run
// outside the backend's lock; each device's log lines are rate-limited;
// a TPM connection that failed mid-command is never used again
// (SocketTPM).
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

// The shared page is guest memory: the frontend can change any byte of
// it at any moment. Every access here is one atomic 32-bit load or store
// (the header fields and the packet alike), so each byte is read exactly
// once into our own memory and checked there, and the race detector can
// hold the fuzz targets (which flip the page from another goroutine) to
// that: a plain access that slipped in would be reported as a race. The
// page is page-aligned when mapped (gntdev mmap) and the packet starts at
// offset 8, so every word is aligned.

func wordAt(page []byte, off int) *uint32 { return (*uint32)(unsafe.Pointer(&page[off])) }

// loadShared copies n bytes at off (a multiple of 4) out of the page.
func loadShared(page []byte, off, n int) []byte {
	words := (n + 3) / 4
	b := make([]byte, words*4)
	for i := range words {
		binary.LittleEndian.PutUint32(b[4*i:], atomic.LoadUint32(wordAt(page, off+4*i)))
	}
	return b[:n]
}

// storeShared copies b onto the page at off (a multiple of 4); the bytes
// after b up to the next word boundary are zeroed, which stays inside the
// page since off+len(b) <= PageSize.
func storeShared(page []byte, off int, b []byte) {
	var w [4]byte
	for i := 0; i < len(b); i += 4 {
		w = [4]byte{}
		copy(w[:], b[i:])
		atomic.StoreUint32(wordAt(page, off+i), binary.LittleEndian.Uint32(w[:]))
	}
}

// header is the page's header as read once: the length word and the
// state word (state, locality, pad, nr_extra_pages).
type header struct {
	length uint32
	state  uint8
	loc    uint8
	nExtra uint8
}

func loadHeader(page []byte) header {
	// The state word first, then the length: xen-tpmfront writes the
	// packet and its length, then (after a barrier) the state
	// (vtpm_send: shr->length = count; barrier(); shr->state = SUBMIT),
	// so a length read after seeing SUBMIT is that packet's. Read the
	// other way round, a look at the page that races the frontend's
	// writes (the look Serve takes before its first wait) pairs a fresh
	// SUBMIT with the previous length.
	w := atomic.LoadUint32(word(page))
	length := atomic.LoadUint32(wordAt(page, 0))
	return header{length: length, state: uint8(w), loc: uint8(w >> 8), nExtra: uint8(w >> 24)}
}

func checkPage(page []byte) error {
	if len(page) < PageSize {
		return fmt.Errorf("shared page of %d bytes", len(page))
	}
	if uintptr(unsafe.Pointer(&page[0]))%4 != 0 {
		return errors.New("shared page is not 4-byte aligned")
	}
	return nil
}

// ParseRequest reads the command the frontend submitted. It copies the
// bytes out before checking them, so what is checked is what is sent.
func ParseRequest(page []byte) (Request, error) {
	if err := checkPage(page); err != nil {
		return Request{}, err
	}
	return parseRequest(page, loadHeader(page))
}

// parseRequest reads the packet a header (already read) describes.
func parseRequest(page []byte, h header) (Request, error) {
	if h.state != StateSubmit {
		return Request{}, fmt.Errorf("%w (state %d)", ErrState, h.state)
	}
	if h.nExtra != 0 {
		return Request{}, fmt.Errorf("%w: %d", ErrExtraPages, h.nExtra)
	}
	if h.length < tpmHeaderSize || h.length > MaxPacket {
		return Request{}, fmt.Errorf("%w: %d bytes (want %d to %d)", ErrLength, h.length, tpmHeaderSize, MaxPacket)
	}
	cmd := loadShared(page, headerSize, int(h.length))
	// The TPM's own size field must agree, or the TPM would read past
	// (or short of) what the frontend meant.
	if n := binary.BigEndian.Uint32(cmd[2:6]); n != h.length {
		return Request{}, fmt.Errorf("%w: page says %d bytes, the TPM header %d", ErrLength, h.length, n)
	}
	return Request{Locality: h.loc, Command: cmd}, nil
}

// word is the 32-bit word at offset 4 (state, locality, pad,
// nr_extra_pages), accessed atomically so the state change is ordered
// after the data it publishes.
func word(page []byte) *uint32 { return wordAt(page, 4) }

// State reads the page's state byte.
func State(page []byte) uint8 { return uint8(atomic.LoadUint32(word(page))) }

// casTries bounds setState's compare-and-swap loop. The word is
// guest-writable: a frontend that rewrites locality, pad or
// nr_extra_pages in a loop on another CPU could make every swap fail
// and hold a dom0 goroutine spinning for as long as it likes.
const casTries = 64

// cas is atomic.CompareAndSwapUint32; a test replaces it to play a
// frontend that wins every race.
var cas = atomic.CompareAndSwapUint32

// setState publishes state, keeping the other three bytes if the
// frontend lets us. After casTries lost races it stores the word
// outright: the bytes it may overwrite are the frontend's own, which it
// only writes (xen-tpmfront's vtpm_send) while the page is its to write,
// so only a frontend racing itself loses anything.
func setState(page []byte, state uint8) {
	w := word(page)
	for range casTries {
		old := atomic.LoadUint32(w)
		if cas(w, old, old&^0xff|uint32(state)) {
			return
		}
	}
	atomic.StoreUint32(w, atomic.LoadUint32(w)&^0xff|uint32(state))
}

// WriteResponse puts rsp on the page and sets state Finish, in that
// order. A response that does not fit is refused: the page is left Idle
// (the frontend reads a cancel) rather than truncated.
func WriteResponse(page, rsp []byte) error {
	if err := checkPage(page); err != nil {
		return err
	}
	if len(rsp) < tpmHeaderSize || len(rsp) > MaxPacket {
		setState(page, StateIdle)
		return fmt.Errorf("%w: TPM response of %d bytes (want %d to %d)", ErrLength, len(rsp), tpmHeaderSize, MaxPacket)
	}
	storeShared(page, headerSize, rsp)
	atomic.StoreUint32(wordAt(page, 0), uint32(len(rsp)))
	setState(page, StateFinish)
	return nil
}

// Refuse sets state Idle: to the frontend, a cancelled command
// (xen-tpmfront's vtpm_recv returns -ECANCELED).
func Refuse(page []byte) { setState(page, StateIdle) }
