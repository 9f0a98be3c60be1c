package predict

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/vtpmboot/vtpmboot/boot/disks"
)

// Live system paths, variables so tests can point them at fixtures.
var (
	liveSysClassBlock = "/sys/class/block"
	liveDevDir        = "/dev"
	liveMountInfo     = "/proc/self/mountinfo"
)

// OpenLive opens the running system as the stub will see it at its next
// boot: every whole disk in the stub's order, its partitions read by
// boot/disks with the names and GRUB device names the stub gives them. A
// partition mounted here is then searched through the mounted tree
// instead, since the kernel's view is what the disk holds once the system
// is shut down cleanly (a raw read of a mounted filesystem can miss what
// is still in the page cache or the journal, which the stub does not
// replay); the tree is cut at mount points, as the stub sees one
// filesystem per partition (/boot on its own partition is searched as
// that partition, and "/"'s own /boot directory is its empty mount
// point). A partition not mounted is read raw, never mounted. This is what
// `pcrsim predict --root /` means (docs/pcrsim.md).
func OpenLive() (*Guest, error) {
	names, err := liveDisks(liveSysClassBlock)
	if err != nil {
		return nil, err
	}
	mounts, err := readMountInfo(liveMountInfo)
	if err != nil {
		return nil, err
	}
	g := &Guest{keys: map[string]string{}}
	for i, name := range names {
		path := filepath.Join(liveDevDir, name)
		f, _, size, err := openImageFile(path)
		if err != nil {
			g.Close()
			return nil, err
		}
		g.closers = append(g.closers, f)
		vols, err := disks.Read(i, disks.Disk{Linux: name, R: f, Size: size})
		if err != nil {
			g.Close()
			return nil, err
		}
		for j, v := range vols {
			dir, ok := mounts[devNumber(filepath.Join(liveDevDir, v.Device))]
			if !ok {
				continue
			}
			fsys, closer, err := openMountedFS(dir)
			if err != nil {
				vols[j].FS, vols[j].Err = nil, fmt.Errorf("%s mounted on %s: %w", v.Device, dir, err)
				continue
			}
			g.closers = append(g.closers, closer)
			vols[j].FS, vols[j].Err = fsys, nil
			vols[j].Name = v.Device + " (mounted on " + dir + ")"
		}
		g.Volumes = append(g.Volumes, vols...)
		g.all = append(g.all, vols...)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no disks in %s", liveSysClassBlock)
	}
	return g, nil
}

// liveDisks lists the whole disks in the stub's order (disks.NameLess).
func liveDisks(sysClassBlock string) ([]string, error) {
	ents, err := os.ReadDir(sysClassBlock)
	if err != nil {
		return nil, fmt.Errorf("list block devices: %w", err)
	}
	var names []string
	for _, e := range ents {
		name := e.Name()
		if !disks.Searched(name) {
			continue
		}
		if _, err := os.Stat(filepath.Join(sysClassBlock, name, "partition")); err == nil {
			continue
		}
		names = append(names, name)
	}
	sort.Slice(names, func(i, j int) bool { return disks.NameLess(names[i], names[j]) })
	return names, nil
}

// devNumber is the device number of a device node, or 0.
func devNumber(path string) uint64 {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0
	}
	return st.Rdev
}

// readMountInfo maps device number → the first mount point of that device
// whose root is the filesystem's root (a bind mount of a subdirectory is
// not the filesystem the stub sees).
func readMountInfo(path string) (map[uint64]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	out := map[uint64]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || fields[3] != "/" {
			continue
		}
		maj, min, ok := strings.Cut(fields[2], ":")
		a, err1 := strconv.ParseUint(maj, 10, 32)
		b, err2 := strconv.ParseUint(min, 10, 32)
		if !ok || err1 != nil || err2 != nil {
			continue
		}
		dev := uint64(mkdev(uint32(a), uint32(b)))
		if _, seen := out[dev]; !seen {
			out[dev] = unescapeMount(fields[4])
		}
	}
	return out, sc.Err()
}

// mkdev is the Linux encoding of a device number (glibc's makedev).
func mkdev(major, minor uint32) uint64 {
	return uint64(major&0xfff)<<8 | uint64(minor&0xff) | uint64(major&^0xfff)<<32 | uint64(minor&^0xff)<<12
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a blank).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// openMountedFS is the filesystem mounted on dir, confined to it (os.Root:
// symlinks and ".." stay inside) and cut at mount points below it.
func openMountedFS(dir string) (fs.FS, io.Closer, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, nil, err
	}
	st, err := os.Stat(dir)
	if err != nil {
		root.Close()
		return nil, nil, err
	}
	return oneFS{root: root.FS(), dev: st.Sys().(*syscall.Stat_t).Dev}, root, nil
}

// oneFS hides everything on other filesystems than dev: a mount point
// reads as an empty directory, as on the disk itself.
type oneFS struct {
	root fs.FS
	dev  uint64
}

func (o oneFS) Open(name string) (fs.File, error) {
	f, err := o.root.Open(name)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && sys.Dev != o.dev {
		f.Close()
		if st.IsDir() {
			return emptyDir{st}, nil
		}
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return f, nil
}

// emptyDir is a mount point seen from the filesystem below it.
type emptyDir struct{ fi fs.FileInfo }

func (d emptyDir) Stat() (fs.FileInfo, error) { return d.fi, nil }
func (d emptyDir) Read([]byte) (int, error)   { return 0, errors.New("is a directory") }
func (d emptyDir) Close() error               { return nil }
func (d emptyDir) ReadDir(int) ([]fs.DirEntry, error) {
	return nil, nil
}
