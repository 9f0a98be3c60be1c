package mount

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Where the probes look: the first sectors (ext at 1024, xfs and FAT at
// 0, GPT at 512 or 4096), the ISO 9660 primary volume descriptor, and the
// btrfs superblock.
const (
	isoOffset   = 0x8000
	btrfsOffset = 64 << 10
	// probeLimit is the end of the last byte any probe may read.
	probeLimit = btrfsOffset + 4096
)

// regions is a sparse guest device: head at 0, iso at isoOffset, btrfs at
// btrfsOffset, zeros in between, and it ends after the last non-empty
// region. The fuzzer mutates each superblock without dragging 64 KiB of
// zeros through every input.
type regions struct {
	head, iso, btrfs []byte
	size             int64
	maxRead          int64
}

func newRegions(head, iso, btrfs []byte) *regions {
	r := &regions{head: head, iso: iso, btrfs: btrfs, size: int64(len(head))}
	if len(iso) > 0 {
		r.size = max(r.size, isoOffset+int64(len(iso)))
	}
	if len(btrfs) > 0 {
		r.size = max(r.size, btrfsOffset+int64(len(btrfs)))
	}
	return r
}

func (r *regions) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	r.maxRead = max(r.maxRead, off+int64(len(p)))
	if off >= r.size {
		return 0, io.EOF
	}
	n := len(p)
	if rest := r.size - off; int64(n) > rest {
		n = int(rest)
	}
	clear(p[:n])
	// Later regions win where they overlap a long head.
	for _, reg := range []struct {
		at int64
		b  []byte
	}{{0, r.head}, {isoOffset, r.iso}, {btrfsOffset, r.btrfs}} {
		if len(reg.b) == 0 {
			continue
		}
		lo, hi := max(off, reg.at), min(off+int64(n), reg.at+int64(len(reg.b)))
		if lo < hi {
			copy(p[lo-off:hi-off], reg.b[lo-reg.at:hi-reg.at])
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// seeds reads testdata/superblocks: the first bytes of images made by
// mkfs (see testdata/superblocks/README), enough for every probe.
func seeds(tb testing.TB) map[string][]byte {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "superblocks", "*.img"))
	if err != nil || len(files) == 0 {
		tb.Fatalf("no seeds in testdata/superblocks: %v", err)
	}
	out := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		out[strings.TrimSuffix(filepath.Base(f), ".img")] = b
	}
	return out
}

// synthetic superblocks for the types this machine has no mkfs for
// (no btrfs-progs, no xorriso): the fields the probes read, at the
// offsets the on-disk formats define.
func isoPVD(label string) []byte {
	b := make([]byte, 2048)
	b[0] = 1
	copy(b[1:], "CD001")
	b[6] = 1
	copy(b[40:72], label+strings.Repeat(" ", 32-len(label)))
	return b
}

func btrfsSuper(label string) []byte {
	b := make([]byte, 4096)
	copy(b[0x20:], []byte{0x3f, 0x1e, 0x2d, 0x4c, 0x5b, 0x6a, 0x47, 0x98, 0x8a, 0x9b, 0x0c, 0x1d, 0x2e, 0x3f, 0x4a, 0x5b})
	copy(b[0x40:], "_BHRfS_M")
	copy(b[0x12b:], label)
	return b
}

