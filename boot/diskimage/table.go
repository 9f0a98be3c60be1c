package diskimage

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
)

const (
	maxLogical     = 128     // Linux stops far earlier; a longer EBR chain is hostile
	maxGPTEntryLen = 1 << 20 // the spec minimum is 16 KiB; real tables never exceed a few
)

// scan decides between a bare filesystem, GPT and MBR.
func (img *Image) scan() ([]Partition, error) {
	var s0 [512]byte
	if err := readFull(img.r, s0[:], 0); err != nil {
		return nil, fmt.Errorf("sector 0: %w", err)
	}
	// A bare filesystem first: a FAT boot sector carries 0x55AA too and its
	// boot code would otherwise be misread as partition entries.
	if kind, _ := detect(img.r, img.size); kind != "" {
		p := Partition{Index: 0, Name: "whole disk", Start: 0, Size: img.size}
		img.probe(&p)
		return []Partition{p}, nil
	}
	if s0[510] != 0x55 || s0[511] != 0xAA {
		p := Partition{Index: 0, Name: "whole disk", Start: 0, Size: img.size}
		img.probe(&p)
		return []Partition{p}, nil
	}
	var ents [4]mbrEntry
	for i := range ents {
		ents[i] = parseMBREntry(s0[446+16*i:])
	}
	for _, e := range ents {
		if e.typ == 0xEE {
			img.table = "gpt"
			return img.scanGPT()
		}
	}
	img.table = "mbr"
	return img.scanMBR(ents)
}

type mbrEntry struct {
	status, typ  byte
	start, count uint32
}

func parseMBREntry(b []byte) mbrEntry {
	return mbrEntry{status: b[0], typ: b[4], start: binary.LittleEndian.Uint32(b[8:]), count: binary.LittleEndian.Uint32(b[12:])}
}

func isExtended(t byte) bool { return t == 0x05 || t == 0x0F || t == 0x85 }

func (img *Image) addPart(parts []Partition, idx int, start, size int64, tableType string) []Partition {
	p := Partition{Index: idx, Name: fmt.Sprintf("partition %d", idx), Start: start, Size: size}
	switch {
	case size <= 0:
		p.Type = "unknown: empty partition"
		p.Err = fmt.Errorf("%s %s: %w: empty partition", img.name, p.Name, ErrCorrupt)
	case start < 0 || start >= img.size || size > img.size-start:
		p.Type = "unknown: " + tableType
		p.Err = fmt.Errorf("%s %s: %w: partition (offset %d, %d bytes) extends beyond the end of the %d-byte image (truncated image?)",
			img.name, p.Name, ErrCorrupt, start, size, img.size)
	default:
		img.probe(&p)
	}
	return append(parts, p)
}

func (img *Image) scanMBR(ents [4]mbrEntry) ([]Partition, error) {
	var parts []Partition
	for i, e := range ents {
		if e.status != 0 && e.status != 0x80 {
			return nil, fmt.Errorf("MBR entry %d: %w: boot flag 0x%02x", i+1, ErrCorrupt, e.status)
		}
	}
	for i, e := range ents {
		if e.typ == 0 || e.count == 0 {
			continue
		}
		if isExtended(e.typ) {
			continue
		}
		parts = img.addPart(parts, i+1, int64(e.start)*512, int64(e.count)*512, fmt.Sprintf("MBR type 0x%02x", e.typ))
	}
	// Logical partitions are numbered from 5 after all primaries, as Linux does.
	for i, e := range ents {
		if e.typ == 0 || !isExtended(e.typ) {
			continue
		}
		// A broken logical chain (a loop, an EBR outside the extended
		// partition) costs only what comes after the break, as in
		// Linux: the primaries and the logical partitions before it are
		// still read. The break itself becomes a corrupt volume, so a
		// search that reaches it refuses rather than skipping ahead.
		var err error
		if parts, err = img.scanEBR(parts, int64(e.start), int64(e.count)); err != nil {
			parts = append(parts, Partition{Index: -1, Name: fmt.Sprintf("extended partition %d", i+1), Type: "unknown: logical partition chain",
				Err: fmt.Errorf("%s extended partition %d: %w (logical partitions after the break are not read)", img.name, i+1, err)})
		}
		break // only one extended partition is valid
	}
	return parts, nil
}

