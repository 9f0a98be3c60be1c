package loaderimg

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vtpmboot/vtpmboot/internal/testenv"
)

// The qemu-i386-static path is forced (RefuseI386Env) because this kernel
// may run i386 binaries natively: the test proves GRUB 0.97's real shell,
// run through qemu-user, installs GRUB legacy on a real ext2 image.
func TestGRUBLegacySetupThroughQEMUUser(t *testing.T) {
	testenv.NeedCommands(t, "grub", qemuI386, "mkfs.ext2", "sfdisk")
	testenv.NeedFile(t, filepath.Join(GRUBLegacyDir, "stage1"), "apt-get install grub-legacy")
	t.Setenv(RefuseI386Env, "1")
	argv, err := GRUBLegacyCommand()
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(argv[0]) != qemuI386 || filepath.Base(argv[len(argv)-1]) != "grub" {
		t.Fatalf("GRUBLegacyCommand with i386 refused = %q, want qemu-i386-static then grub", argv)
	}
	c, err := ParseCase(GRUBLegacy, "qemu-user", []byte("source: test\n-- boot/grub/menu.lst --\ntitle x\nkernel /vmlinuz\n"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	img, err := BuildDisk(ctx, c, Payload{
		Kernel: func(string) ([]byte, error) { return []byte("k"), nil },
		Initrd: func(string) ([]byte, error) { return nil, nil },
	}, dir)
	if err != nil {
		t.Fatal(err)
	}
	disk, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	stage1, err := os.ReadFile(filepath.Join(GRUBLegacyDir, "stage1"))
	if err != nil {
		t.Fatal(err)
	}
	// setup copies stage1's code and messages ("GRUB \0Geom\0Hard Disk...")
	// into the MBR, keeping the partition table.
	if msg := stage1[0x180:0x1a0]; !bytes.Equal(disk[0x180:0x1a0], msg) {
		t.Errorf("MBR[0x180:0x1a0] = %q, want stage1's %q", disk[0x180:0x1a0], msg)
	}
	if disk[0x1fe] != 0x55 || disk[0x1ff] != 0xaa {
		t.Errorf("MBR signature lost")
	}
}

// With i386 refused and no qemu-i386-static on PATH, the error is one line
// saying both.
func TestGRUBLegacyNeitherWay(t *testing.T) {
	testenv.NeedCommands(t, "grub")
	grub, _ := exec.LookPath("grub")
	bin := t.TempDir()
	if err := os.Symlink(grub, filepath.Join(bin, "grub")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin)
	t.Setenv(RefuseI386Env, "1")
	_, err := GRUBLegacyCommand()
	if err == nil || !strings.Contains(err.Error(), "ENOEXEC") || !strings.Contains(err.Error(), qemuI386) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("err = %v, want one line naming ENOEXEC and %s", err, qemuI386)
	}
}
