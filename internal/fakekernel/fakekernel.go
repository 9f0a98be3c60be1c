// Package fakekernel makes kernel files for tests that are not booted: a
// setup header that passes kexec_file_load's checks (boot sector
// signature, "HdrS", boot protocol 2.15, LOADED_HIGH, a 64-bit kernel
// loadable above 4 GiB, cmdline_size 2047 like Debian's kernel), then the
// given payload, so every test kernel stays distinct and small. Tests
// that boot use the real Debian kernel; the values here are checked
// against it (boot/kexec's tests).
package fakekernel

import "encoding/binary"

// CmdlineSize is the cmdline_size field of every fake kernel.
const CmdlineSize = 2047

// Image returns a 1024-byte setup area (one setup sector after the boot
// sector) followed by payload.
func Image(payload []byte) []byte {
	b := make([]byte, 1024, 1024+len(payload))
	le := binary.LittleEndian
	b[0x1f1] = 1 // setup_sects
	le.PutUint16(b[0x1fe:], 0xAA55)
	copy(b[0x202:], "HdrS")
	le.PutUint16(b[0x206:], 0x020f)
	b[0x211] = 0x01                 // loadflags: LOADED_HIGH
	le.PutUint16(b[0x236:], 0x0003) // xloadflags: XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G
	le.PutUint32(b[0x238:], CmdlineSize)
	return append(b, payload...)
}
