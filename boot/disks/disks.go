// Package disks is the guest's disks as the stub and pcrsim both see them:
// partition tables and filesystems read by boot/diskimage in userspace,
// partitions named as Linux names them, the scan order, GRUB's device
// names, vtpmboot.disk= matching, and the one rule for partitions that
// cannot be read. The stub hands it the guest's block devices opened
// read-only; pcrsim hands it disk image files. Nothing here mounts,
// writes, or lets a kernel parse a guest filesystem.
package disks

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strconv"
	"strings"

	"github.com/vtpmboot/vtpmboot/boot/diskimage"
)

// Disk is one whole disk of the guest, in the guest's disk order.
type Disk struct {
	// Linux is the guest kernel's name for the disk ("xvda", "nvme0n1"),
	// or "" when it is not known (pcrsim --disk). With it, partitions get
	// the names Linux gives them and vtpmboot.disk= can select them.
	Linux string
	// Path is the image file or device node the bytes come from; it
	// names the disk in errors.
	Path string
	// Label prefixes partition names of a disk without a Linux name when
	// a guest has several ("disk 2 "), so messages stay unambiguous.
	Label string
	R     io.ReaderAt
	Size  int64
}

// Volume is one partition of a guest disk, or a whole disk that holds a
// filesystem without a partition table.
type Volume struct {
	// Name is how messages name the volume: "xvda1" in the stub,
	// "xvda1 (guest.img partition 1)" or "partition 1" in pcrsim.
	Name string
	// Device is the Linux name ("xvda1", "nvme0n1p1", or the disk's own
	// name for a whole disk); "" when the disk has no Linux name.
	Device string
	// Disk is the Linux name of the disk ("" when unknown), DiskIndex its
	// 0-based position in the guest's disk order (GRUB's hdN).
	Disk      string
	DiskIndex int
	// Index is the 1-based partition number Linux uses (logical MBR
	// partitions from 5); 0 for a whole disk without a table.
	Index int
	// Table is the disk's partition table: "mbr", "gpt" or "".
	Table string
	// Start is the byte offset of the volume on its disk.
	Start int64
	// Type, Label and UUID are the filesystem's (diskimage.Partition).
	Type, Label, UUID string
	// FS is the filesystem, nil when it cannot be read; Err says why.
	FS  fs.FS
	Err error
}

// GRUBDevice is GRUB's name for the volume ("hd0,msdos1", "hd1,gpt2",
// "hd0" for a disk without a table).
func (v Volume) GRUBDevice() string {
	if v.Index < 0 {
		return "-" // a break in the partition table, not a partition
	}
	if v.Index == 0 {
		return GRUBDevice(v.DiskIndex, "", 0)
	}
	return GRUBDevice(v.DiskIndex, v.Table, v.Index)
}

// GRUBDevice names a partition the way GRUB does: disk is 0-based,
// partition 1-based; table is "mbr" or "gpt"; partition 0 means a disk
// with no partition table. GRUB2 configs that write ($root)/vmlinuz put it
// into BOOT_IMAGE=, so it reaches PCR 5.
func GRUBDevice(disk int, table string, partition int) string {
	switch {
	case partition == 0:
		return fmt.Sprintf("hd%d", disk)
	case table == "gpt":
		return fmt.Sprintf("hd%d,gpt%d", disk, partition)
	}
	return fmt.Sprintf("hd%d,msdos%d", disk, partition)
}

// PartitionName is Linux's name for partition n of disk: a disk whose
// name ends in a digit gets a "p" before the number (nvme0n1p1, mmcblk0p2),
// others none (xvda1), as the kernel's disk_name() does.
func PartitionName(disk string, n int) string {
	if n == 0 {
		return disk
	}
	if disk != "" && disk[len(disk)-1] >= '0' && disk[len(disk)-1] <= '9' {
		return disk + "p" + strconv.Itoa(n)
	}
	return disk + strconv.Itoa(n)
}

// Read reads the partition table and filesystems of one disk, which is
// disk number index in the guest's order. A disk whose partition table
// cannot be read at all is an error: the stub would search it before any
// later disk, so nothing later may be trusted in its place.
func Read(index int, d Disk) ([]Volume, error) {
	name := d.Path
	if name == "" {
		name = "/dev/" + d.Linux
	}
	img, err := diskimage.New(d.R, d.Size, name)
	if err != nil {
		return nil, err
	}
	var out []Volume
	for _, p := range img.Partitions() {
		v := Volume{
			Disk: d.Linux, DiskIndex: index, Index: p.Index, Table: img.Table(), Start: p.Start,
			Type: p.Type, Label: p.Label, UUID: p.UUID, FS: p.FS, Err: p.Err,
		}
		if p.Index == 0 {
			v.Table = ""
		}
		switch {
		case p.Index < 0:
			// A break in the table itself: no Linux device, no GRUB name.
			v.Name = d.Label + p.Name
			if d.Linux != "" {
				v.Name = d.Linux + " " + p.Name
			}
		case d.Linux != "" && d.Path != "":
			v.Device = PartitionName(d.Linux, p.Index)
			v.Name = v.Device + " (" + d.Path + " " + p.Name + ")"
		case d.Linux != "":
			v.Device = PartitionName(d.Linux, p.Index)
			v.Name = v.Device
		default:
			v.Name = d.Label + p.Name
		}
		if v.FS == nil && v.Err == nil {
			v.Err = fmt.Errorf("%s %s: no filesystem", name, p.Name)
		}
		out = append(out, v)
	}
	return out, nil
}

