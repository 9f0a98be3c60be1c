package eventlog

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/vtpmboot/vtpmboot/tpmfront"
)

// cursor reads little-endian fields and remembers where it is, so every
// error can name the byte offset of the field that is wrong.
type cursor struct {
	b   []byte
	off int
}

func (c *cursor) left() int { return len(c.b) - c.off }

func (c *cursor) errf(at int, format string, args ...any) error {
	return fmt.Errorf("%w: offset %d (0x%x): %s", ErrMalformed, at, at, fmt.Sprintf(format, args...))
}

// field names what a read is for in errors: the event number (-1 for the
// Spec ID header) and field are kept apart so the description is only
// formatted when something is wrong, not for every field of a good log.
type field struct {
	ev   int
	name string
	alg  tpmfront.Alg // for digests; 0 otherwise
}

func (f field) String() string {
	s := f.name
	if f.alg != 0 {
		s = f.alg.String() + " " + s
	}
	if f.ev < 0 {
		return "Spec ID event " + s
	}
	return fmt.Sprintf("event %d %s", f.ev, s)
}

func (c *cursor) bytes(n int, what field) ([]byte, error) {
	if n < 0 || n > c.left() {
		return nil, c.errf(c.off, "%v needs %d bytes, only %d left", what, n, c.left())
	}
	v := c.b[c.off : c.off+n]
	c.off += n
	return v, nil
}

func (c *cursor) u32(what field) (uint32, error) {
	b, err := c.bytes(4, what)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b), nil
}

func (c *cursor) u16(what field) (uint16, error) {
	b, err := c.bytes(2, what)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint16(b), nil
}

func (c *cursor) u8(what field) (uint8, error) {
	b, err := c.bytes(1, what)
	if err != nil {
		return 0, err
	}
	return b[0], nil
}

// specAlg is one {algorithmId, digestSize} of the Spec ID header: the sizes
// let Parse step over digests of algorithms it cannot compute.
type specAlg struct {
	id   uint16
	size int
}

// Parse decodes a SHA-1 or crypto-agile event log, ours or a firmware's.
// The format is told by the first event: a crypto-agile log starts with an
// EV_NO_ACTION event carrying the "Spec ID Event03" structure. Parse never
// allocates more than a small multiple of len(b), and every error wraps
// ErrMalformed and names the byte offset of the problem.
func Parse(b []byte) (*Log, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrMalformed)
	}
	c := &cursor{b: b}
	first, err := parseSHA1Event(c, 0)
	if err != nil {
		return nil, err
	}
	if first.Type == EVNoAction && bytes.HasPrefix(first.Data, specIDSignature[:]) {
		return parseCryptoAgile(c, first)
	}
	l := &Log{Format: SHA1Log, Algs: []tpmfront.Alg{tpmfront.SHA1}, Events: []Event{first}}
	for n := 1; c.left() > 0; n++ {
		e, err := parseSHA1Event(c, n)
		if err != nil {
			return nil, err
		}
		l.Events = append(l.Events, e)
	}
	return l, nil
}

// parseEventHeader reads the PCR index and event type both layouts start
// with.
func parseEventHeader(c *cursor, n int) (pcr, typ uint32, err error) {
	start := c.off
	if pcr, err = c.u32(field{n, "PCR index", 0}); err != nil {
		return 0, 0, err
	}
	if pcr >= tpmfront.NumPCRs {
		return 0, 0, c.errf(start, "event %d: PCR index %d out of range 0..%d", n, pcr, tpmfront.NumPCRs-1)
	}
	if typ, err = c.u32(field{n, "type", 0}); err != nil {
		return 0, 0, err
	}
	return pcr, typ, nil
}

func parseSHA1Event(c *cursor, n int) (Event, error) {
	pcr, typ, err := parseEventHeader(c, n)
	if err != nil {
		return Event{}, err
	}
	digest, err := c.bytes(20, field{n, "digest", tpmfront.SHA1})
	if err != nil {
		return Event{}, err
	}
	data, err := eventData(c, n)
	if err != nil {
		return Event{}, err
	}
	return Event{
		PCR:     int(pcr),
		Type:    typ,
		Digests: tpmfront.Digests{tpmfront.SHA1: bytes.Clone(digest)},
		Data:    data,
	}, nil
}

func eventData(c *cursor, n int) ([]byte, error) {
	at := c.off
	size, err := c.u32(field{n, "data size", 0})
	if err != nil {
		return nil, err
	}
	if size > MaxEventData {
		return nil, c.errf(at, "event %d: data size %d over the %d-byte limit", n, size, MaxEventData)
	}
	data, err := c.bytes(int(size), field{n, "data", 0})
	if err != nil {
		return nil, err
	}
	// A copy, so the Log does not pin or alias the caller's buffer.
	return bytes.Clone(data), nil
}

