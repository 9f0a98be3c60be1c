package diskimage

import (
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vtpmboot/vtpmboot/internal/testenv"
)

// In an ext4 casefold directory the guest's kernel opens "grub.cfg" when
// the entry is stored as "GRUB.CFG". vtpmboot matches names exactly, so
// such a lookup must fail with an error naming both spellings, never with
// fs.ErrNotExist: absence is what lets discovery fall through to a
// lower-priority configuration (menu.lst here) that the guest's kernel
// would consider shadowed. Directories without the flag stay exact.
func TestCasefoldDirectory(t *testing.T) {
	testenv.NeedCommands(t, "mkfs.ext4", "debugfs")
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "boot", "grub", "GRUB.CFG"), []byte("menuentry upper {\n}\n"))
	writeFile(t, filepath.Join(src, "boot", "grub", "menu.lst"), []byte("title legacy\n"))
	writeFile(t, filepath.Join(src, "boot", "vmlinuz"), []byte("kernel"))
	writeFile(t, filepath.Join(src, "plain", "README"), []byte("exact\n"))
	img := mkext(t, src, "8M", "-O", "casefold")
	// mkfs -d does not carry the +F attribute; debugfs sets it, as
	// chattr +F would have on the empty directories.
	for _, d := range []string{"/boot", "/boot/grub"} {
		sh(t, "debugfs", "-w", "-R", "set_inode_field "+d+" flags 0x40080000", img)
		if out := sh(t, "debugfs", "-R", "stat "+d, img); !strings.Contains(out, "Flags: 0x40080000") {
			t.Fatalf("debugfs did not set the casefold flag on %s:\n%s", d, out)
		}
	}
	_, p := openBare(t, img)
	for _, ok := range []string{"boot/grub/GRUB.CFG", "boot/grub/menu.lst", "boot/vmlinuz", "plain/README"} {
		if _, err := fs.Stat(p.FS, ok); err != nil {
			t.Errorf("Stat(%q): %v", ok, err)
		}
	}
	for name, stored := range map[string]string{"boot/grub/grub.cfg": "GRUB.CFG", "boot/VMLINUZ": "vmlinuz", "BOOT/vmlinuz": "boot"} {
		_, err := fs.Stat(p.FS, name)
		if name == "BOOT/vmlinuz" {
			// The root directory has no casefold flag: exact, absent.
			if !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Stat(%q) = %v, want fs.ErrNotExist (root is case-sensitive)", name, err)
			}
			continue
		}
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Stat(%q) = %v, want an error that is not fs.ErrNotExist", name, err)
			continue
		}
		if !strings.Contains(err.Error(), `"`+stored+`"`) || !strings.Contains(err.Error(), "casefold") {
			t.Errorf("Stat(%q) = %v, want it to name %q and casefold", name, err, stored)
		}
	}
	for _, absent := range []string{"boot/grub/grub.conf", "plain/readme"} {
		if _, err := fs.Stat(p.FS, absent); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Stat(%q) = %v, want fs.ErrNotExist", absent, err)
		}
	}
}