// The seeds are what their names say, so the fuzzer starts inside every
// probe rather than at its magic check.
func TestSeedsProbe(t *testing.T) {
	// What blkid -p said about the full images (testdata/superblocks/README).
	want := map[string]FSInfo{
		"ext2":   {"ext2", "ext2-seed", "0b6d1a0e-1a3f-4c52-9b67-1c0b4e5b8a0d"},
		"ext3":   {"ext3", "ext3-seed", "0b6d1a0e-1a3f-4c52-9b67-1c0b4e5b8a0d"},
		"ext4":   {"ext4", "ext4-seed", "0b6d1a0e-1a3f-4c52-9b67-1c0b4e5b8a0d"},
		"vfat12": {"vfat", "FAT12SEED", "1212-1212"},
		"vfat16": {"vfat", "FAT16SEED", "1616-1616"},
		"vfat32": {"vfat", "FAT32SEED", "3232-3232"},
		"xfs":    {"xfs", "xfsseed", "3f1e2d4c-5b6a-4798-8a9b-0c1d2e3f4a5b"},
	}
	got := seeds(t)
	if len(got) != len(want) {
		t.Errorf("%d seeds, want %d", len(got), len(want))
	}
	for name, b := range got {
		info, err := Probe(bytes.NewReader(b))
		if err != nil || info != want[name] {
			t.Errorf("%s: Probe = %+v, %v; want %+v", name, info, err, want[name])
		}
	}
	if info, err := Probe(newRegions(nil, isoPVD("CDROM"), nil)); err != nil || info != (FSInfo{Type: "iso9660", Label: "CDROM"}) {
		t.Errorf("iso9660: %+v, %v", info, err)
	}
	if info, err := Probe(newRegions(nil, nil, btrfsSuper("bt"))); err != nil || info != (FSInfo{Type: "btrfs", Label: "bt", UUID: "3f1e2d4c-5b6a-4798-8a9b-0c1d2e3f4a5b"}) {
		t.Errorf("btrfs: %+v, %v", info, err)
	}
}

var (
	linuxUUID = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	fatUUID   = regexp.MustCompile(`^[0-9A-F]{4}-[0-9A-F]{4}$`)
)

// FuzzProbe feeds hostile superblocks to Probe and PartitionTable, which
// read guest bytes before anything is mounted. Beyond not panicking, a
// result must be one of the supported types with a mountable kernel type
// and modules, a UUID in blkid's spelling, and reads must stay within the
// fixed superblock areas: a guest must not steer the stub into reading
// (or waiting on) arbitrary offsets of a device.
func FuzzProbe(f *testing.F) {
	for _, b := range seeds(f) {
		f.Add(b, []byte(nil), []byte(nil))
	}
	f.Add([]byte(nil), isoPVD("CDROM"), []byte(nil))
	f.Add([]byte(nil), []byte(nil), btrfsSuper("bt"))
	// An ext4 head with a btrfs superblock too: the first probe wins.
	f.Add(seeds(f)["ext4"], []byte(nil), btrfsSuper("both"))
	f.Fuzz(func(t *testing.T, head, iso, btrfs []byte) {
		r := newRegions(head, iso, btrfs)
		info, err := Probe(r)
		if r.maxRead > probeLimit {
			t.Fatalf("Probe read up to byte %d", r.maxRead)
		}
		if err != nil {
			if info != (FSInfo{}) {
				t.Fatalf("error %v with info %+v", err, info)
			}
		} else {
			fstype, _ := info.MountType()
			if fstype == "" || len(info.Modules()) == 0 {
				t.Fatalf("type %q: no mount type or modules", info.Type)
			}
			switch info.Type {
			case "ext2", "ext3", "ext4", "xfs", "btrfs":
				if !linuxUUID.MatchString(info.UUID) {
					t.Fatalf("%s UUID %q", info.Type, info.UUID)
				}
			case "vfat":
				if !fatUUID.MatchString(info.UUID) {
					t.Fatalf("vfat UUID %q", info.UUID)
				}
			case "iso9660":
				if info.UUID != "" {
					t.Fatalf("iso9660 UUID %q", info.UUID)
				}
			}
			if again, err2 := Probe(newRegions(head, iso, btrfs)); err2 != nil || again != info {
				t.Fatalf("not deterministic: %+v then %+v, %v", info, again, err2)
			}
		}
		r.maxRead = 0
		switch PartitionTable(r) {
		case "", "mbr", "gpt":
		default:
			t.Fatal("unknown partition table kind")
		}
		if r.maxRead > 4096+8 {
			t.Fatalf("PartitionTable read up to byte %d", r.maxRead)
		}
	})
}
