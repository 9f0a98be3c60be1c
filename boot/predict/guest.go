package predict

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/vtpmboot/vtpmboot/boot/discover"
	"github.com/vtpmboot/vtpmboot/boot/diskimage"
	"github.com/vtpmboot/vtpmboot/boot/measure"
	"github.com/vtpmboot/vtpmboot/boot/mount"
)

// Guest is a guest's filesystems as pcrsim sees them: a mounted tree or
// the partitions of raw disk images, each turned into a discover.Partition
// so discovery and selection run through boot/discover exactly as in the
// stub.
type Guest struct {
	// Parts are the readable filesystems, in the stub's search order.
	Parts []discover.Partition
	// Notes name partitions that could not be read (unsupported or corrupt
	// filesystem, swap, LVM...). They only matter when no configuration is
	// found at all, or when one of them comes before the partition that
	// holds the chosen configuration (the stub would search it first).
	Notes []Note
	// Devices are the partitions as the stub's vtpmboot.disk= matching
	// sees them (mount.Matches), for disks opened with a Linux name.
	Devices []mount.Device
	keys    map[string]string // Partition.Name → cache identity
	order   map[string]int    // Partition.Name → position among all partitions
	closers []io.Closer
}

// Note is an unreadable partition.
type Note struct {
	Partition string
	pos       int
	Err       error
}

func (n Note) String() string { return n.Err.Error() }

// Close releases the disk images.
func (g *Guest) Close() error {
	var first error
	for _, c := range g.closers {
		if err := c.Close(); err != nil && first == nil {
			first = err
		}
	}
	g.closers = nil
	return first
}

// OpenRoot uses a mounted guest tree (e.g. a read-only mount made by the
// admin) as the one partition. os.Root confines every lookup, symlinks and
// ".." included, to dir: a guest's /boot/vmlinuz -> /etc/shadow resolves
// inside the guest tree, never on the host.
func OpenRoot(dir string) (*Guest, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, unwrapPathErr(err))
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%s: not a directory", dir)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, unwrapPathErr(err))
	}
	name := "root " + dir
	return &Guest{
		Parts:   []discover.Partition{{Name: name, FS: root.FS()}},
		keys:    map[string]string{},
		order:   map[string]int{name: 0},
		closers: []io.Closer{root},
	}, nil
}

// DiskSpec is one raw disk image of a guest.
type DiskSpec struct {
	Path string
	// Linux is the name the guest kernel gives the disk ("xvda"); when set,
	// partitions are named like the stub names them ("xvda1") and Devices
	// is filled for vtpmboot.disk= matching. Empty for --disk.
	Linux string
	// Label prefixes partition names when several disks are given without
	// Linux names ("disk 1 "), so messages stay unambiguous.
	Label string
}

// OpenDisks opens raw disk images, in the guest's disk order (disk i is
// GRUB's hd<i>), never mounting anything: diskimage reads them in
// userspace. An image that cannot be opened at all is an error; a
// partition that cannot be read becomes a Note.
func OpenDisks(disks []DiskSpec) (*Guest, error) {
	g := &Guest{keys: map[string]string{}, order: map[string]int{}}
	for i, d := range disks {
		if err := g.addDisk(i, d); err != nil {
			g.Close()
			return nil, err
		}
	}
	return g, nil
}

// AddDisk opens one more disk as disk index i; callers that discover disk
// by disk (pcrsim's xl mode stops at the first disk holding a
// configuration) use it instead of OpenDisks.
func (g *Guest) AddDisk(i int, d DiskSpec) error {
	if g.keys == nil {
		g.keys, g.order = map[string]string{}, map[string]int{}
	}
	return g.addDisk(i, d)
}

func (g *Guest) addDisk(diskIndex int, d DiskSpec) error {
	f, id, size, err := openImageFile(d.Path)
	if err != nil {
		return err
	}
	img, err := diskimage.New(f, size, d.Path)
	if err != nil {
		f.Close()
		return err
	}
	g.closers = append(g.closers, f)
	// diskimage does not say which table it read; GRUB's device name
	// depends on it ("hd0,gpt1" vs "hd0,msdos1") and reaches PCR 5 via
	// BOOT_IMAGE=, so ask the same function the stub uses on /dev/xvda.
	table := mount.PartitionTable(f)
	for _, p := range img.Partitions() {
		name := p.Name
		if d.Linux != "" {
			dev := d.Linux
			if p.Index > 0 {
				dev += strconv.Itoa(p.Index)
			}
			name = dev + " (" + d.Path + " " + p.Name + ")"
			md := mount.Device{Name: dev, Disk: d.Linux, DiskIndex: diskIndex, Partition: p.Index, Table: table}
			if p.Index == 0 {
				md.Table = ""
			}
			if p.Size > 0 && p.Start >= 0 && p.Start < size {
				md.FS, md.ProbeErr = mount.Probe(io.NewSectionReader(f, p.Start, min(p.Size, size-p.Start)))
			} else {
				md.ProbeErr = p.Err
			}
			g.Devices = append(g.Devices, md)
		} else if d.Label != "" {
			name = d.Label + p.Name
		}
		pos := len(g.order)
		g.order[name] = pos
		if p.FS == nil {
			err := p.Err
			if err == nil {
				err = fmt.Errorf("%s %s: no filesystem", d.Path, p.Name)
			}
			g.Notes = append(g.Notes, Note{Partition: name, pos: pos, Err: err})
			continue
		}
		gd := discover.GRUBDevice(diskIndex, table, p.Index)
		if p.Index == 0 {
			gd = discover.GRUBDevice(diskIndex, "", 0)
		}
		g.Parts = append(g.Parts, discover.Partition{Name: name, FS: p.FS, GRUBDevice: gd})
		g.keys[name] = fmt.Sprintf("%s@%d", id, p.Start)
	}
	return nil
}

