package diskimage

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/vtpmboot/vtpmboot/internal/testenv"
)

// blkidInfo is blkid's independent reading of an image: TYPE, LABEL, UUID.
func blkidInfo(t *testing.T, img string) [3]string {
	t.Helper()
	var out [3]string
	for i, tag := range []string{"TYPE", "LABEL", "UUID"} {
		b, _ := exec.Command("blkid", "-p", "-o", "value", "-s", tag, img).Output()
		out[i] = strings.TrimSpace(string(b))
	}
	return out
}

func sparseFile(t *testing.T, path string, size int64) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}

func wholeDisk(t *testing.T, img string) Partition {
	t.Helper()
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	im, err := New(bytes.NewReader(b), int64(len(b)), img)
	if err != nil {
		t.Fatal(err)
	}
	ps := im.Partitions()
	if len(ps) != 1 || ps[0].Index != 0 {
		t.Fatalf("%s: partitions %+v, want the whole disk", img, ps)
	}
	return ps[0]
}

// Labels and UUIDs select partitions (vtpmboot.disk=LABEL=, GRUB's search
// --fs-uuid), so they must read as blkid reads them, on images the real
// mkfs tools made.
func TestIdentifyAgainstBlkid(t *testing.T) {
	testenv.NeedCommands(t, "mkfs.ext4", "mkfs.ext3", "mkfs.ext2", "mkfs.vfat", "mkfs.xfs", "blkid")
	dir := t.TempDir()
	const u = "0b6d1a0e-1a3f-4c52-9b67-1c0b4e5b8a0d"
	for i, c := range []struct {
		name string
		make func(img string)
	}{
		{"ext2", func(img string) { sh(t, "mkfs.ext2", "-q", "-F", "-L", "ext2-boot", "-U", u, img, "8M") }},
		{"ext3", func(img string) { sh(t, "mkfs.ext3", "-q", "-F", "-L", "ext3-boot", "-U", u, img, "8M") }},
		{"ext4", func(img string) { sh(t, "mkfs.ext4", "-q", "-F", "-L", "ext4-boot", "-U", u, img, "8M") }},
		{"ext4 no label", func(img string) { sh(t, "mkfs.ext4", "-q", "-F", img, "8M") }},
		{"fat12", func(img string) { sh(t, "mkfs.vfat", "-n", "EFI", "-i", "4E2A1B3C", "-C", img, "8192") }},
		{"fat16", func(img string) { sh(t, "mkfs.vfat", "-F", "16", "-n", "F16", "-i", "16161616", "-C", img, "16384") }},
		{"fat32", func(img string) {
			sparseFile(t, img, 40<<20)
			sh(t, "mkfs.vfat", "-F", "32", "-n", "BIGFAT", "-i", "DEADBEEF", img)
		}},
		{"fat no label", func(img string) { sh(t, "mkfs.vfat", "-i", "00000001", "-C", img, "4096") }},
		// A relabel that rewrote only the root directory's label entry:
		// blkid (and GRUB) take that one, not the boot sector's copy.
		{"fat root label wins", func(img string) {
			sh(t, "mkfs.vfat", "-n", "ROOTDIR", "-i", "0000ABCD", "-C", img, "8192")
			b, _ := os.ReadFile(img)
			copy(b[43:54], "BOOTSECTOR ")
			os.WriteFile(img, b, 0o644)
		}},
		{"xfs", func(img string) {
			sparseFile(t, img, 320<<20)
			sh(t, "mkfs.xfs", "-q", "-L", "xfsboot", "-m", "uuid=3f1e2d4c-5b6a-4798-8a9b-0c1d2e3f4a5b", img)
		}},
	} {
		img := filepath.Join(dir, fmt.Sprintf("%d.img", i))
		c.make(img)
		want := blkidInfo(t, img)
		if want[0] == "" {
			t.Fatalf("%s: blkid recognises nothing", c.name)
		}
		p := wholeDisk(t, img)
		if got := [3]string{p.Type, p.Label, p.UUID}; got != want {
			t.Errorf("%s: type/label/uuid %q, blkid says %q", c.name, got, want)
		}
	}
}

