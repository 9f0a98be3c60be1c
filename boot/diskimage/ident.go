package diskimage

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
)

// identify reads the label and UUID of a detected filesystem, spelled as
// blkid spells them (lowercase 8-4-4-4-12 for ext, xfs and btrfs;
// "ABCD-1234" for FAT), because those are what vtpmboot.disk=LABEL=/UUID=
// and GRUB's search --fs-uuid name. Only fixed superblock fields are read:
// a guest cannot steer this into arbitrary offsets.
func identify(r io.ReaderAt, kind string) (label, uuid string) {
	switch kind {
	case "ext":
		var sb [0x88]byte
		if readFull(r, sb[:], 1024) == nil {
			return cString(sb[0x78:0x88]), uuidString(sb[0x68:0x78])
		}
	case "xfs":
		var sb [120]byte
		if readFull(r, sb[:], 0) == nil {
			return cString(sb[108:120]), uuidString(sb[32:48])
		}
	case "btrfs":
		var sb [0x12b + 256]byte
		if readFull(r, sb[:], 64<<10) == nil {
			return cString(sb[0x12b:]), uuidString(sb[0x20:0x30])
		}
	case "iso9660":
		var pvd [72]byte
		if readFull(r, pvd[:], 0x8000) == nil {
			return strings.TrimRight(string(pvd[40:72]), " "), ""
		}
	case "vfat":
		var bs [512]byte
		if readFull(r, bs[:], 0) != nil {
			return "", ""
		}
		// FAT32 keeps sectors per FAT only in its 32-bit field, so the
		// extended BPB (signature 0x28 or 0x29) sits further in.
		ext := 36
		if binary.LittleEndian.Uint16(bs[22:]) == 0 {
			ext = 64
		}
		if sig := bs[ext+2]; sig != 0x28 && sig != 0x29 {
			return "", ""
		}
		id := binary.LittleEndian.Uint32(bs[ext+3:])
		if sig := bs[ext+2]; sig == 0x29 {
			label = fatLabel(string(bs[ext+7 : ext+18]))
		}
		return label, fmt.Sprintf("%04X-%04X", id>>16, id&0xffff)
	}
	return "", ""
}

// fatLabel trims a FAT label as blkid does; "NO NAME" is mkfs's
// placeholder for no label.
func fatLabel(s string) string {
	s = strings.TrimRight(cString([]byte(s)), " ")
	if s == "NO NAME" {
		return ""
	}
	return s
}

func uuidString(b []byte) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}