func parseCryptoAgile(c *cursor, header Event) (*Log, error) {
	// The header event's data starts after pcr, type, digest and size.
	dataOff := c.off - len(header.Data)
	if header.PCR != 0 {
		return nil, c.errf(0, "Spec ID event is in PCR %d, want 0", header.PCR)
	}
	if !bytes.Equal(header.Digests[tpmfront.SHA1], make([]byte, 20)) {
		return nil, c.errf(8, "Spec ID event digest is not zero")
	}
	// Over the header's bytes only, at their place in the log, so offsets
	// in errors are absolute and the header cannot read past its size.
	algs, err := parseSpecID(&cursor{b: c.b[:c.off], off: dataOff})
	if err != nil {
		return nil, err
	}
	l := &Log{Format: CryptoAgile}
	for _, a := range algs {
		if ta := tpmfront.Alg(a.id); ta.Valid() {
			l.Algs = append(l.Algs, ta)
		}
	}
	tpmfront.SortAlgs(l.Algs)
	for n := 1; c.left() > 0; n++ {
		e, err := parseEvent2(c, n, algs)
		if err != nil {
			return nil, err
		}
		l.Events = append(l.Events, e)
	}
	return l, nil
}

// parseSpecID decodes TCG_EfiSpecIDEvent.
func parseSpecID(c *cursor) ([]specAlg, error) {
	errf := func(at int, format string, args ...any) error { return c.errf(at, "Spec ID event: "+format, args...) }
	if _, err := c.bytes(16, field{-1, "signature", 0}); err != nil {
		return nil, err
	}
	if _, err := c.u32(field{-1, "platformClass", 0}); err != nil {
		return nil, err
	}
	at := c.off
	minor, err := c.u8(field{-1, "specVersionMinor", 0})
	if err != nil {
		return nil, err
	}
	major, err := c.u8(field{-1, "specVersionMajor", 0})
	if err != nil {
		return nil, err
	}
	if major != specVersionMajor || minor != specVersionMinor {
		return nil, errf(at, "spec version %d.%d, want %d.%d", major, minor, specVersionMajor, specVersionMinor)
	}
	if _, err := c.u8(field{-1, "specErrata", 0}); err != nil {
		return nil, err
	}
	at = c.off
	un, err := c.u8(field{-1, "uintnSize", 0})
	if err != nil {
		return nil, err
	}
	if un != 1 && un != 2 {
		return nil, errf(at, "uintnSize %d, want 1 or 2", un)
	}
	at = c.off
	num, err := c.u32(field{-1, "numberOfAlgorithms", 0})
	if err != nil {
		return nil, err
	}
	if num == 0 || num > MaxDigests {
		return nil, errf(at, "numberOfAlgorithms %d, want 1..%d", num, MaxDigests)
	}
	algs := make([]specAlg, 0, num)
	for range int(num) {
		at = c.off
		id, err := c.u16(field{-1, "algorithm id", 0})
		if err != nil {
			return nil, err
		}
		size, err := c.u16(field{-1, "algorithm digest size", 0})
		if err != nil {
			return nil, err
		}
		for _, a := range algs {
			if a.id == id {
				return nil, errf(at, "algorithm 0x%04x listed twice", id)
			}
		}
		if want := tpmfront.Alg(id).Size(); want != 0 && int(size) != want {
			return nil, errf(at, "%v digest size %d, want %d", tpmfront.Alg(id), size, want)
		}
		if size == 0 || size > maxDigestSize {
			return nil, errf(at, "algorithm 0x%04x digest size %d, want 1..%d", id, size, maxDigestSize)
		}
		algs = append(algs, specAlg{id: id, size: int(size)})
	}
	at = c.off
	vendor, err := c.u8(field{-1, "vendorInfoSize", 0})
	if err != nil {
		return nil, err
	}
	if int(vendor) != c.left() {
		return nil, errf(at, "vendorInfoSize %d but %d bytes follow", vendor, c.left())
	}
	return algs, nil
}

func parseEvent2(c *cursor, n int, algs []specAlg) (Event, error) {
	pcr, typ, err := parseEventHeader(c, n)
	if err != nil {
		return Event{}, err
	}
	at := c.off
	count, err := c.u32(field{n, "digest count", 0})
	if err != nil {
		return Event{}, err
	}
	if count > MaxDigests || int(count) > len(algs) {
		return Event{}, c.errf(at, "event %d: %d digests, but the Spec ID header lists %d algorithms", n, count, len(algs))
	}
	// No map for digest-less events (EV_NO_ACTION): they are the cheapest
	// to pack into a hostile log.
	var d tpmfront.Digests
	if count > 0 {
		d = make(tpmfront.Digests, count)
	}
	var seen [MaxDigests]uint16
	for i := range int(count) {
		at = c.off
		id, err := c.u16(field{n, "digest algorithm", 0})
		if err != nil {
			return Event{}, err
		}
		for _, s := range seen[:i] {
			if s == id {
				return Event{}, c.errf(at, "event %d: two digests for algorithm 0x%04x", n, id)
			}
		}
		seen[i] = id
		size := -1
		for _, a := range algs {
			if a.id == id {
				size = a.size
			}
		}
		if size < 0 {
			// Without the header's size the rest of the log cannot be found.
			return Event{}, c.errf(at, "event %d: digest algorithm 0x%04x is not in the Spec ID header", n, id)
		}
		v, err := c.bytes(size, field{n, "digest", tpmfront.Alg(id)})
		if err != nil {
			return Event{}, err
		}
		if tpmfront.Alg(id).Valid() {
			d[tpmfront.Alg(id)] = bytes.Clone(v)
		}
	}
	data, err := eventData(c, n)
	if err != nil {
		return Event{}, err
	}
	return Event{PCR: int(pcr), Type: typ, Digests: d, Data: data}, nil
}
