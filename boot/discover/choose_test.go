package discover

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/vtpmboot/vtpmboot/boot/disks"
	"github.com/vtpmboot/vtpmboot/internal/fakekernel"
	"github.com/vtpmboot/vtpmboot/internal/guestdisk"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
)

// buildDisk makes d with the real tools and returns it as a disk the
// stub would read.
func buildDisk(t *testing.T, d guestdisk.Disk) disks.Disk {
	t.Helper()
	b, err := guestdisk.BuildBytes(d)
	if err != nil {
		t.Fatal(err)
	}
	return disks.Disk{R: bytes.NewReader(b), Size: int64(len(b))}
}

func grubFiles(kernel string) []guestdisk.File {
	return []guestdisk.File{
		{Path: "/boot/grub/grub.cfg", Data: []byte("set timeout=5\nmenuentry 'L' {\n linux " + kernel + " x\n}\n")},
		{Path: kernel, Data: fakekernel.Image([]byte(kernel))},
	}
}

// The one rule for volumes that cannot be read, as the stub and pcrsim
// both apply it through Choose.
func TestChooseSkipRule(t *testing.T) {
	testenv.NeedCommands(t, "mkfs.ext4", "sfdisk")
	boot := guestdisk.Partition{FS: "ext4", SizeMB: 8, Files: grubFiles("/boot/vmlinuz")}
	other := guestdisk.Partition{FS: "ext4", SizeMB: 8, Files: grubFiles("/boot/other")}
	corrupt := guestdisk.Partition{FS: "ext4", SizeMB: 8, Corrupt: true}
	raw := guestdisk.Partition{FS: "raw", SizeMB: 1}
	for name, c := range map[string]struct {
		parts   []guestdisk.Partition
		kernel  string // "" for a refusal
		skipped int
		errHas  string
	}{
		"raw passed over":            {[]guestdisk.Partition{raw, boot}, "boot/vmlinuz", 1, ""},
		"corrupt after is a note":    {[]guestdisk.Partition{boot, corrupt}, "boot/vmlinuz", 1, ""},
		"corrupt before refuses":     {[]guestdisk.Partition{corrupt, boot}, "", 1, "vda1 cannot be read"},
		"first config wins":          {[]guestdisk.Partition{other, boot}, "boot/other", 0, ""},
		"nothing readable lists why": {[]guestdisk.Partition{corrupt, raw}, "", 2, "0 inodes per group"},
	} {
		t.Run(name, func(t *testing.T) {
			d := buildDisk(t, guestdisk.Disk{Table: "mbr", Partitions: c.parts})
			d.Linux = "vda"
			vols, err := disks.Read(0, d)
			if err != nil {
				t.Fatal(err)
			}
			s := Choose(vols, "")
			if len(s.Skipped) != c.skipped {
				t.Errorf("%d skipped, want %d", len(s.Skipped), c.skipped)
			}
			if c.kernel == "" {
				if s.Choice != nil || s.Err == nil || !strings.Contains(s.Err.Error(), c.errHas) {
					t.Fatalf("choice %v, err %v; want a refusal with %q", s.Choice, s.Err, c.errHas)
				}
				var se *ShadowedError
				if strings.Contains(c.errHas, "cannot be read") && (!errors.As(s.Err, &se) || se.Hint != "vtpmboot.disk=vda2") {
					t.Errorf("err %#v, want a ShadowedError hinting vtpmboot.disk=vda2", s.Err)
				}
				if c.skipped == 2 && !errors.Is(s.Err, ErrNoConfig) {
					t.Errorf("err %v, want ErrNoConfig", s.Err)
				}
				return
			}
			if s.Err != nil || s.Choice.Entry.Kernel != c.kernel {
				t.Fatalf("choice %+v, err %v; want kernel %s", s.Choice, s.Err, c.kernel)
			}
		})
	}
}

// The rule for unreadable volumes is applied before the entry is judged:
// a corrupt volume searched first is the refusal even when the
// configuration found after it names a kernel that cannot boot.
func TestShadowedBeforeBrokenEntry(t *testing.T) {
	testenv.NeedCommands(t, "mkfs.ext4", "sfdisk")
	bad := guestdisk.Partition{FS: "ext4", SizeMB: 8, Files: []guestdisk.File{
		{Path: "/boot/grub/grub.cfg", Data: []byte("set timeout=5\nmenuentry 'L' {\n linux /boot/vmlinuz x\n}\n")},
		{Path: "/boot/vmlinuz", Data: []byte("not a bzImage")},
	}}
	d := buildDisk(t, guestdisk.Disk{Table: "mbr", Partitions: []guestdisk.Partition{{FS: "ext4", SizeMB: 8, Corrupt: true}, bad}})
	d.Linux = "vda"
	vols, err := disks.Read(0, d)
	if err != nil {
		t.Fatal(err)
	}
	var se *ShadowedError
	if s := Choose(vols, ""); !errors.As(s.Err, &se) || se.Volume != "vda1" {
		t.Errorf("err %v, want the shadowing refusal for vda1", s.Err)
	}
}