func (img *Image) scanEBR(parts []Partition, extStart, extCount int64) ([]Partition, error) {
	seen := map[int64]bool{}
	ebr := extStart
	idx := 5
	for n := 0; ; n++ {
		if n >= maxLogical {
			return parts, fmt.Errorf("%w: more than %d logical partitions (EBR chain loops?)", ErrCorrupt, maxLogical)
		}
		if seen[ebr] {
			return parts, fmt.Errorf("%w: EBR chain loops back to sector %d", ErrCorrupt, ebr)
		}
		seen[ebr] = true
		var s [512]byte
		if err := readFull(img.r, s[:], ebr*512); err != nil {
			return parts, fmt.Errorf("EBR at sector %d: %w: %w", ebr, ErrCorrupt, err)
		}
		if s[510] != 0x55 || s[511] != 0xAA {
			return parts, fmt.Errorf("EBR at sector %d: %w: missing 0x55AA signature", ebr, ErrCorrupt)
		}
		l, next := parseMBREntry(s[446:]), parseMBREntry(s[462:])
		if l.typ != 0 && l.count != 0 {
			parts = img.addPart(parts, idx, (ebr+int64(l.start))*512, int64(l.count)*512, fmt.Sprintf("MBR type 0x%02x", l.typ))
			idx++
		}
		if next.typ == 0 || next.count == 0 {
			return parts, nil
		}
		if int64(next.start) >= extCount {
			return parts, fmt.Errorf("EBR at sector %d: %w: next EBR outside the extended partition", ebr, ErrCorrupt)
		}
		ebr = extStart + int64(next.start)
	}
}

func (img *Image) scanGPT() ([]Partition, error) {
	// 512-byte sectors first; 4Kn disks put the header at 4096.
	for _, ss := range []int64{512, 4096} {
		var sig [8]byte
		if err := readFull(img.r, sig[:], ss); err != nil {
			continue
		}
		if string(sig[:]) == "EFI PART" {
			return img.readGPT(ss)
		}
	}
	return nil, fmt.Errorf("GPT: %w: protective MBR but no \"EFI PART\" header at LBA 1", ErrCorrupt)
}

func (img *Image) readGPT(ss int64) ([]Partition, error) {
	h := make([]byte, ss)
	if err := readFull(img.r, h, ss); err != nil {
		return nil, fmt.Errorf("GPT header: %w", err)
	}
	hsize := binary.LittleEndian.Uint32(h[12:])
	if hsize < 92 || int64(hsize) > ss {
		return nil, fmt.Errorf("GPT header: %w: header size %d", ErrCorrupt, hsize)
	}
	want := binary.LittleEndian.Uint32(h[16:])
	hc := append([]byte(nil), h[:hsize]...)
	binary.LittleEndian.PutUint32(hc[16:], 0)
	if got := crc32.ChecksumIEEE(hc); got != want {
		// Readers part ways here: Linux drops the whole table (it reads
		// the backup only if the primary is valid, or with "gpt" on
		// its command line), GRUB 2.06 never checks the CRC, fdisk
		// takes the backup. Which partitions boot would be a guess.
		return nil, fmt.Errorf("GPT header: %w: CRC32 is 0x%08x, header says 0x%08x (the backup header is not used instead: repair the table, e.g. with gdisk)", ErrCorrupt, got, want)
	}
	entLBA := binary.LittleEndian.Uint64(h[72:])
	num := binary.LittleEndian.Uint32(h[80:])
	esz := binary.LittleEndian.Uint32(h[84:])
	if esz < 128 || esz%8 != 0 || esz > 4096 {
		return nil, fmt.Errorf("GPT header: %w: partition entry size %d", ErrCorrupt, esz)
	}
	total := int64(num) * int64(esz)
	if total > maxGPTEntryLen {
		return nil, fmt.Errorf("GPT header: %w: %d entries of %d bytes is more than %d bytes", ErrCorrupt, num, esz, maxGPTEntryLen)
	}
	if entLBA < 2 || entLBA > uint64(img.size/ss) || int64(entLBA)*ss+total > img.size {
		return nil, fmt.Errorf("GPT header: %w: partition entries at LBA %d (%d bytes) lie outside the %d-byte image", ErrCorrupt, entLBA, total, img.size)
	}
	tab := make([]byte, total)
	if err := readFull(img.r, tab, int64(entLBA)*ss); err != nil {
		return nil, fmt.Errorf("GPT entries: %w", err)
	}
	if got, want := crc32.ChecksumIEEE(tab), binary.LittleEndian.Uint32(h[88:]); got != want {
		return nil, fmt.Errorf("GPT entries: %w: CRC32 is 0x%08x, header says 0x%08x", ErrCorrupt, got, want)
	}
	var parts []Partition
	zero := make([]byte, 16)
	for i := 0; i < int(num); i++ {
		e := tab[i*int(esz):]
		if bytes.Equal(e[:16], zero) {
			continue
		}
		first, last := binary.LittleEndian.Uint64(e[32:]), binary.LittleEndian.Uint64(e[40:])
		maxLBA := uint64(1<<62) / uint64(ss)
		if last < first || last >= maxLBA {
			p := Partition{Index: i + 1, Name: fmt.Sprintf("partition %d", i+1), Type: "unknown: GPT entry"}
			p.Err = fmt.Errorf("%s %s: %w: GPT entry LBA range %d..%d", img.name, p.Name, ErrCorrupt, first, last)
			parts = append(parts, p)
			continue
		}
		parts = img.addPart(parts, i+1, int64(first)*ss, int64(last-first+1)*ss, "GPT type "+guidString(e[:16]))
	}
	return parts, nil
}

