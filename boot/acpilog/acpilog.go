// Package acpilog appends the stub's events to the firmware's TCG event
// log, in the log area the ACPI TCPA (TPM 1.2) or TPM2 (TPM 2.0) table
// declares, so that the kernel the stub kexecs finds the firmware's events
// followed by the stub's in /sys/kernel/security/tpm0/binary_bios_measurements.
//
// Why this works: Linux (drivers/char/tpm/eventlog/acpi.c) copies the
// whole declared area (LAML bytes at LASA) when the TPM driver starts, and
// its readers (eventlog/tpm1.c, tpm2.c) walk events until one with event
// type 0 and data size 0, which is what the zero-filled rest of the area
// reads as (SeaBIOS zeroes the area before logging, tcgbios.c
// tpm_tcpa_probe). The area is reserved memory that kexec leaves alone, and
// the next kernel reads the same ACPI tables. So events written right
// after the firmware's last event, inside the area, are read by the next
// kernel as part of the firmware log.
//
// The rules (docs/measurements.md, "The booted OS reads the stub's
// events"): never write outside the declared area; append only after a log
// Linux can walk to a clean end, with nothing but zeros after it; leave a
// zero record after our events; write digests for exactly the banks the
// log's Spec ID header names, in its order. Anything else is an error and
// the caller keeps the log on the console only.
package acpilog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/vtpmboot/vtpmboot/boot/eventlog"
	"github.com/vtpmboot/vtpmboot/boot/measure"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// ErrNoArea is wrapped when the platform declares no log area: no TPM ACPI
// table (Xen's xen-tpmfront), a table without log fields, or a zero
// address or length.
var ErrNoArea = errors.New("no firmware event log area")

// ErrTooSmall is wrapped when the stub's events do not fit in the area.
var ErrTooSmall = errors.New("firmware event log area too small")

// Area is the log area an ACPI table declares.
type Area struct {
	Table string // "TCPA" or "TPM2"
	Addr  uint64
	Len   uint32
}

func (a Area) String() string {
	return fmt.Sprintf("ACPI %s log area %d bytes at 0x%x", a.Table, a.Len, a.Addr)
}

const acpiHeaderLen = 36

// ACPI table layouts (TCG ACPI Specification; Linux's struct acpi_tcpa and
// struct acpi_table_tpm2 + struct acpi_tpm2_phy, QEMU's Acpi20Tcpa and
// Acpi20TPM2).
const (
	tcpaClassOff = 36 // u16 platform class: 0 client, 1 server
	tcpaLAMLOff  = 38 // client: u32 log area minimum length
	tcpaLASAOff  = 42 // client: u64 log area start address
	tcpaMinLen   = 50

	tpm2LAMLOff = 64 // after control area, start method and 12 bytes of start method parameters
	tpm2LASAOff = 68
	// Linux reads the log fields only from a table at least this long.
	tpm2MinLen = 76

	// maxArea bounds the area mapped and walked: QEMU declares 64 KiB,
	// UEFI firmware a few hundred KiB; more is not a log area we trust.
	maxArea = 16 << 20
)

// ParseTable reads the log area from a TCPA or TPM2 ACPI table (the bytes
// of /sys/firmware/acpi/tables/TCPA or TPM2).
func ParseTable(b []byte) (Area, error) {
	if len(b) < acpiHeaderLen {
		return Area{}, fmt.Errorf("ACPI table: %d bytes, shorter than its header", len(b))
	}
	sig := string(b[:4])
	n := binary.LittleEndian.Uint32(b[4:8])
	if int64(n) > int64(len(b)) || n < acpiHeaderLen {
		return Area{}, fmt.Errorf("ACPI %s table: length field %d, %d bytes read", printable(sig), n, len(b))
	}
	b = b[:n]
	var sum byte
	for _, c := range b {
		sum += c
	}
	if sum != 0 {
		return Area{}, fmt.Errorf("ACPI %s table: bad checksum", printable(sig))
	}
	a := Area{Table: sig}
	switch sig {
	case "TCPA":
		if len(b) < tcpaMinLen {
			return Area{}, fmt.Errorf("%w: ACPI TCPA table is %d bytes, too short for log fields", ErrNoArea, len(b))
		}
		if c := binary.LittleEndian.Uint16(b[tcpaClassOff:]); c != 0 {
			// The server layout has 64-bit lengths at other offsets;
			// no hypervisor firmware we know writes it.
			return Area{}, fmt.Errorf("ACPI TCPA table: platform class %d (server) is not supported", c)
		}
		a.Len = binary.LittleEndian.Uint32(b[tcpaLAMLOff:])
		a.Addr = binary.LittleEndian.Uint64(b[tcpaLASAOff:])
	case "TPM2":
		if len(b) < tpm2MinLen {
			return Area{}, fmt.Errorf("%w: ACPI TPM2 table is %d bytes, too short for log fields (Linux reads them from %d bytes on)", ErrNoArea, len(b), tpm2MinLen)
		}
		a.Len = binary.LittleEndian.Uint32(b[tpm2LAMLOff:])
		a.Addr = binary.LittleEndian.Uint64(b[tpm2LASAOff:])
	default:
		return Area{}, fmt.Errorf("ACPI table %q is neither TCPA nor TPM2", printable(sig))
	}
	if a.Addr == 0 || a.Len == 0 {
		return Area{}, fmt.Errorf("%w: ACPI %s table declares address 0x%x, length %d", ErrNoArea, sig, a.Addr, a.Len)
	}
	if a.Len > maxArea {
		return Area{}, fmt.Errorf("ACPI %s table declares a %d-byte log area, more than the %d bytes vtpmboot accepts", sig, a.Len, maxArea)
	}
	if a.Addr+uint64(a.Len) < a.Addr {
		return Area{}, fmt.Errorf("ACPI %s table: log area 0x%x+%d wraps around", sig, a.Addr, a.Len)
	}
	return a, nil
}