// Types whose mkfs the test tools leave out (btrfs-progs, xorriso): the
// fields read, at the offsets the on-disk formats define.
func TestIdentifySynthetic(t *testing.T) {
	b := make([]byte, 128<<10)
	copy(b[0x10020:], []byte{0x3f, 0x1e, 0x2d, 0x4c, 0x5b, 0x6a, 0x47, 0x98, 0x8a, 0x9b, 0x0c, 0x1d, 0x2e, 0x3f, 0x4a, 0x5b})
	copy(b[0x10040:], "_BHRfS_M")
	copy(b[0x1012b:], "suse-boot")
	if l, u := identify(bytes.NewReader(b), "btrfs"); l != "suse-boot" || u != "3f1e2d4c-5b6a-4798-8a9b-0c1d2e3f4a5b" {
		t.Errorf("btrfs: %q %q", l, u)
	}
	iso := make([]byte, 0x8000+2048)
	iso[0x8000] = 1
	copy(iso[0x8001:], "CD001")
	copy(iso[0x8000+40:], "CDROM                           ")
	if l, u := identify(bytes.NewReader(iso), "iso9660"); l != "CDROM" || u != "" {
		t.Errorf("iso9660: %q %q", l, u)
	}
	// Short reads identify nothing rather than fail.
	for _, kind := range []string{"ext", "xfs", "btrfs", "iso9660", "vfat", "swap"} {
		if l, u := identify(bytes.NewReader([]byte("XFSB")), kind); l != "" || u != "" {
			t.Errorf("%s on 4 bytes: %q %q", kind, l, u)
		}
	}
}

var (
	linuxUUID = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	fatUUID   = regexp.MustCompile(`^[0-9A-F]{4}-[0-9A-F]{4}$`)
)

// checkIdent is what FuzzImage asserts of every partition: a UUID in the
// spelling of its type, a label without NUL.
func checkIdent(t *testing.T, p Partition) {
	if strings.ContainsRune(p.Label, 0) {
		t.Fatalf("%s: label %q holds a NUL", p.Name, p.Label)
	}
	if p.UUID == "" {
		return
	}
	switch p.Type {
	case "ext2", "ext3", "ext4", "xfs", "btrfs":
		if !linuxUUID.MatchString(p.UUID) {
			t.Fatalf("%s UUID %q", p.Type, p.UUID)
		}
	case "vfat":
		if !fatUUID.MatchString(p.UUID) {
			t.Fatalf("vfat UUID %q", p.UUID)
		}
	default:
		t.Fatalf("type %q has UUID %q", p.Type, p.UUID)
	}
}

// The seeds in testdata/superblocks are what their README says blkid read.
func TestSeedSuperblocks(t *testing.T) {
	want := map[string][3]string{
		"ext2":   {"ext2", "ext2-seed", "0b6d1a0e-1a3f-4c52-9b67-1c0b4e5b8a0d"},
		"ext3":   {"ext3", "ext3-seed", "0b6d1a0e-1a3f-4c52-9b67-1c0b4e5b8a0d"},
		"ext4":   {"ext4", "ext4-seed", "0b6d1a0e-1a3f-4c52-9b67-1c0b4e5b8a0d"},
		"vfat12": {"vfat", "FAT12SEED", "1212-1212"},
		"vfat16": {"vfat", "FAT16SEED", "1616-1616"},
		"vfat32": {"vfat", "FAT32SEED", "3232-3232"},
		"xfs":    {"xfs", "xfsseed", "3f1e2d4c-5b6a-4798-8a9b-0c1d2e3f4a5b"},
	}
	kinds := map[string]string{"ext2": "ext", "ext3": "ext", "ext4": "ext", "vfat12": "vfat", "vfat16": "vfat", "vfat32": "vfat", "xfs": "xfs"}
	for name, w := range want {
		b, err := os.ReadFile(filepath.Join("testdata", "superblocks", name+".img"))
		if err != nil {
			t.Fatal(err)
		}
		kind, _ := detect(bytes.NewReader(b), 1<<30)
		if kind != kinds[name] {
			t.Errorf("%s: detected %q", name, kind)
		}
		if l, u := identify(bytes.NewReader(b), kind); l != w[1] || u != w[2] {
			t.Errorf("%s: label %q uuid %q, want %q %q", name, l, u, w[1], w[2])
		}
	}
}
