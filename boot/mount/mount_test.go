package mount

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/vtpmboot/vtpmboot/internal/guestdisk"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
)

func sh(t *testing.T, name string, args ...string) {
	t.Helper()
	if b, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, b)
	}
}

func sparse(t *testing.T, path string, size int64) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}

// blkid is the independent reading of each image.
func blkid(t *testing.T, img string) FSInfo {
	t.Helper()
	var info FSInfo
	for _, tag := range []string{"TYPE", "LABEL", "UUID"} {
		out, _ := exec.Command("blkid", "-p", "-o", "value", "-s", tag, img).Output()
		v := strings.TrimSpace(string(out))
		switch tag {
		case "TYPE":
			info.Type = v
		case "LABEL":
			info.Label = v
		case "UUID":
			info.UUID = v
		}
	}
	return info
}

type fsImage struct {
	typ   string
	label string
	make  func(t *testing.T, img string)
}

func images() []fsImage {
	ext := func(typ string) func(*testing.T, string) {
		return func(t *testing.T, img string) {
			sh(t, "mkfs."+typ, "-q", "-F", "-L", typ+"-boot", "-U", "0b6d1a0e-1a3f-4c52-9b67-1c0b4e5b8a0d", img, "8M")
		}
	}
	return []fsImage{
		{"ext2", "ext2-boot", ext("ext2")},
		{"ext3", "ext3-boot", ext("ext3")},
		{"ext4", "ext4-boot", ext("ext4")},
		{"vfat", "EFI", func(t *testing.T, img string) {
			sh(t, "mkfs.vfat", "-n", "EFI", "-i", "4E2A1B3C", "-C", img, "8192")
		}},
		{"vfat", "BIGFAT", func(t *testing.T, img string) {
			sparse(t, img, 40<<20)
			sh(t, "mkfs.vfat", "-F", "32", "-n", "BIGFAT", "-i", "DEADBEEF", img)
		}},
		{"vfat", "", func(t *testing.T, img string) {
			sh(t, "mkfs.vfat", "-i", "00000001", "-C", img, "4096")
		}},
		{"xfs", "xfsboot", func(t *testing.T, img string) {
			sparse(t, img, 320<<20)
			sh(t, "mkfs.xfs", "-q", "-L", "xfsboot", "-m", "uuid=3f1e2d4c-5b6a-4798-8a9b-0c1d2e3f4a5b", img)
		}},
	}
}

func TestProbeAgainstBlkid(t *testing.T) {
	testenv.NeedCommands(t, "mkfs.ext4", "mkfs.ext3", "mkfs.ext2", "mkfs.vfat", "mkfs.xfs", "blkid")
	dir := t.TempDir()
	for i, im := range images() {
		img := filepath.Join(dir, fmt.Sprintf("%d.img", i))
		im.make(t, img)
		want := blkid(t, img)
		if want.Type != im.typ || want.Label != im.label {
			t.Fatalf("blkid says %+v for the %s image labelled %q", want, im.typ, im.label)
		}
		got, err := probeFile(img)
		if err != nil {
			t.Errorf("%s: %v", im.typ, err)
			continue
		}
		if got != want {
			t.Errorf("%s %q: Probe = %+v, blkid = %+v", im.typ, im.label, got, want)
		}
		if fstype, opts := got.MountType(); fstype == "" || (strings.HasPrefix(im.typ, "ext") && opts != "noload") || (im.typ == "xfs" && opts != "norecovery") {
			t.Errorf("%s: mount type %q options %q", im.typ, fstype, opts)
		}
	}
}

func TestProbeUnknownAndShort(t *testing.T) {
	dir := t.TempDir()
	for name, data := range map[string][]byte{
		"empty": nil,
		"short": []byte("XFS"),
		"zeros": make([]byte, 1<<20),
		"junk":  []byte(strings.Repeat("vtpmboot", 20000)),
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, data, 0o644)
		if _, err := probeFile(p); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: err = %v, want one naming the file", name, err)
		}
	}
}

func TestNameLess(t *testing.T) {
	names := []string{"vdb1", "vda10", "vdaa", "vda2", "vda1", "vdz", "vda", "xvda1", "nvme0n1p2", "nvme0n1p10", "nvme1n1p1"}
	sort.Slice(names, func(i, j int) bool { return NameLess(names[i], names[j]) })
	want := "vda vdz vdaa vda1 vda2 vda10 vdb1 xvda1 nvme0n1p2 nvme0n1p10 nvme1n1p1"
	// Only relative orders that matter are checked: vda's partitions
	// numerically, disks vdz before vdaa, and vda before vdb.
	got := strings.Join(names, " ")
	for _, pair := range [][2]string{{"vda1", "vda2"}, {"vda2", "vda10"}, {"vda10", "vdb1"}, {"vdz", "vdaa"}, {"nvme0n1p2", "nvme0n1p10"}, {"nvme0n1p10", "nvme1n1p1"}} {
		if strings.Index(" "+got+" ", " "+pair[0]+" ") > strings.Index(" "+got+" ", " "+pair[1]+" ") {
			t.Errorf("%s sorted after %s in %q (e.g. %q)", pair[0], pair[1], got, want)
		}
	}
}

