package discover

import (
	"fmt"
	"io"
	"io/fs"

	"github.com/vtpmboot/vtpmboot/boot/disks"
	"github.com/vtpmboot/vtpmboot/boot/entry"
	"github.com/vtpmboot/vtpmboot/boot/kexec"
	"github.com/vtpmboot/vtpmboot/boot/measure"
)

// OpenFile opens a kernel or initrd named by an entry. It refuses anything
// but a regular file (a guest could point an entry at a device node or a
// FIFO) and anything over limit, and returns the size it checked.
func OpenFile(fsys fs.FS, name string, limit int64) (fs.File, int64, error) {
	// Stat first: opening a FIFO in a mounted guest tree (pcrsim --root)
	// would block until someone writes to it.
	if st, err := fs.Stat(fsys, name); err != nil {
		return nil, 0, fmt.Errorf("open /%s: %w", name, err)
	} else if !st.Mode().IsRegular() {
		return nil, 0, fmt.Errorf("/%s is not a regular file (%v)", name, st.Mode().Type())
	}
	f, err := fsys.Open(name)
	if err != nil {
		return nil, 0, fmt.Errorf("open /%s: %w", name, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("stat /%s: %w", name, err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, 0, fmt.Errorf("/%s is not a regular file (%v)", name, st.Mode().Type())
	}
	if st.Size() > limit {
		f.Close()
		return nil, 0, fmt.Errorf("/%s: %w: %d bytes, limit %d", name, entry.ErrTooLarge, st.Size(), limit)
	}
	return f, st.Size(), nil
}

// checkFiles makes sure the entry's files exist, are regular and within
// the limits before anything is read, so a broken entry fails with a
// message naming the entry and the path.
func checkFiles(p disks.Volume, e entry.Entry) error {
	where := fmt.Sprintf("entry %s %q (%s:%d) on %s", e.MenuPath, e.Title, "/"+e.Config, e.Line, p.Name)
	f, size, err := OpenFile(p.FS, e.Kernel, entry.MaxKernelSize)
	if err != nil {
		return fmt.Errorf("%s: kernel: %w", where, err)
	}
	// What kexec_file_load would refuse is refused now, before anything
	// is measured: PCRs describing a boot that never happens are worse
	// than no boot.
	err = CheckBootable(SourceName(e.Kernel), f, size, e.Cmdline)
	f.Close()
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	var total int64
	for _, name := range e.Initrds {
		f, size, err := OpenFile(p.FS, name, entry.MaxInitrdTotalSize)
		if err != nil {
			return fmt.Errorf("%s: initrd: %w", where, err)
		}
		f.Close()
		total += size
		if total > entry.MaxInitrdTotalSize {
			return fmt.Errorf("%s: initrds: %w: %d bytes together, limit %d", where, entry.ErrTooLarge, total, int64(entry.MaxInitrdTotalSize))
		}
	}
	return nil
}

// SourceName is how a kernel or initrd is named in measurements and event
// logs: its path inside its own filesystem. The stub and pcrsim both use
// it, so their event logs agree byte for byte.
func SourceName(path string) string { return "/" + path }

// fsSource streams a file from a partition: pcrsim hashes it, the stub
// copies it into sealed memory and measures that.
type fsSource struct {
	fsys  fs.FS
	path  string
	limit int64
}

func (s fsSource) Name() string { return SourceName(s.path) }

func (s fsSource) Open() (io.ReadCloser, error) {
	f, size, err := OpenFile(s.fsys, s.path, s.limit)
	if err != nil {
		return nil, err
	}
	// The size checked at open is the size measured and loaded: a file
	// that changes while it is read fails (measure.ExactReader).
	return struct {
		io.Reader
		io.Closer
	}{measure.ExactReader(s.Name(), f, size), f}, nil
}

// Inputs turns the choice into measurement inputs streamed from the
// partition. pcrsim measures them as they are; the stub loads them (the
// initrds through measure.InitrdImage) into sealed memory and measures
// what it loaded.
func (c *Choice) Inputs() measure.Inputs {
	in := measure.Inputs{
		Kernel:  fsSource{c.Volume.FS, c.Entry.Kernel, entry.MaxKernelSize},
		Cmdline: c.Entry.Cmdline,
	}
	for _, p := range c.Entry.Initrds {
		in.Initrds = append(in.Initrds, fsSource{c.Volume.FS, p, entry.MaxInitrdTotalSize})
	}
	return in
}

// CheckBootable reads a kernel's setup header and applies kexec's checks
// to it and to the command line (kexec.CheckKernel, kexec.CheckCmdline).
// The selector calls it for every chosen entry, and pcrsim for kernels
// given as files, so the stub and pcrsim refuse the same entries.
func CheckBootable(name string, kernel io.Reader, size int64, cmdline string) error {
	head := make([]byte, min(kexec.HeaderSize, size))
	if _, err := io.ReadFull(kernel, head); err != nil {
		return fmt.Errorf("kernel %s: read its header: %w", name, err)
	}
	h, err := kexec.CheckKernel(head, size)
	if err != nil {
		return fmt.Errorf("kernel %s: %w", name, err)
	}
	if err := kexec.CheckCmdline(cmdline, h); err != nil {
		return fmt.Errorf("kernel %s: %w", name, err)
	}
	return nil
}
