package eventlog

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/vtpmboot/vtpmboot/pcrbank"
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
	alg  pcrbank.Alg // for digests; 0 otherwise
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
// EV_NO_ACTION event carrying the "Spec ID Event03" structure. Every error
// wraps ErrMalformed and names the byte offset of the problem.
//
// Memory is bounded by the input: Parse walks the log twice, first only
// to validate it and count events and digests, then to fill slices of
// exactly that size, whose digests and data point into one copy of b. So a
// log packed with empty events costs a fixed small multiple of its size
// (see TestParseAllocationBounded) instead of a map and two small
// allocations per event.
func Parse(b []byte) (*Log, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrMalformed)
	}
	var n counts
	if _, err := parseLog(b, &n, nil); err != nil {
		return nil, err
	}
	fill := &slabs{events: make([]Event, 0, n.events), digests: make([]Digest, 0, n.digests)}
	return parseLog(bytes.Clone(b), nil, fill)
}

// counts is what the first pass of Parse learns.
type counts struct{ events, digests int }

// slabs are the second pass's preallocated storage.
type slabs struct {
	events  []Event
	digests []Digest
}

// parseLog is one pass over b: counting (n != nil) or filling (s != nil).
// While counting, event digests go to a scratch slice reused per event.
func parseLog(b []byte, n *counts, s *slabs) (*Log, error) {
	c := &cursor{b: b}
	var scratch [MaxDigests]Digest
	take := func(d []Digest) []Digest {
		if s == nil {
			n.events++
			n.digests += len(d)
			return nil
		}
		at := len(s.digests)
		s.digests = append(s.digests, d...)
		return s.digests[at:len(s.digests):len(s.digests)]
	}
	add := func(l *Log, e Event) {
		if s != nil {
			l.UntrustedEvents = append(l.UntrustedEvents, e)
		}
	}
	first, err := parseSHA1Event(c, 0, scratch[:0])
	if err != nil {
		return nil, err
	}
	var l *Log
	var algs []specAlg
	if first.Type == EVNoAction && bytes.HasPrefix(first.Data, specIDSignature[:]) {
		if l, algs, err = parseCryptoAgileHeader(c, first); err != nil {
			return nil, err
		}
	} else {
		l = &Log{Format: SHA1Log, Algs: []pcrbank.Alg{pcrbank.SHA1}}
	}
	if s != nil {
		l.UntrustedEvents = s.events
	}
	if l.Format == SHA1Log {
		first.Digests = take(first.Digests)
		add(l, first)
	}
	for i := 1; c.left() > 0; i++ {
		var e Event
		if l.Format == SHA1Log {
			e, err = parseSHA1Event(c, i, scratch[:0])
		} else {
			e, err = parseEvent2(c, i, algs, scratch[:0])
		}
		if err != nil {
			return nil, err
		}
		e.Digests = take(e.Digests)
		add(l, e)
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
	if pcr >= pcrbank.NumPCRs {
		return 0, 0, c.errf(start, "event %d: PCR index %d out of range 0..%d", n, pcr, pcrbank.NumPCRs-1)
	}
	if typ, err = c.u32(field{n, "type", 0}); err != nil {
		return 0, 0, err
	}
	return pcr, typ, nil
}

func parseSHA1Event(c *cursor, n int, d []Digest) (Event, error) {
	pcr, typ, err := parseEventHeader(c, n)
	if err != nil {
		return Event{}, err
	}
	digest, err := c.bytes(20, field{n, "digest", pcrbank.SHA1})
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
		Digests: append(d, Digest{Alg: pcrbank.SHA1, Value: digest[:20:20]}),
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
	// Parse's second pass runs over its own copy of the log, so this
	// does not alias the caller's buffer; the capacity is clipped so an
	// append by the caller cannot overwrite the next event.
	return data[:len(data):len(data)], nil
}

func parseCryptoAgileHeader(c *cursor, header Event) (*Log, []specAlg, error) {
	// The header event's data starts after pcr, type, digest and size.
	dataOff := c.off - len(header.Data)
	if header.PCR != 0 {
		return nil, nil, c.errf(0, "Spec ID event is in PCR %d, want 0", header.PCR)
	}
	if !bytes.Equal(header.Digest(pcrbank.SHA1), make([]byte, 20)) {
		return nil, nil, c.errf(8, "Spec ID event digest is not zero")
	}
	// Over the header's bytes only, at their place in the log, so offsets
	// in errors are absolute and the header cannot read past its size.
	algs, err := parseSpecID(&cursor{b: c.b[:c.off], off: dataOff})
	if err != nil {
		return nil, nil, err
	}
	l := &Log{Format: CryptoAgile}
	for _, a := range algs {
		if ta := pcrbank.Alg(a.id); ta.Valid() {
			l.Algs = append(l.Algs, ta)
		}
	}
	pcrbank.SortAlgs(l.Algs)
	return l, algs, nil
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
		if want := pcrbank.Alg(id).Size(); want != 0 && int(size) != want {
			return nil, errf(at, "%v digest size %d, want %d", pcrbank.Alg(id), size, want)
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

func parseEvent2(c *cursor, n int, algs []specAlg, d []Digest) (Event, error) {
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
		v, err := c.bytes(size, field{n, "digest", pcrbank.Alg(id)})
		if err != nil {
			return Event{}, err
		}
		if pcrbank.Alg(id).Valid() {
			d = append(d, Digest{Alg: pcrbank.Alg(id), Value: v[:len(v):len(v)]})
		}
	}
	data, err := eventData(c, n)
	if err != nil {
		return Event{}, err
	}
	return Event{PCR: int(pcr), Type: typ, Digests: d, Data: data}, nil
}
