package disks

import (
	"bytes"
	"errors"
	"sort"
	"strings"
	"testing"

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
	b, err := guestdisk.BuildBytes(d)
	if err != nil {
		t.Fatal(err)
	}
	return Disk{R: bytes.NewReader(b), Size: int64(len(b))}
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

func TestGRUBDevice(t *testing.T) {
	for _, c := range []struct {
		disk, part  int
		table, want string
	}{{0, 1, "mbr", "hd0,msdos1"}, {1, 2, "gpt", "hd1,gpt2"}, {0, 0, "", "hd0"}} {
		if got := GRUBDevice(c.disk, c.table, c.part); got != c.want {
			t.Errorf("GRUBDevice(%d,%q,%d) = %q", c.disk, c.table, c.part, got)
		}
	}
}
