// Package eventlog writes and reads TCG PC Client event logs: the SHA-1
// format of TPM 1.2 (TCG_PCClientPCREvent) and the crypto-agile format of
// TPM 2.0 (a Spec ID Event03 header, then TCG_PCR_EVENT2). The stub prints
// the log of its measurements; pcrsim writes the same log; verifiers parse
// logs, including firmware logs, and replay them into a software bank.
package eventlog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/vtpmboot/vtpmboot/boot/entry"
	"github.com/vtpmboot/vtpmboot/boot/measure"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// Format is the layout of a log.
type Format int

const (
	// SHA1Log is the TPM 1.2 layout: one SHA-1 digest per event, no header.
	SHA1Log Format = iota + 1
	// CryptoAgile is the TPM 2.0 layout: a Spec ID Event03 header naming
	// the banks, then one digest per bank in every event.
	CryptoAgile
)

func (f Format) String() string {
	switch f {
	case SHA1Log:
		return "SHA-1 log"
	case CryptoAgile:
		return "crypto-agile log"
	}
	return fmt.Sprintf("format(%d)", int(f))
}

// Event types (TCG PC Client Platform Firmware Profile, section 10.4.1).
const (
	EVIPL      uint32 = 0x0D
	EVNoAction uint32 = 0x03
)

// FormatFor picks the log layout a TPM of version v expects: Linux and
// every verifier read a TPM 1.2 log as SHA-1 events and a TPM 2.0 log as
// crypto-agile. A software bank gets the crypto-agile layout because only
// that one can carry more than the SHA-1 bank.
func FormatFor(v pcrbank.Version) Format {
	if v == pcrbank.Version12 {
		return SHA1Log
	}
	return CryptoAgile
}

// Event is one log entry.
type Event struct {
	PCR  int
	Type uint32
	// Digests holds the digests of the banks vtpmboot knows, in log
	// order; digests of other algorithms in a firmware log are skipped.
	// A slice, not a map: a map per event made a log of small events cost
	// 20 times its size.
	Digests []Digest
	Data    []byte
}

// Digest is one bank's digest of an event.
type Digest struct {
	Alg   pcrbank.Alg
	Value []byte
}

// Digest returns the event's digest in bank a, or nil.
func (e Event) Digest(a pcrbank.Alg) []byte {
	for _, d := range e.Digests {
		if d.Alg == a {
			return d.Value
		}
	}
	return nil
}

// DigestMap returns the digests as pcrbank.Digests (a new map).
func (e Event) DigestMap() pcrbank.Digests {
	m := make(pcrbank.Digests, len(e.Digests))
	for _, d := range e.Digests {
		m[d.Alg] = d.Value
	}
	return m
}

// Log is a parsed event log.
type Log struct {
	Format Format
	// Algs are the banks the log carries that vtpmboot can compute, in
	// canonical order; for a SHA1Log always [SHA1].
	Algs []pcrbank.Alg
	// UntrustedEvents are the events as parsed: anyone can write a log,
	// so they say nothing about a machine until Verify has replayed them
	// against its PCRs and returned them. Use them unverified only to
	// widen what is read or printed, never to decide. They exclude the
	// Spec ID Event03 header of a crypto-agile log. A SHA-1 log keeps
	// every event, including the EV_NO_ACTION "Spec ID Event00/02" header
	// some TPM 1.2 UEFI firmware writes: it carries no bank list Parse
	// needs, and Replay skips EV_NO_ACTION anyway.
	UntrustedEvents []Event
}

// Limits that keep a hostile log from costing more than its own size. A
// real firmware event is at most a few KiB (EFI variable contents); 1 MiB
// leaves room for anything legitimate.
const (
	MaxEventData = 1 << 20
	// MaxDigests bounds both the Spec ID header's algorithm list and an
	// event's digest count: TPM_ALG_ID defines fewer hash algorithms.
	MaxDigests = 16
	// maxDigestSize bounds a digest size declared for an algorithm we do
	// not know; the largest TCG hash (SHA-512, SHA3-512) is 64 bytes.
	maxDigestSize = 64
)

