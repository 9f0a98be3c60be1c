//go:build linux

package mount

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/vtpmboot/vtpmboot/boot/discover"
)

// Flags are the mount flags of every guest filesystem.
const Flags = unix.MS_RDONLY | unix.MS_NODEV | unix.MS_NOSUID | unix.MS_NOEXEC

// Mounted is a guest filesystem mounted read-only.
type Mounted struct {
	Device Device
	Dir    string
	Root   *os.Root
}

// Partition is the mount as discover sees it: a file system rooted at the
// mount point that symlinks and ".." cannot leave.
func (m *Mounted) Partition() discover.Partition {
	return discover.Partition{Name: m.Device.Name, FS: m.Root.FS(), GRUBDevice: m.Device.GRUBDevice()}
}

// SetReadOnly marks the block device read-only in the kernel (BLKROSET),
// so nothing, not even a filesystem driver replaying a journal, can write
// it from this guest.
func SetReadOnly(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	if err := unix.IoctlSetPointerInt(int(f.Fd()), unix.BLKROSET, 1); err != nil {
		return fmt.Errorf("BLKROSET %s: %w", path, err)
	}
	ro, err := unix.IoctlGetInt(int(f.Fd()), unix.BLKROGET)
	if err != nil {
		return fmt.Errorf("BLKROGET %s: %w", path, err)
	}
	if ro != 1 {
		return fmt.Errorf("%s is still writable after BLKROSET", path)
	}
	return nil
}

// Mount makes d (and its whole disk) read-only, then mounts it read-only
// at dir with the options that keep journals from being replayed.
func Mount(d Device, dir string) (*Mounted, error) {
	if d.ProbeErr != nil {
		return nil, d.ProbeErr
	}
	fstype, opts := d.FS.MountType()
	if fstype == "" {
		return nil, fmt.Errorf("%s: cannot mount %q", d.Path, d.FS.Type)
	}
	if err := SetReadOnly(filepath.Join(filepath.Dir(d.Path), d.Disk)); err != nil {
		return nil, err
	}
	if d.Disk != d.Name {
		if err := SetReadOnly(d.Path); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("mount %s: %w", d.Path, err)
	}
	if err := unix.Mount(d.Path, dir, fstype, Flags, opts); err != nil {
		return nil, fmt.Errorf("mount %s (%s, ro,%s) on %s: %w", d.Path, fstype, opts, dir, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		unix.Unmount(dir, 0)
		return nil, fmt.Errorf("open %s: %w", dir, err)
	}
	return &Mounted{Device: d, Dir: dir, Root: root}, nil
}

// Unmount closes the root and unmounts; kexec follows, so a busy mount is
// detached lazily rather than left to block the boot.
func (m *Mounted) Unmount() error {
	m.Root.Close()
	if err := unix.Unmount(m.Dir, 0); err != nil {
		if err2 := unix.Unmount(m.Dir, unix.MNT_DETACH); err2 != nil {
			return fmt.Errorf("unmount %s: %w", m.Dir, err)
		}
	}
	return nil
}
