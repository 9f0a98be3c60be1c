package diskimage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ErrContainer is wrapped by the error for a disk image in a container
// format (qcow2, dynamic VHD, VMDK, ...): the guest's disk is not these
// bytes as they are, and this package reads raw disks only.
var ErrContainer = errors.New("disk image container format")

// container recognises image container formats by their magic numbers
// (as QEMU's block drivers probe them). A fixed VHD is the raw disk
// followed by a 512-byte footer: it returns the raw size and no error.
// Anything else it recognises is refused with the command that converts
// it; an image it does not recognise is taken as raw (size unchanged).
func container(r io.ReaderAt, size int64, name string) (int64, error) {
	var head [512]byte
	n, _ := r.ReadAt(head[:], 0)
	h := head[:n]
	format := ""
	switch {
	case bytes.HasPrefix(h, []byte("QFI\xfb")) && len(h) >= 8:
		format = "qcow2"
		if binary.BigEndian.Uint32(h[4:]) == 1 {
			format = "qcow"
		}
	case bytes.HasPrefix(h, []byte("QED\x00")):
		format = "qed"
	case bytes.HasPrefix(h, []byte("KDMV")), bytes.HasPrefix(h, []byte("# Disk DescriptorFile")):
		format = "vmdk"
	case bytes.HasPrefix(h, []byte("vhdxfile")):
		format = "vhdx"
	case len(h) >= 0x44 && binary.LittleEndian.Uint32(h[0x40:]) == 0xbeda107f:
		format = "vdi"
	}
	if format != "" {
		return 0, fmt.Errorf("disk image %s: %w: it is a %s image, and the guest's disk is what it stores, not its bytes; convert it with `qemu-img convert -O raw %s %s.raw` and give that", name, ErrContainer, format, name, name)
	}
	if size < 1024 {
		return size, nil
	}
	var foot [512]byte
	if err := readFull(r, foot[:], size-512); err != nil {
		return 0, fmt.Errorf("disk image %s: %w", name, err)
	}
	if string(foot[:8]) != "conectix" {
		return size, nil
	}
	// The VHD footer (Microsoft's VHD format specification): big-endian,
	// current size at 48, disk type at 60 (2 fixed, 3 dynamic,
	// 4 differencing), checksum at 64: the one's complement of the sum of
	// all footer bytes but the checksum's own.
	var sum uint32
	for i, c := range foot {
		if i < 64 || i >= 68 {
			sum += uint32(c)
		}
	}
	if want := binary.BigEndian.Uint32(foot[64:]); ^sum != want {
		return 0, fmt.Errorf("disk image %s: %w: VHD footer checksum 0x%08x, computed 0x%08x", name, ErrCorrupt, want, ^sum)
	}
	cur := binary.BigEndian.Uint64(foot[48:])
	switch typ := binary.BigEndian.Uint32(foot[60:]); typ {
	case 2:
		if cur == 0 || cur > uint64(size-512) || cur%512 != 0 {
			return 0, fmt.Errorf("disk image %s: %w: fixed VHD footer claims %d bytes of disk in a %d-byte file", name, ErrCorrupt, cur, size)
		}
		return int64(cur), nil
	case 3, 4:
		kind := map[uint32]string{3: "dynamic", 4: "differencing"}[typ]
		return 0, fmt.Errorf("disk image %s: %w: it is a %s VHD image, whose blocks are allocated on demand; convert it with `qemu-img convert -O raw %s %s.raw` and give that", name, ErrContainer, kind, name, name)
	default:
		return 0, fmt.Errorf("disk image %s: %w: VHD disk type %d", name, ErrCorrupt, typ)
	}
}
