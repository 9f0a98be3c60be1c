package predict

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"

	"github.com/vtpmboot/vtpmboot/boot/discover"
	"github.com/vtpmboot/vtpmboot/boot/disks"
	"github.com/vtpmboot/vtpmboot/boot/measure"
)

// Guest is a guest's filesystems as pcrsim sees them: a mounted tree, or
// the volumes of raw disk images read by boot/disks exactly as the stub
// reads the guest's block devices, so discovery, selection and the rule
// for unreadable partitions are the stub's own.
type Guest struct {
	// Volumes are the volumes searched, in the stub's search order.
	Volumes []disks.Volume
	// all are every volume of the disks opened, before Restrict.
	all     []disks.Volume
	keys    map[string]string // Volume.Name → cache identity
	closers []io.Closer
}

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
// admin) as the one volume. os.Root confines every lookup, symlinks and
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
	v := disks.Volume{Name: "root " + dir, FS: root.FS()}
	return &Guest{Volumes: []disks.Volume{v}, all: []disks.Volume{v}, keys: map[string]string{}, closers: []io.Closer{root}}, nil
}

// DiskSpec is one raw disk image of a guest.
type DiskSpec struct {
	Path string
	// Linux is the name the guest kernel gives the disk ("xvda"); when set,
	// partitions are named like the stub names them ("xvda1") and
	// vtpmboot.disk= can select them. Empty for --disk.
	Linux string
	// Label prefixes partition names when several disks are given without
	// Linux names ("disk 1 "), so messages stay unambiguous.
	Label string
}

// OpenDisks opens raw disk images, in the guest's disk order (disk i is
// GRUB's hd<i>), never mounting anything: boot/disks reads them in
// userspace. An image that cannot be opened at all is an error; a
// partition that cannot be read is a volume with Err set.
func OpenDisks(specs []DiskSpec) (*Guest, error) {
	g := &Guest{}
	for i, d := range specs {
		if err := g.AddDisk(i, d); err != nil {
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
		g.keys = map[string]string{}
	}
	f, id, size, err := openImageFile(d.Path)
	if err != nil {
		return err
	}
	vols, err := disks.Read(i, disks.Disk{Linux: d.Linux, Path: d.Path, Label: d.Label, R: f, Size: size})
	if err != nil {
		f.Close()
		return err
	}
	g.closers = append(g.closers, f)
	for _, v := range vols {
		if v.FS != nil {
			g.keys[v.Name] = fmt.Sprintf("%s@%d", id, v.Start)
		}
	}
	g.Volumes = append(g.Volumes, vols...)
	g.all = append(g.all, vols...)
	return nil
}

// Restrict keeps only the volumes the stub's vtpmboot.disk= selector
// keeps (disks.Select). It needs disks opened with Linux names.
func (g *Guest) Restrict(selector string) {
	g.Volumes = disks.Select(g.Volumes, selector)
}

// DeviceNames lists the Linux names of every volume opened, for messages.
func (g *Guest) DeviceNames() []string {
	var out []string
	for _, v := range g.all {
		if v.Device != "" {
			out = append(out, v.Device)
		}
	}
	return out
}

// openImageFile opens an image read-only and identifies it from the open
// descriptor (fstat), so the identity is that of the bytes being read even
// if the path is replaced meanwhile.
func openImageFile(path string) (*os.File, string, int64, error) {
	// O_NONBLOCK: a FIFO named as a disk must be refused, not waited on
	// (open(2) of a FIFO blocks until a writer appears). It changes
	// nothing for regular files and block devices.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
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
type Selection = discover.Selection

// Choose runs the stub's search (discover.Choose: discovery, selection and
// the rule for volumes that cannot be read).
func (g *Guest) Choose(selector string) *Selection {
	return discover.Choose(g.Volumes, selector)
}

// Inputs are the choice's measurement inputs (discover's Choice.Inputs,
// streamed from the partition), each source tagged with a cache identity
// when the partition is part of a disk image: image file identity,
// partition offset and path inside the filesystem.
func (g *Guest) Inputs(c *discover.Choice) measure.Inputs {
	in := c.Inputs()
	base, ok := g.keys[c.Volume.Name]
	if !ok {
		return in
	}
	in.Kernel = Keyed(in.Kernel, base+":"+c.Entry.Kernel)
	for i := range in.Initrds {
		in.Initrds[i] = Keyed(in.Initrds[i], base+":"+c.Entry.Initrds[i])
	}
	return in
}