// Restrict keeps only the partitions the stub's vtpmboot.disk= selector
// keeps (mount.Matches: "xvda1", "xvda", "/dev/xvda1", "LABEL=", "UUID=").
// It needs disks opened with Linux names.
func (g *Guest) Restrict(selector string) {
	if selector == "" {
		return
	}
	keep := map[string]bool{}
	for _, d := range g.Devices {
		if mount.Matches(d, selector) {
			keep[d.Name] = true
		}
	}
	devOf := func(name string) string { n, _, _ := strings.Cut(name, " "); return n }
	var parts []discover.Partition
	for _, p := range g.Parts {
		if keep[devOf(p.Name)] {
			parts = append(parts, p)
		}
	}
	g.Parts = parts
	var notes []Note
	for _, n := range g.Notes {
		if keep[devOf(n.Partition)] {
			notes = append(notes, n)
		}
	}
	g.Notes = notes
}

// openImageFile opens an image read-only and identifies it from the open
// descriptor (fstat), so the identity is that of the bytes being read even
// if the path is replaced meanwhile.
func openImageFile(path string) (*os.File, string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, "", 0, fmt.Errorf("disk image %s: %w", path, unwrapPathErr(err))
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, "", 0, fmt.Errorf("disk image %s: %w", path, unwrapPathErr(err))
	}
	size := st.Size()
	switch {
	case st.Mode().IsRegular():
	case st.Mode()&fs.ModeDevice != 0 && st.Mode()&fs.ModeCharDevice == 0:
		// stat gives 0 for a block device; its end is where seeking stops.
		if size, err = f.Seek(0, io.SeekEnd); err != nil {
			f.Close()
			return nil, "", 0, fmt.Errorf("disk image %s: size: %w", path, err)
		}
	case st.IsDir():
		f.Close()
		return nil, "", 0, fmt.Errorf("disk image %s: is a directory (use --root for a mounted tree)", path)
	default:
		f.Close()
		return nil, "", 0, fmt.Errorf("disk image %s: not a regular file or block device", path)
	}
	id := path
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		id = fmt.Sprintf("dev=%d,ino=%d,size=%d,mtime=%d.%09d", sys.Dev, sys.Ino, size, sys.Mtim.Sec, sys.Mtim.Nsec)
	}
	return f, id, size, nil
}

func unwrapPathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Selection is the result of discovery and selection over a Guest.
type Selection struct {
	Found  []discover.Found
	Choice *discover.Choice
	// Err is why nothing can boot (Choice is nil then).
	Err error
	// Shadowed are unreadable partitions searched before the one holding
	// the chosen configuration: if one of them held a configuration, the
	// stub would boot that instead.
	Shadowed []Note
}

// Choose runs discovery and selection (discover.Discover, then
// discover.ChooseFrom: the stub's own selector). With no configuration
// anywhere, the unreadable partitions are listed in the error, since one
// of them probably holds it.
func (g *Guest) Choose(selector string) *Selection {
	s := &Selection{Found: discover.Discover(g.Parts)}
	c, err := discover.ChooseFrom(s.Found, selector)
	if err != nil {
		if errors.Is(err, discover.ErrNoConfig) && len(g.Notes) > 0 {
			var ns []string
			for _, n := range g.Notes {
				ns = append(ns, n.String())
			}
			err = fmt.Errorf("%w; unreadable partitions: %s", err, strings.Join(ns, "; "))
		}
		s.Err = err
		return s
	}
	s.Choice = c
	at := g.order[c.Partition.Name]
	for _, n := range g.Notes {
		if n.pos < at {
			s.Shadowed = append(s.Shadowed, n)
		}
	}
	return s
}

// Inputs are the choice's measurement inputs (discover's Choice.Inputs,
// streamed from the partition), each source tagged with a cache identity
// when the partition is part of a disk image: image file identity,
// partition offset and path inside the filesystem.
func (g *Guest) Inputs(c *discover.Choice) measure.Inputs {
	in := c.Inputs()
	base, ok := g.keys[c.Partition.Name]
	if !ok {
		return in
	}
	in.Kernel = Keyed(in.Kernel, base+":"+c.Entry.Kernel)
	for i := range in.Initrds {
		in.Initrds[i] = Keyed(in.Initrds[i], base+":"+c.Entry.Initrds[i])
	}
	return in
}
