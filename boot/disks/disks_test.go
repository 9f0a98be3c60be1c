package disks

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/vtpmboot/vtpmboot/boot/discover"
	"github.com/vtpmboot/vtpmboot/internal/fakekernel"
	"github.com/vtpmboot/vtpmboot/internal/guestdisk"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
)

func TestNameLess(t *testing.T) {
	names := []string{"vdb1", "vda10", "vdaa", "vda2", "vda1", "vdz", "vda", "xvda1", "nvme0n1p2", "nvme0n1p10", "nvme1n1p1"}
	sort.Slice(names, func(i, j int) bool { return NameLess(names[i], names[j]) })
	got := strings.Join(names, " ")
	// Only relative orders that matter are checked: vda's partitions
	// numerically, disks vdz before vdaa (Linux names the 27th disk vdaa),
	// and vda before vdb.
	for _, pair := range [][2]string{{"vda1", "vda2"}, {"vda2", "vda10"}, {"vda10", "vdb1"}, {"vdz", "vdaa"}, {"nvme0n1p2", "nvme0n1p10"}, {"nvme0n1p10", "nvme1n1p1"}} {
		if strings.Index(" "+got+" ", " "+pair[0]+" ") > strings.Index(" "+got+" ", " "+pair[1]+" ") {
			t.Errorf("%s sorted after %s in %q", pair[0], pair[1], got)
		}
	}
}

// Linux's disk_name(): a "p" before the number when the disk name ends in
// a digit.
func TestPartitionName(t *testing.T) {
	for _, c := range []struct {
		disk string
		n    int
		want string
	}{{"xvda", 1, "xvda1"}, {"vdb", 12, "vdb12"}, {"nvme0n1", 2, "nvme0n1p2"}, {"mmcblk0", 1, "mmcblk0p1"}, {"xvda", 0, "xvda"}} {
		if got := PartitionName(c.disk, c.n); got != c.want {
			t.Errorf("PartitionName(%q, %d) = %q, want %q", c.disk, c.n, got, c.want)
		}
	}
}

func build(t *testing.T, d guestdisk.Disk) Disk {
	t.Helper()
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := guestdisk.Build(d, img); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	return Disk{R: bytes.NewReader(b), Size: int64(len(b))}
}

func grubFiles(kernel string) []guestdisk.File {
	return []guestdisk.File{
		{Path: "/boot/grub/grub.cfg", Data: []byte("set timeout=5\nmenuentry 'L' {\n linux " + kernel + " x\n}\n")},
		{Path: kernel, Data: fakekernel.Image([]byte(kernel))},
	}
}

// The block layer on real images (mkfs, sfdisk): the names Linux gives
// the partitions, GRUB's names for them, blkid's labels, and what
// vtpmboot.disk= selects, for disks in the stub's order.
func TestReadAndSelect(t *testing.T) {
	testenv.NeedCommands(t, "mkfs.ext4", "mkfs.vfat", "sfdisk", "mcopy")
	a := build(t, guestdisk.Disk{Table: "gpt", Partitions: []guestdisk.Partition{
		{FS: "ext4", SizeMB: 8, Label: "root"}, {FS: "vfat", SizeMB: 8, Label: "BOOT"}, {FS: "raw", SizeMB: 1},
	}})
	a.Linux = "vda"
	b := build(t, guestdisk.Disk{Table: "mbr", Partitions: []guestdisk.Partition{{FS: "ext4", SizeMB: 8, Label: "b1"}}})
	b.Linux = "vdb"
	c := build(t, guestdisk.Disk{Partitions: []guestdisk.Partition{{FS: "ext4", SizeMB: 8, Label: "whole"}}})
	c.Linux = "nvme0n1"
	var all []Volume
	for i, d := range []Disk{a, b, c} {
		vols, err := Read(i, d)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, vols...)
	}
	var got []string
	for _, v := range all {
		s := v.Name + "=" + v.GRUBDevice() + ":" + v.Type
		if v.FS != nil {
			s += ":" + v.Label
		}
		got = append(got, s)
	}
	want := "vda1=hd0,gpt1:ext4:root vda2=hd0,gpt2:vfat:BOOT vda3=hd0,gpt3:unknown: no filesystem signature (starts with zeros) vdb1=hd1,msdos1:ext4:b1 nvme0n1=hd2:ext4:whole"
	if strings.Join(got, " ") != want {
		t.Errorf("volumes:\n got %s\nwant %s", strings.Join(got, " "), want)
	}
	for sel, want := range map[string]string{
		"":            "vda1 vda2 vda3 vdb1 nvme0n1",
		"vda2":        "vda2",
		"/dev/vdb":    "vdb1",
		"nvme0n1":     "nvme0n1",
		"LABEL=whole": "nvme0n1",
		"LABEL=BOOT":  "vda2",
		// guestdisk gives every ext filesystem the same UUID, for
		// reproducible images; matching ignores case as blkid does.
		"UUID=" + strings.ToUpper(all[0].UUID): "vda1 vdb1 nvme0n1",
		"LABEL=none":                           "",
		"LABEL=":                               "",
	} {
		var names []string
		for _, v := range Select(all, sel) {
			names = append(names, v.Name)
		}
		if strings.Join(names, " ") != want {
			t.Errorf("Select(%q) = %q, want %q", sel, names, want)
		}
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
			d := build(t, guestdisk.Disk{Table: "mbr", Partitions: c.parts})
			d.Linux = "vda"
			vols, err := Read(0, d)
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
				if c.skipped == 2 && !errors.Is(s.Err, discover.ErrNoConfig) {
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

// Which unreadable volumes may be passed over: only what cannot hold a
// /boot (no filesystem, swap, containers), never a corrupt or unread
// filesystem.
func TestSkippable(t *testing.T) {
	for typ, want := range map[string]bool{
		"unknown: no filesystem signature": true, "swap": true, "LVM2_member": true, "crypto_LUKS": true, "linux_raid_member": true,
		"btrfs": false, "xfs": false, "ext4": false, "vfat": false, "iso9660": false, "f2fs": false,
	} {
		v := Volume{Type: typ, Err: errors.New("x")}
		if got := v.Skippable(); got != want {
			t.Errorf("%s: Skippable = %v, want %v", typ, got, want)
		}
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
	d := build(t, guestdisk.Disk{Table: "mbr", Partitions: []guestdisk.Partition{{FS: "ext4", SizeMB: 8, Corrupt: true}, bad}})
	d.Linux = "vda"
	vols, err := Read(0, d)
	if err != nil {
		t.Fatal(err)
	}
	var se *ShadowedError
	if s := Choose(vols, ""); !errors.As(s.Err, &se) || se.Volume != "vda1" {
		t.Errorf("err %v, want the shadowing refusal for vda1", s.Err)
	}
}