func printable(s string) string { return fmt.Sprintf("%q", s) }

// TableFor names the table Linux reads the log from for a TPM of version
// v: TPM2 for a TPM 2.0 chip, TCPA otherwise (tpm_read_log_acpi).
func TableFor(v pcrbank.Version) string {
	if v == pcrbank.Version20 {
		return "TPM2"
	}
	return "TCPA"
}

// Result says what Append found and wrote.
type Result struct {
	Format eventlog.Format
	// FirmwareBytes and FirmwareEvents are the log found (for a
	// crypto-agile log the Spec ID header counts as an event here).
	FirmwareBytes, FirmwareEvents int
	// Appended bytes were written at offset FirmwareBytes.
	Appended int
	AreaLen  int
}

func (r Result) String() string {
	return fmt.Sprintf("%d bytes after %d firmware events (%d bytes); %d of %d bytes used",
		r.Appended, r.FirmwareEvents, r.FirmwareBytes, r.FirmwareBytes+r.Appended, r.AreaLen)
}

// terminatorLen is the zero record left after the stub's events: a whole
// TPM 1.2 event header, longer than the smallest TPM 2.0 one, so every
// reader meets type 0, size 0 inside the area.
const terminatorLen = 32

// Append writes ms after the log in area (the mapped log area, or a copy
// in tests), in format f: SHA1Log for a TPM 1.2, CryptoAgile for a TPM
// 2.0. It changes area only when it returns nil, and then the area parses
// (boot/eventlog and Linux's walk) to the old events followed by ms.
func Append(area []byte, f eventlog.Format, ms []measure.Measurement) (Result, error) {
	r := Result{Format: f, AreaLen: len(area)}
	end, n, hdrAlgs, err := Walk(area, f)
	if err != nil {
		return r, err
	}
	r.FirmwareBytes, r.FirmwareEvents = end, n
	if i := bytes.IndexFunc(area[end:], func(c rune) bool { return c != 0 }); i >= 0 {
		// IndexFunc decodes runes; any non-zero byte makes a non-zero rune.
		return r, fmt.Errorf("the log area is not empty after the firmware's log: non-zero byte near offset %d", end+i)
	}
	if _, err := eventlog.Parse(area[:end]); err != nil {
		return r, fmt.Errorf("the firmware's log: %w", err)
	}
	var algs []pcrbank.Alg
	if f == eventlog.SHA1Log {
		algs = []pcrbank.Alg{pcrbank.SHA1}
	} else {
		algs, err = sameBanks(hdrAlgs, ms)
		if err != nil {
			return r, err
		}
	}
	ours, err := eventlog.MarshalEvents(f, algs, ms)
	if err != nil {
		return r, err
	}
	if end+len(ours)+terminatorLen > len(area) {
		return r, fmt.Errorf("%w: %d bytes used by the firmware, %d needed for %d events plus a %d-byte end record, %d in the area",
			ErrTooSmall, end, len(ours), len(ms), terminatorLen, len(area))
	}
	copy(area[end:], ours)
	// Read back what the next kernel will read.
	newEnd, newN, _, err := Walk(area, f)
	if err == nil && (newEnd != end+len(ours) || newN != n+len(ms)) {
		err = fmt.Errorf("after appending, the log ends at %d with %d events, want %d with %d", newEnd, newN, end+len(ours), n+len(ms))
	}
	if err != nil {
		clear(area[end : end+len(ours)])
		return r, fmt.Errorf("appended log does not read back (undone): %w", err)
	}
	r.Appended = len(ours)
	return r, nil
}

// sameBanks returns the header's algorithms in header order when they are
// exactly the banks the measurements carry: a digest for a bank the
// header lacks cannot be written (Linux stops reading at an unknown
// algorithm), and a header bank without a digest would leave the event
// unreplayable in that bank.
func sameBanks(hdr []uint16, ms []measure.Measurement) ([]pcrbank.Alg, error) {
	if len(ms) == 0 {
		return nil, fmt.Errorf("no measurements to append")
	}
	have := ms[0].Digests.Algs()
	var out []pcrbank.Alg
	for _, id := range hdr {
		a := pcrbank.Alg(id)
		if !a.Valid() || ms[0].Digests[a] == nil {
			return nil, fmt.Errorf("the firmware log's Spec ID header lists algorithm 0x%04x, which the stub did not measure (measured %v)", id, have)
		}
		out = append(out, a)
	}
	if len(out) != len(have) {
		return nil, fmt.Errorf("the firmware log's Spec ID header lists %v, the stub measured %v", out, have)
	}
	return out, nil
}