var specIDSignature = [16]byte{'S', 'p', 'e', 'c', ' ', 'I', 'D', ' ', 'E', 'v', 'e', 'n', 't', '0', '3', 0}

// Spec ID Event03 header values. specErrata: the PFP spec and EDK2
// (TCG_EfiSpecIDEventStruct_SPEC_ERRATA_TPM2) write 0, which is also what
// go-eventlog documents; SeaBIOS writes 2. No parser we know checks it, and
// Parse accepts any value.
const (
	specVersionMinor = 0
	specVersionMajor = 2
	specErrata       = 0
	// uintnSize 2 means UINTN is 64 bits (1 would mean 32).
	uintnSize = 2
)

// Write encodes ms as an event log in format f with banks algs. Every
// measurement must carry exactly the digests of algs: the log has to say
// precisely what was extended. SHA1Log requires algs == [SHA1].
func Write(w io.Writer, f Format, algs []pcrbank.Alg, ms []measure.Measurement) error {
	b, err := Marshal(f, algs, ms)
	if err != nil {
		return err
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("write event log: %w", err)
	}
	return nil
}

// Marshal is Write into a byte slice.
func Marshal(f Format, algs []pcrbank.Alg, ms []measure.Measurement) ([]byte, error) {
	return marshal(f, algs, ms, true)
}

// MarshalEvents encodes ms as events only, without the crypto-agile log's
// Spec ID header: what is appended to an existing log (boot/acpilog) whose
// header already names algs. Digests are written in the order of algs, so
// a caller can follow the existing header's order.
func MarshalEvents(f Format, algs []pcrbank.Alg, ms []measure.Measurement) ([]byte, error) {
	return marshal(f, algs, ms, false)
}

func marshal(f Format, algs []pcrbank.Alg, ms []measure.Measurement, header bool) ([]byte, error) {
	var buf bytes.Buffer
	switch f {
	case SHA1Log:
		if len(algs) != 1 || algs[0] != pcrbank.SHA1 {
			return nil, fmt.Errorf("event log: a SHA-1 log carries only the sha1 bank, not %v", algs)
		}
	case CryptoAgile:
		if len(algs) == 0 || len(algs) > MaxDigests {
			return nil, fmt.Errorf("event log: crypto-agile log needs 1..%d banks, got %v", MaxDigests, algs)
		}
		seen := map[pcrbank.Alg]bool{}
		for _, a := range algs {
			if !a.Valid() {
				return nil, fmt.Errorf("event log: unsupported bank %v", a)
			}
			if seen[a] {
				return nil, fmt.Errorf("event log: bank %v listed twice", a)
			}
			seen[a] = true
		}
		if header {
			writeSpecID(&buf, algs)
		}
	default:
		return nil, fmt.Errorf("event log: unknown format %d", int(f))
	}
	for i, m := range ms {
		if m.PCR < 0 || m.PCR >= pcrbank.NumPCRs {
			return nil, fmt.Errorf("event log: measurement %d (%s): PCR %d out of range 0..%d", i, m.Kind, m.PCR, pcrbank.NumPCRs-1)
		}
		if err := pcrbank.CheckDigests(algs, m.Digests); err != nil {
			return nil, fmt.Errorf("event log: measurement %d (%s): %w", i, m.Kind, err)
		}
		if len(m.EventData) > MaxEventData {
			// Parse would refuse it, so never write it.
			return nil, fmt.Errorf("event log: measurement %d (%s): event data is %d bytes, limit %d", i, m.Kind, len(m.EventData), MaxEventData)
		}
		if f == SHA1Log {
			writeSHA1Event(&buf, uint32(m.PCR), EVIPL, m.Digests[pcrbank.SHA1], m.EventData)
			continue
		}
		le32(&buf, uint32(m.PCR))
		le32(&buf, EVIPL)
		le32(&buf, uint32(len(algs)))
		for _, a := range algs {
			le16(&buf, uint16(a))
			buf.Write(m.Digests[a])
		}
		le32(&buf, uint32(len(m.EventData)))
		buf.Write(m.EventData)
	}
	return buf.Bytes(), nil
}

