// Package mount finds the guest's filesystems and mounts them read-only
// without replaying journals, in the order pcrsim reads the same disk from
// an image: disks by name, partitions by number.
package mount

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// FSInfo is what a superblock says about a filesystem.
type FSInfo struct {
	// Type is "ext2", "ext3", "ext4", "xfs", "btrfs", "vfat" or "iso9660".
	Type  string
	Label string
	// UUID in the spelling blkid uses: lowercase 8-4-4-4-12 for ext and
	// xfs and btrfs, "ABCD-1234" for FAT.
	UUID string
}

// ErrUnknownFS means no supported superblock was found.
var ErrUnknownFS = errors.New("no supported filesystem (ext2/3/4, xfs, btrfs, vfat, iso9660)")

// MountType is the kernel filesystem type and the options that keep a
// read-only mount from writing: journals are not replayed.
func (f FSInfo) MountType() (fstype, options string) {
	switch f.Type {
	case "ext2", "ext3", "ext4":
		// The ext4 driver serves ext2 and ext3 too; "noload" skips the
		// journal, which "ro" alone would replay onto the disk.
		return "ext4", "noload"
	case "xfs":
		return "xfs", "norecovery"
	case "btrfs":
		// Linux 6.1 spells it rescue=nologreplay ("nologreplay" alone is
		// the deprecated alias); it requires a read-only mount.
		return "btrfs", "rescue=nologreplay"
	case "vfat":
		return "vfat", ""
	case "iso9660":
		return "iso9660", ""
	}
	return "", ""
}

// fsModules are the modules that mount each kernel filesystem type (as
// MountType returns it), main driver first. Each driver answers the
// kernel's own "fs-<type>" module alias. vfat also needs the code page and
// I/O charset it loads at mount time: Debian 6.1 has
// CONFIG_FAT_DEFAULT_CODEPAGE=437 and CONFIG_FAT_DEFAULT_IOCHARSET="ascii"
// (CONFIG_FAT_DEFAULT_UTF8=y converts in the built-in nls_base). iso9660's
// Joliet names need no module: CONFIG_NLS_DEFAULT="utf8" is handled
// without one.
var fsModules = map[string][]string{
	"ext4":    {"ext4"},
	"xfs":     {"xfs"},
	"btrfs":   {"btrfs"},
	"vfat":    {"vfat", "nls_cp437", "nls_ascii"},
	"iso9660": {"isofs"},
}

// Modules are the kernel modules that mount f (with their dependencies,
// which modules.dep gives), or nil for an unsupported type.
func (f FSInfo) Modules() []string {
	fstype, _ := f.MountType()
	return fsModules[fstype]
}

// AllModules lists every module Modules can return, in a fixed order: the
// stub defers all of them until it knows which filesystems it found.
func AllModules() []string {
	var out []string
	for _, t := range []string{"ext4", "xfs", "btrfs", "vfat", "iso9660"} {
		out = append(out, fsModules[t]...)
	}
	return out
}

func readAt(r io.ReaderAt, off int64, n int) ([]byte, error) {
	b := make([]byte, n)
	m, err := r.ReadAt(b, off)
	if m == n {
		return b, nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return nil, io.ErrUnexpectedEOF
	}
	return nil, err
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

// Probe identifies the filesystem on r by its superblock magic. It reads
// only; a device or image that is too short is simply not that filesystem.
func Probe(r io.ReaderAt) (FSInfo, error) {
	var firstErr error
	note := func(err error) {
		if firstErr == nil && err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			firstErr = err
		}
	}
	for _, p := range []func(io.ReaderAt) (FSInfo, bool, error){probeExt, probeXFS, probeBtrfs, probeISO, probeFAT} {
		info, ok, err := p(r)
		if ok {
			return info, nil
		}
		note(err)
	}
	if firstErr != nil {
		return FSInfo{}, fmt.Errorf("read superblock: %w", firstErr)
	}
	return FSInfo{}, ErrUnknownFS
}