func guidString(b []byte) string {
	return fmt.Sprintf("%08X-%04X-%04X-%X-%X", binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint16(b[4:]),
		binary.LittleEndian.Uint16(b[6:]), b[8:10], b[10:16])
}

// signature is a filesystem or container magic at a fixed offset.
type signature struct {
	off   int64
	magic string
	name  string
}

var signatures = []signature{
	{0, "XFSB", "xfs"},
	{0x10040, "_BHRfS_M", "btrfs"},
	{4086, "SWAPSPACE2", "swap"},
	{4086, "SWAP-SPACE", "swap"},
	{0, "LUKS\xba\xbe", "crypto_LUKS"},
	{512 + 24, "LVM2 001", "LVM2_member"},
	{24, "LVM2 001", "LVM2_member"},
	{0x8001, "CD001", "iso9660"},
	{0, "hsqs", "squashfs"},
	{3, "NTFS    ", "ntfs"},
	{3, "EXFAT   ", "exfat"},
	{0x400, "\x10\x20\xf5\xf2", "f2fs"},
	{0x1000, "\xfc\x4e\x2b\xa9", "linux_raid_member"},
}

// besideExt names another filesystem whose signature lies in the first
// 1024 bytes of a volume that also holds an ext superblock, or "". Those
// bytes are zero after mkfs.ext4, and the boot loaders that install into
// an ext volume's first sector (extlinux, GRUB legacy's stage 1) write no
// valid FAT BPB there, so such a signature was put there on purpose: the
// volume is a polyglot that different readers take for different
// filesystems.
func besideExt(r io.ReaderAt) string {
	var head [1024]byte
	if readFull(r, head[:], 0) != nil {
		return ""
	}
	if looksFAT(head[:512]) {
		return "vfat"
	}
	for _, s := range signatures {
		if end := s.off + int64(len(s.magic)); end <= int64(len(head)) && string(head[s.off:end]) == s.magic {
			return s.name
		}
	}
	return ""
}

// detect names the filesystem at the start of r: "ext", "vfat", another
// known name, or "" with a detail for unknown contents.
func detect(r io.ReaderAt, size int64) (kind, detail string) {
	var sb [2]byte
	if size >= 2048 && readFull(r, sb[:], 1024+56) == nil && binary.LittleEndian.Uint16(sb[:]) == 0xEF53 {
		return "ext", ""
	}
	var bs [512]byte
	if readFull(r, bs[:], 0) == nil && looksFAT(bs[:]) {
		return "vfat", ""
	}
	for _, s := range signatures {
		if s.name == "" || s.off+int64(len(s.magic)) > size {
			continue
		}
		b := make([]byte, len(s.magic))
		if readFull(r, b, s.off) == nil && string(b) == s.magic {
			return s.name, ""
		}
	}
	var head [16]byte
	if readFull(r, head[:], 0) == nil && strings.Trim(string(head[:]), "\x00") == "" {
		return "", "no filesystem signature (starts with zeros)"
	}
	return "", "no filesystem signature"
}