func writeSpecID(buf *bytes.Buffer, algs []pcrbank.Alg) {
	var ev bytes.Buffer
	ev.Write(specIDSignature[:])
	le32(&ev, 0) // platformClass: client
	ev.WriteByte(specVersionMinor)
	ev.WriteByte(specVersionMajor)
	ev.WriteByte(specErrata)
	ev.WriteByte(uintnSize)
	le32(&ev, uint32(len(algs)))
	for _, a := range algs {
		le16(&ev, uint16(a))
		le16(&ev, uint16(a.Size()))
	}
	ev.WriteByte(0) // vendorInfoSize
	writeSHA1Event(buf, 0, EVNoAction, make([]byte, 20), ev.Bytes())
}

func writeSHA1Event(buf *bytes.Buffer, pcr, typ uint32, digest, data []byte) {
	le32(buf, pcr)
	le32(buf, typ)
	buf.Write(digest)
	le32(buf, uint32(len(data)))
	buf.Write(data)
}

func le32(b *bytes.Buffer, v uint32) { b.Write(binary.LittleEndian.AppendUint32(nil, v)) }
func le16(b *bytes.Buffer, v uint16) { b.Write(binary.LittleEndian.AppendUint16(nil, v)) }

// ReadFile parses the log in path, refusing one larger than MaxLogSize
// before reading it whole; errors name the file.
func ReadFile(path string) (*Log, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := entry.ReadLimited(f, MaxLogSize)
	if errors.Is(err, entry.ErrTooLarge) {
		return nil, fmt.Errorf("%s: larger than %d bytes, not an event log", path, MaxLogSize)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	l, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return l, nil
}

// Replay extends every event except EV_NO_ACTION into t, in log order, with
// the digests of the banks t has. It checks the whole log before the first
// extend, so a log that cannot be replayed leaves t untouched.
func (l *Log) Replay(t pcrbank.Target) error {
	banks, err := t.Banks()
	if err != nil {
		return fmt.Errorf("replay event log: list PCR banks: %w", err)
	}
	have := map[pcrbank.Alg]bool{}
	for _, a := range l.Algs {
		have[a] = true
	}
	for _, a := range banks {
		if !have[a] {
			return fmt.Errorf("replay event log: the log has no %v digests (log banks %v, target banks %v)", a, l.Algs, banks)
		}
	}
	type extend struct {
		pcr int
		d   pcrbank.Digests
	}
	var todo []extend
	for i, e := range l.UntrustedEvents {
		if e.Type == EVNoAction {
			continue
		}
		if e.PCR < 0 || e.PCR >= pcrbank.NumPCRs {
			return fmt.Errorf("replay event log: event %d: PCR %d out of range", i, e.PCR)
		}
		d := make(pcrbank.Digests, len(banks))
		for _, a := range banks {
			v := e.Digest(a)
			if v == nil {
				return fmt.Errorf("replay event log: event %d (PCR %d, type 0x%x) has no %v digest", i, e.PCR, e.Type, a)
			}
			if len(v) != a.Size() {
				return fmt.Errorf("replay event log: event %d (PCR %d) %v digest is %d bytes, want %d", i, e.PCR, a, len(v), a.Size())
			}
			d[a] = v
		}
		todo = append(todo, extend{e.PCR, d})
	}
	for i, x := range todo {
		if err := t.Extend(x.pcr, x.d); err != nil {
			return fmt.Errorf("replay event log: extend %d of %d (PCR %d): %w", i+1, len(todo), x.pcr, err)
		}
	}
	return nil
}

// ErrMalformed is wrapped by every Parse error about the log's contents.
var ErrMalformed = errors.New("malformed event log")