// fakeSys builds a /sys/class/block lookalike: Scan reads only the
// directory names, the "partition" files and where the symlinks point,
// all of which the real sysfs has in this shape.
func fakeSys(t *testing.T, root string, devs map[string]int, parent map[string]string) string {
	class := filepath.Join(root, "class", "block")
	os.MkdirAll(class, 0o755)
	for name, part := range devs {
		var real string
		if part == 0 {
			real = filepath.Join(root, "devices", name)
		} else {
			real = filepath.Join(root, "devices", parent[name], name)
			os.MkdirAll(real, 0o755)
			os.WriteFile(filepath.Join(real, "partition"), []byte(fmt.Sprintf("%d\n", part)), 0o644)
		}
		os.MkdirAll(real, 0o755)
		if err := os.Symlink(real, filepath.Join(class, name)); err != nil {
			t.Fatal(err)
		}
	}
	return class
}

func TestScanOrderAndGRUBDevices(t *testing.T) {
	testenv.NeedCommands(t, "mkfs.ext4", "mkfs.vfat", "sfdisk")
	root := t.TempDir()
	dev := filepath.Join(root, "dev")
	os.MkdirAll(dev, 0o755)
	// Whole disks with real partition tables (only the table is read)...
	small := []guestdisk.Partition{{FS: "ext4", SizeMB: 8}}
	if err := guestdisk.Build(guestdisk.Disk{Table: "gpt", Partitions: small}, filepath.Join(dev, "vda")); err != nil {
		t.Fatal(err)
	}
	if err := guestdisk.Build(guestdisk.Disk{Table: "mbr", Partitions: small}, filepath.Join(dev, "vdb")); err != nil {
		t.Fatal(err)
	}
	// ...and partition nodes holding real filesystems.
	sh(t, "mkfs.ext4", "-q", "-F", "-L", "root", filepath.Join(dev, "vda1"), "8M")
	sh(t, "mkfs.vfat", "-n", "BOOT", "-C", filepath.Join(dev, "vda2"), "4096")
	sh(t, "mkfs.ext4", "-q", "-F", "-L", "ten", filepath.Join(dev, "vda10"), "8M")
	sh(t, "mkfs.ext4", "-q", "-F", "-L", "b1", filepath.Join(dev, "vdb1"), "8M")
	sh(t, "mkfs.ext4", "-q", "-F", "-L", "whole", filepath.Join(dev, "vdc"), "8M")
	os.WriteFile(filepath.Join(dev, "vdb3"), []byte("swap, say"), 0o644)
	class := fakeSys(t, root,
		map[string]int{"vda": 0, "vdb": 0, "vdc": 0, "loop0": 0, "sr0": 0, "ram0": 0, "vda10": 10, "vda2": 2, "vda1": 1, "vdb3": 3, "vdb1": 1},
		map[string]string{"vda1": "vda", "vda2": "vda", "vda10": "vda", "vdb1": "vdb", "vdb3": "vdb"})
	devs, err := Scan(class, dev)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range devs {
		s := d.Name + "=" + d.GRUBDevice()
		if d.ProbeErr == nil {
			s += ":" + d.FS.Type + ":" + d.FS.Label
		} else {
			s += ":-"
		}
		got = append(got, s)
	}
	want := "vda1=hd0,gpt1:ext4:root vda2=hd0,gpt2:vfat:BOOT vda10=hd0,gpt10:ext4:ten vdb1=hd1,msdos1:ext4:b1 vdb3=hd1,msdos3:- vdc=hd2:ext4:whole"
	if strings.Join(got, " ") != want {
		t.Errorf("Scan:\n got %s\nwant %s", strings.Join(got, " "), want)
	}

	for sel, want := range map[string]string{
		"":           "vda1 vda2 vda10 vdb1 vdb3 vdc",
		"vda10":      "vda10",
		"/dev/vdb":   "vdb1 vdb3",
		"vdc":        "vdc",
		"LABEL=ten":  "vda10",
		"LABEL=BOOT": "vda2",
		"UUID=" + strings.ToUpper(devs[0].FS.UUID): "vda1",
		"LABEL=none": "",
	} {
		var names []string
		for _, d := range Select(devs, sel) {
			names = append(names, d.Name)
		}
		if strings.Join(names, " ") != want {
			t.Errorf("Select(%q) = %q, want %q", sel, names, want)
		}
	}
	if _, err := Scan(filepath.Join(root, "nope"), dev); err == nil {
		t.Error("Scan of a missing directory succeeded")
	}
}
