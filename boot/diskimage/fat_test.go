package diskimage

import (
	"io/fs"
	"testing"
	"testing/fstest"
)

func TestFAT(t *testing.T) {
	src := sourceTree(t, false, false)
	for _, tc := range []struct {
		bits, kib int
	}{{12, 4096}, {16, 16384}, {32, 40960}} {
		t.Run(fmtBits(tc.bits), func(t *testing.T) {
			img := mkfat(t, src, tc.bits, tc.kib)
			_, p := openBare(t, img)
			if p.Type != "vfat" {
				t.Errorf("Type = %q", p.Type)
			}
			if bits := p.FS.(*vfs).b.(*fatFS).bits; bits != tc.bits {
				t.Errorf("detected FAT%d, mkfs made FAT%d", bits, tc.bits)
			}
			if n := compareTree(t, src, p.FS, false); n < 15 {
				t.Errorf("compared %d files", n)
			}
			// 8.3 and long names match case-insensitively, as on the firmware side.
			for _, name := range []string{"readme.txt", "Boot/GRUB/Grub.Cfg", "A LONG FILE NAME WITH SPACES.CONF"} {
				if _, err := fs.Stat(p.FS, name); err != nil {
					t.Errorf("Stat(%q): %v", name, err)
				}
			}
			if err := fstest.TestFS(mustSub(t, p.FS, "boot/grub"), "grub.cfg"); err != nil {
				t.Error(err)
			}
		})
	}
}

func fmtBits(b int) string { return map[int]string{12: "FAT12", 16: "FAT16", 32: "FAT32"}[b] }
