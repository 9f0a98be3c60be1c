package guestdisk

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vtpmboot/vtpmboot/internal/testenv"
)

func TestBuildMBRWithDirtyJournal(t *testing.T) {
	testenv.NeedCommands(t, "mkfs.ext4", "sfdisk", "debugfs", "dumpe2fs", "mkfs.vfat", "mcopy")
	out := filepath.Join(t.TempDir(), "disk.img")
	err := Build(Disk{Table: "mbr", Partitions: []Partition{
		{FS: "ext4", SizeMB: 16, Label: "boot", DirtyJournal: true, Files: []File{
			{Path: "/boot/grub/grub.cfg", Data: []byte("menuentry x {\n}\n")},
		}},
		{FS: "vfat", SizeMB: 8, Files: []File{{Path: "/EFI/x.txt", Data: []byte("hi")}}},
	}}, out)
	if err != nil {
		t.Fatal(err)
	}
	b, err := exec.Command("sfdisk", "-d", out).CombinedOutput()
	if err != nil {
		t.Fatalf("sfdisk -d: %v: %s", err, b)
	}
	if got := strings.Count(string(b), "start="); got != 2 {
		t.Fatalf("want 2 partitions, sfdisk says:\n%s", b)
	}
	// debugfs reads the file back from partition 1 at its 1 MiB offset.
	p1 := filepath.Join(t.TempDir(), "p1")
	if b, err := exec.Command("dd", "if="+out, "of="+p1, "bs=1M", "skip=1", "count=16", "status=none").CombinedOutput(); err != nil {
		t.Fatalf("dd: %v: %s", err, b)
	}
	got, err := exec.Command("debugfs", "-R", "cat /boot/grub/grub.cfg", p1).Output()
	if err != nil || string(got) != "menuentry x {\n}\n" {
		t.Fatalf("grub.cfg on partition 1 = %q, %v", got, err)
	}
	h, _ := exec.Command("dumpe2fs", "-h", p1).CombinedOutput()
	if !strings.Contains(string(h), "needs_recovery") {
		t.Fatalf("journal is not dirty:\n%s", h)
	}
}
