package mount

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/vtpmboot/vtpmboot/boot/discover"
)

// Device is one filesystem candidate: a partition, or a whole disk that
// has no partitions.
type Device struct {
	Name string // "vda1", or "vdb" for an unpartitioned disk
	Disk string // "vda"
	// DiskIndex is the disk's 0-based position among all disks in Order,
	// GRUB's hdN.
	DiskIndex int
	// Partition is the 1-based partition number; 0 for a whole disk.
	Partition int
	// Table is the disk's partition table: "mbr", "gpt" or "".
	Table string
	// Path is the device node, e.g. /dev/vda1.
	Path string
	// FS is the probed filesystem; ProbeErr says why there is none.
	FS       FSInfo
	ProbeErr error
}

// GRUBDevice is GRUB's name for the device, the same pcrsim derives from
// a disk image with the same layout.
func (d Device) GRUBDevice() string { return discover.GRUBDevice(d.DiskIndex, d.Table, d.Partition) }

// skipped are block devices that never hold a guest's boot files.
var skipped = []string{"ram", "loop", "zram", "sr", "fd", "nbd", "dm-", "md"}

func isSkipped(name string) bool {
	for _, p := range skipped {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// Scan lists the block devices under sysClassBlock (/sys/class/block), in
// Order, with the partition table of each disk read from devDir (/dev) and
// each filesystem probed. It only reads.
func Scan(sysClassBlock, devDir string) ([]Device, error) {
	ents, err := os.ReadDir(sysClassBlock)
	if err != nil {
		return nil, fmt.Errorf("list block devices: %w", err)
	}
	parts := map[string][]Device{} // disk → partitions
	var disks []string
	for _, e := range ents {
		name := e.Name()
		if isSkipped(name) {
			continue
		}
		dir := filepath.Join(sysClassBlock, name)
		b, err := os.ReadFile(filepath.Join(dir, "partition"))
		if errors.Is(err, os.ErrNotExist) {
			disks = append(disks, name)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read %s/partition: %w", dir, err)
		}
		n, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%s/partition: bad partition number %q", dir, strings.TrimSpace(string(b)))
		}
		// A partition's sysfs directory sits inside its disk's.
		real, err := filepath.EvalSymlinks(dir)
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %w", dir, err)
		}
		disk := filepath.Base(filepath.Dir(real))
		parts[disk] = append(parts[disk], Device{Name: name, Disk: disk, Partition: n})
	}
	sort.Slice(disks, func(i, j int) bool { return NameLess(disks[i], disks[j]) })
	var out []Device
	for i, disk := range disks {
		table := ""
		if f, err := os.Open(filepath.Join(devDir, disk)); err == nil {
			table = PartitionTable(f)
			f.Close()
		}
		ps := parts[disk]
		if len(ps) == 0 {
			ps = []Device{{Name: disk, Disk: disk}}
		}
		sort.Slice(ps, func(a, b int) bool { return ps[a].Partition < ps[b].Partition })
		for _, p := range ps {
			p.DiskIndex, p.Table, p.Path = i, table, filepath.Join(devDir, p.Name)
			p.FS, p.ProbeErr = probeFile(p.Path)
			out = append(out, p)
		}
	}
	return out, nil
}

func probeFile(path string) (FSInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return FSInfo{}, err
	}
	defer f.Close()
	info, err := Probe(f)
	if err != nil {
		return FSInfo{}, fmt.Errorf("%s: %w", path, err)
	}
	return info, nil
}

// NameLess orders device names naturally: digit runs by value, so vda2 <
// vda10, and letter runs by length first, so Linux's vdz < vdaa.
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

// Select keeps the devices the vtpmboot.disk= selector names: a device
// ("vda1", "/dev/vda1"), a whole disk ("vda": all its partitions),
// "LABEL=x" or "UUID=x". An empty selector keeps everything. Disk indexes
// are untouched: GRUB numbers disks whether or not they are searched.
func Select(devs []Device, selector string) []Device {
	if selector == "" {
		return devs
	}
	var out []Device
	for _, d := range devs {
		if Matches(d, selector) {
			out = append(out, d)
		}
	}
	return out
}

// Matches reports whether d is what selector names (see Select).
func Matches(d Device, selector string) bool {
	if v, ok := strings.CutPrefix(selector, "LABEL="); ok {
		return d.ProbeErr == nil && d.FS.Label == v
	}
	if v, ok := strings.CutPrefix(selector, "UUID="); ok {
		return d.ProbeErr == nil && strings.EqualFold(d.FS.UUID, v)
	}
	name := strings.TrimPrefix(selector, "/dev/")
	return d.Name == name || d.Disk == name
}
