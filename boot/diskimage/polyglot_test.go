package diskimage

import (
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// extlinuxVBR is the first 90 bytes (jump, OEM name, BPB area) that
// extlinux 6.04 (Debian 12's, `extlinux --install`) wrote into sector 0 of
// a 32 MiB mkfs.ext4 volume: a boot sector that must not count as a
// second filesystem. Sectors per cluster 0 is what keeps it from being a
// FAT BPB.
const extlinuxVBR = "eb58905359534c494e555800020000000000000000000000200040000000000000000100" +
	"000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"

// An ext volume that also carries a FAT boot sector or another
// filesystem's signature in its first 1024 bytes (which mkfs.ext4
// zeroes) is a polyglot: blkid calls it ambivalent and GRUB takes
// whichever driver probes first. It is refused as corrupt, so the one
// rule for unreadable volumes (disks.Volume.Skippable) stops the search
// there instead of passing over it.
func TestPolyglotExtRefused(t *testing.T) {
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "boot", "grub", "grub.cfg"), []byte("menuentry x {\n linux /boot/vmlinuz\n}\n"))
	ext := mkext(t, src, "8M")
	fatSrc := t.TempDir()
	writeFile(t, filepath.Join(fatSrc, "x"), []byte("x"))
	bootSector, err := os.ReadFile(mkfat(t, fatSrc, 16, 16384))
	if err != nil {
		t.Fatal(err)
	}
	vbr, err := hex.DecodeString(extlinuxVBR)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		head  []byte
		other string // "" when the volume must read as plain ext
	}{
		{"mkfs.ext4 as is", nil, ""},
		{"extlinux boot sector", vbr, ""},
		{"FAT16 boot sector from mkfs.vfat", bootSector[:512], "vfat"},
		{"XFS magic", []byte("XFSB"), "xfs"},
		{"LUKS magic", []byte("LUKS\xba\xbe"), "crypto_LUKS"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, err := os.ReadFile(ext)
			if err != nil {
				t.Fatal(err)
			}
			copy(b, c.head)
			img, err := New(bytesReader(b), int64(len(b)), "poly.img")
			if err != nil {
				t.Fatal(err)
			}
			ps := img.Partitions()
			if len(ps) != 1 {
				t.Fatalf("partitions %+v", ps)
			}
			p := ps[0]
			if c.other == "" {
				if p.Err != nil || p.Type != "ext4" {
					t.Fatalf("type %q, err %v; want a readable ext4", p.Type, p.Err)
				}
				if _, err := fs.ReadFile(p.FS, "boot/grub/grub.cfg"); err != nil {
					t.Fatal(err)
				}
				return
			}
			if p.FS != nil || !errors.Is(p.Err, ErrCorrupt) {
				t.Fatalf("FS %v, err %v; want a refusal wrapping ErrCorrupt", p.FS, p.Err)
			}
			if want := "ambiguous: ext and " + c.other; p.Type != want {
				t.Errorf("type %q, want %q", p.Type, want)
			}
			for _, w := range []string{"poly.img whole disk", "an ext superblock and a " + c.other + " signature", "wipefs"} {
				if !strings.Contains(p.Err.Error(), w) {
					t.Errorf("error %q lacks %q", p.Err, w)
				}
			}
		})
	}
}