// Walk finds the end of the log in area the way Linux's securityfs readers
// do, and fails where they would stop early or read garbage. It returns the
// end offset, the number of events (a crypto-agile log's Spec ID header
// included) and, for a crypto-agile log, the header's algorithm ids in
// order. An area whose first record is already the end is an empty log:
// there is no firmware log to append to (Linux shows nothing).
func Walk(area []byte, f eventlog.Format) (end, events int, algs []uint16, err error) {
	le := binary.LittleEndian
	off := 0
	// The first record has the TPM 1.2 layout in both formats.
	if len(area) < 32 {
		return 0, 0, nil, fmt.Errorf("%w: %d-byte area", ErrTooSmall, len(area))
	}
	typ, size := le.Uint32(area[4:]), le.Uint32(area[28:])
	if typ == 0 && size == 0 {
		return 0, 0, nil, fmt.Errorf("%w: the area holds no firmware log (first record is empty)", ErrNoArea)
	}
	if f == eventlog.CryptoAgile {
		if uint64(32)+uint64(size) > uint64(len(area)) {
			return 0, 0, nil, fmt.Errorf("first event overruns the area")
		}
		spec := area[32 : 32+size]
		if typ != eventlog.EVNoAction || !bytes.HasPrefix(spec, []byte("Spec ID Event03\x00")) {
			return 0, 0, nil, fmt.Errorf("a TPM 2.0 log must start with a Spec ID Event03 header; this one starts with event type 0x%x", typ)
		}
		if len(spec) < 16+4+4+4 {
			return 0, 0, nil, fmt.Errorf("the log's Spec ID header is too short")
		}
		num := le.Uint32(spec[24:])
		if num == 0 || num > eventlog.MaxDigests || 28+4*int(num) > len(spec) {
			return 0, 0, nil, fmt.Errorf("the log's Spec ID header lists %d algorithms", num)
		}
		sizes := map[uint16]int{}
		for i := range int(num) {
			id, sz := le.Uint16(spec[28+4*i:]), le.Uint16(spec[30+4*i:])
			algs = append(algs, id)
			sizes[id] = int(sz)
		}
		off, events = 32+int(size), 1
		for {
			n, zero, err := event2Size(area[off:], sizes, len(algs))
			if err != nil {
				return 0, 0, nil, fmt.Errorf("event %d at offset %d: %w", events, off, err)
			}
			if zero {
				return off, events, algs, nil
			}
			off += n
			events++
		}
	}
	for {
		if off+32 > len(area) {
			return 0, 0, nil, fmt.Errorf("%w: the log fills the area (event %d at offset %d)", ErrTooSmall, events, off)
		}
		typ, size := le.Uint32(area[off+4:]), le.Uint32(area[off+28:])
		if typ == 0 && size == 0 {
			return off, events, nil, nil
		}
		if uint64(off)+32+uint64(size) >= uint64(len(area)) {
			return 0, 0, nil, fmt.Errorf("event %d at offset %d (%d data bytes) runs to the end of the area", events, off, size)
		}
		off += 32 + int(size)
		events++
	}
}

// event2Size is Linux's __calc_tpm2_event_size with the reasons it returns
// 0 told apart: zero reports the end record (type 0, data size 0), an error
// anything Linux would stop at without it being the end.
func event2Size(b []byte, sizes map[uint16]int, num int) (n int, zero bool, err error) {
	le := binary.LittleEndian
	if len(b) < 12 {
		return 0, false, fmt.Errorf("%w: no room for the next event header", ErrTooSmall)
	}
	typ, count := le.Uint32(b[4:]), le.Uint32(b[8:])
	if count > uint32(num) {
		if typ == 0 {
			return 0, false, fmt.Errorf("non-zero bytes where the log should end")
		}
		return 0, false, fmt.Errorf("%d digests, the header lists %d algorithms", count, num)
	}
	off := 12
	for range int(count) {
		if off+2 > len(b) {
			return 0, false, fmt.Errorf("%w: digest runs past the area", ErrTooSmall)
		}
		sz, ok := sizes[le.Uint16(b[off:])]
		if !ok {
			return 0, false, fmt.Errorf("digest algorithm 0x%04x not in the Spec ID header", le.Uint16(b[off:]))
		}
		off += 2 + sz
	}
	if off+4 > len(b) {
		return 0, false, fmt.Errorf("%w: event runs past the area", ErrTooSmall)
	}
	size := le.Uint32(b[off:])
	if typ == 0 && size == 0 {
		return 0, true, nil
	}
	if uint64(off)+4+uint64(size) >= uint64(len(b)) {
		return 0, false, fmt.Errorf("event data (%d bytes) runs to the end of the area", size)
	}
	return off + 4 + int(size), false, nil
}
