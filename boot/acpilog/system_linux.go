package acpilog

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/vtpmboot/vtpmboot/boot/eventlog"
	"github.com/vtpmboot/vtpmboot/boot/measure"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// Where Linux exposes what this package needs.
const (
	TablesDir = "/sys/firmware/acpi/tables"
	DevMem    = "/dev/mem"
)

// AppendSystem appends ms to this machine's firmware event log: the ACPI
// table Linux would read for a TPM of version v, its log area mapped
// through /dev/mem. The area is E820-reserved memory (SeaBIOS's high
// zone), which Debian's CONFIG_STRICT_DEVMEM and CONFIG_IO_STRICT_DEVMEM
// leave mappable: they refuse System RAM and ranges a driver claimed busy,
// and the kernel marks E820 "reserved" ranges not busy (do_mark_busy).
// Under kernel lockdown (UEFI Secure Boot) /dev/mem is refused and this
// fails, leaving the console log as the only copy.
func AppendSystem(v pcrbank.Version, ms []measure.Measurement) (Area, Result, error) {
	name := TableFor(v)
	path := filepath.Join(TablesDir, name)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Area{}, Result{}, fmt.Errorf("%w: no ACPI %s table (%s)", ErrNoArea, name, path)
	}
	if err != nil {
		return Area{}, Result{}, fmt.Errorf("read %s: %w", path, err)
	}
	a, err := ParseTable(b)
	if err != nil {
		return Area{}, Result{}, fmt.Errorf("%s: %w", path, err)
	}
	if a.Table != name {
		return a, Result{}, fmt.Errorf("%s holds a %s table", path, a.Table)
	}
	mem, unmap, err := mapArea(a)
	if err != nil {
		return a, Result{}, err
	}
	defer unmap()
	r, err := Append(mem, eventlog.FormatFor(v), ms)
	if err != nil {
		return a, r, fmt.Errorf("%v: %w", a, err)
	}
	return a, r, nil
}

// mapArea maps exactly the pages holding a and returns the area's bytes.
func mapArea(a Area) ([]byte, func(), error) {
	f, err := os.OpenFile(DevMem, os.O_RDWR|os.O_SYNC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", DevMem, err)
	}
	defer f.Close() // the mapping outlives the descriptor
	page := uint64(os.Getpagesize())
	start := a.Addr &^ (page - 1)
	length := a.Addr + uint64(a.Len) - start
	m, err := unix.Mmap(int(f.Fd()), int64(start), int(length), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, nil, fmt.Errorf("map %v through %s: %w (kernel lockdown or CONFIG_STRICT_DEVMEM refusing it?)", a, DevMem, err)
	}
	off := a.Addr - start
	return m[off : off+uint64(a.Len) : off+uint64(a.Len)], func() { _ = unix.Munmap(m) }, nil
}

// ReadSystem returns this machine's ACPI table for a TPM of version v and
// a copy of the log area it declares (for tests and diagnostics).
func ReadSystem(v pcrbank.Version) (table []byte, a Area, area []byte, err error) {
	path := filepath.Join(TablesDir, TableFor(v))
	if table, err = os.ReadFile(path); err != nil {
		return nil, Area{}, nil, err
	}
	if a, err = ParseTable(table); err != nil {
		return table, Area{}, nil, fmt.Errorf("%s: %w", path, err)
	}
	mem, unmap, err := mapArea(a)
	if err != nil {
		return table, a, nil, err
	}
	defer unmap()
	return table, a, bytes.Clone(mem), nil
}