// Select keeps the volumes the vtpmboot.disk= selector names (see
// Matches); an empty selector keeps everything. Disk indexes stay as they
// were: GRUB numbers disks whether or not they are searched.
func Select(vols []Volume, selector string) []Volume {
	if selector == "" {
		return vols
	}
	var out []Volume
	for _, v := range vols {
		if Matches(v, selector) {
			out = append(out, v)
		}
	}
	return out
}

// Matches reports whether v is what a vtpmboot.disk= selector names: a
// partition ("xvda1", "/dev/xvda1"), a whole disk ("xvda": all its
// partitions), "LABEL=x" (exact) or "UUID=x" (any case).
func Matches(v Volume, selector string) bool {
	if l, ok := strings.CutPrefix(selector, "LABEL="); ok {
		return v.Type != "" && v.Label != "" && v.Label == l
	}
	if u, ok := strings.CutPrefix(selector, "UUID="); ok {
		return v.UUID != "" && strings.EqualFold(v.UUID, u)
	}
	name := strings.TrimPrefix(selector, "/dev/")
	return name != "" && (v.Device == name || v.Disk == name)
}

// Unreadable says why a volume is not searched, the same words in the
// stub's console and in pcrsim's notes.
func (v Volume) Unreadable() string {
	return fmt.Sprintf("%s: not searched: %v", v.Name, v.Err)
}

// Skippable reports whether the one rule lets the search pass over a
// volume it cannot read. Only what cannot hold a guest's /boot is passed
// over (with a note): no filesystem at all, swap, and the LVM, RAID and
// LUKS containers vtpmboot does not open. A filesystem it finds corrupt,
// or one it does not read (btrfs, say), is not: if it comes before the
// volume that would boot, the search stops there, because a guest that
// breaks its primary /boot must not make the stub boot a leftover
// configuration further down, and a boot loader that reads that
// filesystem would boot from it. vtpmboot.disk= excludes such a volume
// explicitly.
func (v Volume) Skippable() bool {
	if v.FS != nil {
		return true
	}
	if errors.Is(v.Err, diskimage.ErrCorrupt) {
		return false
	}
	return strings.HasPrefix(v.Type, "unknown") || passOver[v.Type]
}

var passOver = map[string]bool{"swap": true, "LVM2_member": true, "linux_raid_member": true, "crypto_LUKS": true}

// Searched reports whether the stub searches a block device of this name:
// ram, loop, zram, CD-ROM (sr), floppy, nbd, device-mapper and md devices
// hold no guest boot configuration of their own, or are views of other
// disks. pcrsim's live mode (--root /) asks the same question.
func Searched(name string) bool {
	for _, p := range []string{"ram", "loop", "zram", "sr", "fd", "nbd", "dm-", "md"} {
		if strings.HasPrefix(name, p) {
			return false
		}
	}
	return true
}

// NameLess orders device names naturally: digit runs by value, so vda2 <
// vda10, and letter runs by length first, so Linux's vdz < vdaa. The stub
// searches disks in this order; pcrsim takes the xl config's order, which
// xl maps to the same names.
func NameLess(a, b string) bool {
	for a != "" && b != "" {
		ra, restA := run(a)
		rb, restB := run(b)
		da, db := isDigit(ra[0]), isDigit(rb[0])
		switch {
		case da && db:
			na, nb := strings.TrimLeft(ra, "0"), strings.TrimLeft(rb, "0")
			if len(na) != len(nb) {
				return len(na) < len(nb)
			}
			if na != nb {
				return na < nb
			}
		case da != db:
			return da
		default:
			if len(ra) != len(rb) {
				return len(ra) < len(rb)
			}
			if ra != rb {
				return ra < rb
			}
		}
		a, b = restA, restB
	}
	return len(a) < len(b)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func run(s string) (string, string) {
	d := isDigit(s[0])
	i := 1
	for i < len(s) && isDigit(s[i]) == d {
		i++
	}
	return s[:i], s[i:]
}