// ext2/3/4: the superblock is at byte 1024.
func probeExt(r io.ReaderAt) (FSInfo, bool, error) {
	sb, err := readAt(r, 1024, 256)
	if err != nil {
		return FSInfo{}, false, err
	}
	if binary.LittleEndian.Uint16(sb[0x38:]) != 0xEF53 {
		return FSInfo{}, false, nil
	}
	compat := binary.LittleEndian.Uint32(sb[0x5C:])
	incompat := binary.LittleEndian.Uint32(sb[0x60:])
	rocompat := binary.LittleEndian.Uint32(sb[0x64:])
	typ := "ext2"
	const (
		compatJournal      = 0x4
		incompatJournalDev = 0x8
		// Features ext3 does not have, as blkid decides ext4.
		ext3IncompatSupported = 0x2 | 0x4 | 0x10 // filetype, recover, meta_bg
		ext3RocompatSupported = 0x1 | 0x2 | 0x4
	)
	if incompat&incompatJournalDev != 0 {
		// An external journal device holds no files.
		return FSInfo{}, false, nil
	}
	if compat&compatJournal != 0 {
		typ = "ext3"
	}
	if incompat&^ext3IncompatSupported != 0 || rocompat&^ext3RocompatSupported != 0 {
		typ = "ext4"
	}
	return FSInfo{Type: typ, UUID: uuidString(sb[0x68:0x78]), Label: cString(sb[0x78:0x88])}, true, nil
}

func probeXFS(r io.ReaderAt) (FSInfo, bool, error) {
	sb, err := readAt(r, 0, 120)
	if err != nil {
		return FSInfo{}, false, err
	}
	if string(sb[0:4]) != "XFSB" {
		return FSInfo{}, false, nil
	}
	return FSInfo{Type: "xfs", UUID: uuidString(sb[32:48]), Label: cString(sb[108:120])}, true, nil
}

func probeBtrfs(r io.ReaderAt) (FSInfo, bool, error) {
	sb, err := readAt(r, 64<<10, 0x12b+256)
	if err != nil {
		return FSInfo{}, false, err
	}
	if string(sb[0x40:0x48]) != "_BHRfS_M" {
		return FSInfo{}, false, nil
	}
	return FSInfo{Type: "btrfs", UUID: uuidString(sb[0x20:0x30]), Label: cString(sb[0x12b : 0x12b+256])}, true, nil
}

func probeISO(r io.ReaderAt) (FSInfo, bool, error) {
	pvd, err := readAt(r, 0x8000, 72)
	if err != nil {
		return FSInfo{}, false, err
	}
	if pvd[0] != 1 || string(pvd[1:6]) != "CD001" {
		return FSInfo{}, false, nil
	}
	return FSInfo{Type: "iso9660", Label: strings.TrimRight(string(pvd[40:72]), " ")}, true, nil
}

// probeFAT checks the boot sector the way blkid's vfat probe does at its
// core: a sane BPB plus the FAT type string, then the volume ID and label
// from the FAT32 or FAT12/16 extended BPB.
func probeFAT(r io.ReaderAt) (FSInfo, bool, error) {
	bs, err := readAt(r, 0, 512)
	if err != nil {
		return FSInfo{}, false, err
	}
	if bs[510] != 0x55 || bs[511] != 0xAA {
		return FSInfo{}, false, nil
	}
	sector := binary.LittleEndian.Uint16(bs[11:])
	cluster := bs[13]
	if sector < 512 || sector > 4096 || sector&(sector-1) != 0 || cluster == 0 || cluster&(cluster-1) != 0 || bs[16] == 0 {
		return FSInfo{}, false, nil
	}
	var id uint32
	var label string
	switch {
	case string(bs[82:87]) == "FAT32":
		id = binary.LittleEndian.Uint32(bs[67:])
		label = string(bs[71:82])
	case string(bs[54:59]) == "FAT12" || string(bs[54:59]) == "FAT16" || string(bs[54:57]) == "FAT":
		id = binary.LittleEndian.Uint32(bs[39:])
		label = string(bs[43:54])
	default:
		return FSInfo{}, false, nil
	}
	label = strings.TrimRight(label, " ")
	if label == "NO NAME" {
		label = ""
	}
	return FSInfo{Type: "vfat", UUID: fmt.Sprintf("%04X-%04X", id>>16, id&0xffff), Label: label}, true, nil
}

// PartitionTable says how a whole disk is partitioned: "gpt" when LBA 1
// holds a GPT header ("EFI PART"; 512- or 4096-byte sectors), "mbr" when
// the boot signature is there, "" otherwise.
func PartitionTable(disk io.ReaderAt) string {
	for _, off := range []int64{512, 4096} {
		if b, err := readAt(disk, off, 8); err == nil && string(b) == "EFI PART" {
			return "gpt"
		}
	}
	if b, err := readAt(disk, 510, 2); err == nil && b[0] == 0x55 && b[1] == 0xAA {
		return "mbr"
	}
	return ""
}
