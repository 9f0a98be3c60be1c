package kexec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// HeaderSize is how much of a kernel file CheckKernel reads: the boot
// sector and the setup header that follows it.
const HeaderSize = 1024

// MaxElfcorehdrStrLen is what x86 kexec_file_load reserves in the command
// line for "elfcorehdr=0x<64-bit value> " (MAX_ELFCOREHDR_STR_LEN in
// arch/x86/kernel/kexec-bzimage64.c), even for a normal kexec.
const MaxElfcorehdrStrLen = 30

// ErrNotBootable is wrapped by the reasons CheckKernel and CheckCmdline
// refuse an entry: kexec_file_load would refuse it, so it must be refused
// before anything is measured.
var ErrNotBootable = errors.New("not bootable by kexec")

// Header is what the stub's kexec needs from a kernel's setup header
// (Documentation/arch/x86/boot.rst).
type Header struct {
	// Version is the boot protocol version (0x020f is 2.15).
	Version uint16
	// CmdlineSize is the longest command line the kernel takes, without
	// its NUL.
	CmdlineSize uint32
}

// MaxCmdline is the longest command line kexec_file_load accepts for this
// kernel: cmdline_size, less the NUL and the elfcorehdr= reservation
// (2016 bytes on Debian's 6.1 kernel, whose cmdline_size is 2047).
func (h Header) MaxCmdline() int {
	return max(int(h.CmdlineSize)-1-MaxElfcorehdrStrLen, 0)
}

// CheckKernel applies x86-64 kexec_file_load's own checks
// (bzImage64_probe and the start of bzImage64_load, Linux 6.1) to the
// first HeaderSize bytes of a kernel file of size bytes, so an entry the
// stub cannot kexec is refused before it is measured, by the stub and by
// pcrsim alike. The 5-level paging check is left out: it depends on the
// guest's CPU, not on the file.
func CheckKernel(head []byte, size int64) (Header, error) {
	bad := func(format string, a ...any) (Header, error) {
		return Header{}, fmt.Errorf("%w: %s", ErrNotBootable, fmt.Sprintf(format, a...))
	}
	if size < 2*512 || len(head) < 0x240 {
		return bad("%d bytes is too short to be a bzImage", size)
	}
	le := binary.LittleEndian
	if string(head[0x202:0x206]) != "HdrS" {
		return bad("not a bzImage (no HdrS setup header)")
	}
	if le.Uint16(head[0x1fe:]) != 0xAA55 {
		return bad("no x86 boot sector signature")
	}
	h := Header{Version: le.Uint16(head[0x206:])}
	if h.Version < 0x020c {
		return bad("boot protocol %d.%02d, kexec needs 2.12 or later", h.Version>>8, h.Version&0xff)
	}
	const loadedHigh = 0x01
	if head[0x211]&loadedHigh == 0 {
		return bad("a zImage, not a bzImage (LOADED_HIGH not set)")
	}
	const xlfKernel64, xlfAbove4G = 1 << 0, 1 << 1
	xl := le.Uint16(head[0x236:])
	if xl&xlfKernel64 == 0 {
		return bad("not a 64-bit bzImage (XLF_KERNEL_64 not set)")
	}
	if xl&xlfAbove4G == 0 {
		return bad("XLF_CAN_BE_LOADED_ABOVE_4G not set")
	}
	setup := int64(head[0x1f1])
	if setup == 0 {
		setup = 4
	}
	if kern16 := (setup + 1) * 512; size < kern16 {
		return bad("truncated: %d bytes, but its %d setup sectors alone take %d", size, setup, kern16)
	}
	h.CmdlineSize = le.Uint32(head[0x238:])
	return h, nil
}

// CheckCmdline refuses a command line the kernel would not receive as
// measured: one with a NUL byte (the kernel would see only what comes
// before it) or one longer than kexec_file_load takes for this kernel.
func CheckCmdline(cmdline string, h Header) error {
	if i := strings.IndexByte(cmdline, 0); i >= 0 {
		return fmt.Errorf("%w: the command line has a NUL byte at offset %d; the kernel would see only what comes before it", ErrNotBootable, i)
	}
	if n, max := len(cmdline), h.MaxCmdline(); n > max {
		return fmt.Errorf("%w: the command line is %d bytes; this kernel takes at most %d through kexec (cmdline_size %d, less the NUL and %d bytes kexec reserves for elfcorehdr=)",
			ErrNotBootable, n, max, h.CmdlineSize, MaxElfcorehdrStrLen)
	}
	return nil
}
