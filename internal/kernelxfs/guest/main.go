// Command guest is the /init of the kernelxfs generator's QEMU guest: it
// loads the kernel's XFS driver, lets that driver write the structures
// mkfs.xfs -p cannot (see the jobs below) onto the disks named on the
// command line, reads every file back through the same driver, and writes
// the manifests as JSON to the output disk. It always powers off.
//
// Command line: kernelxfs.jobs=vda:v5-1k,vdb:v4,vdc:dirty kernelxfs.out=vdd
// (a job's device may be a partition: vda2:dirty-bls).
package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vtpmboot/vtpmboot/internal/kernelxfs"
)

func main() {
	err := run()
	if err != nil {
		fmt.Fprintf(os.Stderr, "kernelxfs: FAIL: %v\n", err)
	} else {
		fmt.Fprintln(os.Stderr, "kernelxfs: OK")
	}
	unix.Sync()
	if os.Getpid() == 1 {
		unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	}
}

func logf(format string, a ...any) { fmt.Fprintf(os.Stderr, "kernelxfs: "+format+"\n", a...) }

func run() error {
	for _, m := range []struct{ src, dir, typ string }{
		{"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"}, {"devtmpfs", "/dev", "devtmpfs"},
	} {
		os.MkdirAll(m.dir, 0o755)
		if err := unix.Mount(m.src, m.dir, m.typ, 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s: %w", m.dir, err)
		}
	}
	// PID 1 may start without stdout: the initramfs has no /dev/console.
	if f, err := os.OpenFile("/dev/console", os.O_WRONLY|unix.O_NOCTTY, 0); err == nil {
		os.Stderr = f
	}
	if err := loadModules(); err != nil {
		return err
	}
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return err
	}
	var jobs, out string
	for _, f := range strings.Fields(string(cmdline)) {
		if v, ok := strings.CutPrefix(f, "kernelxfs.jobs="); ok {
			jobs = v
		}
		if v, ok := strings.CutPrefix(f, "kernelxfs.out="); ok {
			out = v
		}
	}
	if jobs == "" || out == "" {
		return errors.New("no kernelxfs.jobs= or kernelxfs.out= on the command line")
	}
	var uts unix.Utsname
	unix.Uname(&uts)
	release := string(bytes.TrimRight(uts.Release[:], "\x00"))
	var manifests []kernelxfs.Manifest
	for _, j := range strings.Split(jobs, ",") {
		dev, name, ok := strings.Cut(j, ":")
		if !ok {
			return fmt.Errorf("job %q is not dev:name", j)
		}
		if err := waitDev("/dev/" + dev); err != nil {
			return err
		}
		ms, err := runJob("/dev/"+dev, name)
		if err != nil {
			return fmt.Errorf("job %s on %s: %w", name, dev, err)
		}
		for i := range ms {
			ms[i].Image, ms[i].Kernel = name, release
		}
		manifests = append(manifests, ms...)
	}
	b, err := json.Marshal(manifests)
	if err != nil {
		return err
	}
	if err := waitDev("/dev/" + out); err != nil {
		return err
	}
	f, err := os.OpenFile("/dev/"+out, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	hdr := binary.BigEndian.AppendUint64(nil, uint64(len(b)))
	if _, err := f.Write(append(hdr, b...)); err != nil {
		return err
	}
	return f.Sync()
}

// loadModules loads the packed modules in the order images.ModuleSet wrote.
func loadModules() error {
	order, err := os.ReadFile("/etc/vtpmboot/modules")
	if err != nil {
		return err
	}
	var uts unix.Utsname
	unix.Uname(&uts)
	root := "/lib/modules/" + string(bytes.TrimRight(uts.Release[:], "\x00"))
	for _, p := range strings.Fields(string(order)) {
		f, err := os.Open(filepath.Join(root, p))
		if err != nil {
			return err
		}
		err = unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("load %s: %w", p, err)
		}
	}
	return nil
}

func waitDev(p string) error {
	for i := 0; i < 300; i++ {
		if _, err := os.Stat(p); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s did not appear", p)
}

const mnt = "/mnt"

func mount(dev, opts string, flags uintptr) error {
	os.MkdirAll(mnt, 0o755)
	if err := unix.Mount(dev, mnt, "xfs", flags, opts); err != nil {
		return fmt.Errorf("mount %s (%s): %w", dev, opts, err)
	}
	return nil
}

func umount() error {
	if err := unix.Unmount(mnt, 0); err != nil {
		return fmt.Errorf("umount: %w", err)
	}
	return nil
}

// view mounts dev read-only with opts and walks it.
func view(dev, opts, name string) (kernelxfs.Manifest, error) {
	// Nothing of the writer's mount may survive into the reader's: the
	// block device's own cache is flushed too.
	if f, err := os.Open(dev); err == nil {
		unix.IoctlSetInt(int(f.Fd()), unix.BLKFLSBUF, 0)
		f.Close()
	}
	os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0)
	if err := mount(dev, opts, unix.MS_RDONLY); err != nil {
		return kernelxfs.Manifest{}, err
	}
	ents, err := kernelxfs.Walk(mnt)
	if err2 := umount(); err == nil {
		err = err2
	}
	return kernelxfs.Manifest{View: name, Entries: ents}, err
}

func runJob(dev, name string) ([]kernelxfs.Manifest, error) {
	if err := mount(dev, "", 0); err != nil {
		return nil, err
	}
	var st unix.Statfs_t
	if err := unix.Statfs(mnt, &st); err != nil {
		return nil, err
	}
	w := &writer{bs: int(st.Bsize)}
	logf("%s: %s, block size %d", name, dev, w.bs)
	switch name {
	case "v5-1k", "v4":
		w.populate(name == "v4")
	case "dirty":
		return w.dirty(dev)
	case "dirty-bls":
		return w.dirtyBLS(dev)
	default:
		w.err = fmt.Errorf("unknown job %q", name)
	}
	if w.err != nil {
		umount()
		return nil, w.err
	}
	if err := umount(); err != nil {
		return nil, err
	}
	m, err := view(dev, "", "clean")
	m.Notes = w.notes
	return []kernelxfs.Manifest{m}, err
}

// writer collects the first error, so a job reads as a list of steps.
type writer struct {
	bs    int
	err   error
	notes []string
}

func (w *writer) check(what string, err error) {
	if err != nil && w.err == nil {
		w.err = fmt.Errorf("%s: %w", what, err)
	}
}

func (w *writer) note(format string, a ...any) { w.notes = append(w.notes, fmt.Sprintf(format, a...)) }

// content is n bytes of file tag at off: every 512-byte sector starts with
// "tag@offset" and is otherwise zero, so a misplaced or missing sector
// changes the hash while the images still compress well.
func content(tag string, off int64, n int) []byte {
	b := make([]byte, n)
	for s := int64(0); s < int64(n); s += 512 {
		copy(b[s:], fmt.Sprintf("%s@%d\n", tag, off+s))
	}
	return b
}

func (w *writer) path(p string) string { return filepath.Join(mnt, p) }

func (w *writer) writeFile(p string, data []byte) {
	full := w.path(p)
	w.check("mkdir "+p, os.MkdirAll(filepath.Dir(full), 0o755))
	w.check("write "+p, os.WriteFile(full, data, 0o644))
}

func (w *writer) open(p string, flag int) *os.File {
	full := w.path(p)
	w.check("mkdir "+p, os.MkdirAll(filepath.Dir(full), 0o755))
	f, err := os.OpenFile(full, flag, 0o644)
	w.check("open "+p, err)
	return f
}

// alignedBuf is memory O_DIRECT accepts.
func alignedBuf(n int) []byte {
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		panic(err)
	}
	return b
}

// interleave writes n blocks to a and b alternately with O_DIRECT, which
// allocates at write time and so gives each of a's blocks its own extent.
func (w *writer) interleave(a, b string, n int) {
	fa := w.open(a, os.O_CREATE|os.O_WRONLY|unix.O_DIRECT)
	fb := w.open(b, os.O_CREATE|os.O_WRONLY|unix.O_DIRECT)
	if w.err != nil {
		return
	}
	defer fa.Close()
	defer fb.Close()
	buf := alignedBuf(w.bs)
	defer unix.Munmap(buf)
	for i := 0; i < n && w.err == nil; i++ {
		off := int64(i * w.bs)
		copy(buf, content(a, off, w.bs))
		_, err := fa.WriteAt(buf, off)
		w.check("direct write "+a, err)
		copy(buf, content(b, off, w.bs))
		_, err = fb.WriteAt(buf, off)
		w.check("direct write "+b, err)
	}
	w.note("%s: %d blocks written with O_DIRECT alternately with %s", a, n, b)
}

func (w *writer) fallocate(p string, mode uint32, off, n int64) {
	f := w.open(p, os.O_CREATE|os.O_WRONLY)
	if w.err != nil {
		return
	}
	defer f.Close()
	w.check(fmt.Sprintf("fallocate %s mode %#x %d+%d", p, mode, off, n), unix.Fallocate(int(f.Fd()), mode, off, n))
}

func (w *writer) pwriteSync(p string, off int64, data []byte) {
	f := w.open(p, os.O_CREATE|os.O_WRONLY)
	if w.err != nil {
		return
	}
	defer f.Close()
	_, err := f.WriteAt(data, off)
	w.check("write "+p, err)
	w.check("fsync "+p, f.Sync())
}

func (w *writer) symlink(target, p string) {
	full := w.path(p)
	w.check("mkdir "+p, os.MkdirAll(filepath.Dir(full), 0o755))
	w.check("symlink "+p, os.Symlink(target, full))
}

func longTarget(n int) string {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "d%03d/", i)
	}
	return b.String()[:n-1] + "x"
}

// populate writes what the format tests need; v4 scales it to a 4 KiB
// V4 filesystem.
func (w *writer) populate(v4 bool) {
	bs := int64(w.bs)
	// Fragmented: O_DIRECT blocks interleaved with a filler file. With 1 KiB
	// blocks and 512-byte inodes the bmbt root holds 20 pointers and a leaf
	// 59 records, so 1500 extents need a two-level tree.
	nfrag := 1500
	if v4 {
		nfrag = 400
	}
	w.interleave("frag/fragmented", "frag/filler", nfrag)
	// The same with an attribute fork taking part of the inode, so the
	// bmbt root has fewer slots (di_forkoff), and an extent list next to
	// an attribute fork.
	w.writeFile("frag/xattr", nil)
	w.check("setxattr", unix.Setxattr(w.path("frag/xattr"), "user.vtpmboot", bytes.Repeat([]byte("a"), 100), 0))
	w.interleave("frag/xattr", "frag/filler2", nfrag/4)
	w.writeFile("frag/xattr-extents", nil)
	w.check("setxattr", unix.Setxattr(w.path("frag/xattr-extents"), "user.vtpmboot", bytes.Repeat([]byte("b"), 60), 0))
	w.interleave("frag/xattr-extents", "frag/filler3", 4)
	w.check("link", os.Link(w.path("frag/xattr"), w.path("frag/hardlink")))

	// Holes: a written file with every other 4 KiB punched out.
	w.writeFile("holes/punched", content("punched", 0, 1<<20))
	f := w.open("holes/punched", os.O_WRONLY)
	if w.err == nil {
		w.check("fsync", f.Sync())
		for off := int64(4096); off < 1<<20; off += 8192 {
			w.check("punch", unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, 4096))
		}
		f.Close()
	}
	w.note("holes/punched: 1 MiB written, then every other 4 KiB punched")

	// Sparse: data at both ends of a file larger than the image, and
	// unwritten blocks preallocated beyond EOF (never read).
	w.pwriteSync("holes/sparse", 0, content("sparse", 0, 512))
	w.pwriteSync("holes/sparse", 48<<20, content("sparse", 48<<20, 700))
	w.fallocate("holes/sparse", unix.FALLOC_FL_KEEP_SIZE, 49<<20, 64<<10)
	w.note("holes/sparse: 512 bytes at 0, 700 at 48 MiB, 64 KiB preallocated past EOF")
	// Offsets past 4 GiB and 2 TiB (64-bit file offsets in extents).
	w.pwriteSync("holes/huge", 0, content("huge", 0, 100))
	w.pwriteSync("holes/huge", 5<<30, content("huge", 5<<30, 4096))
	w.pwriteSync("holes/huge", 3<<40+7, content("huge", 3<<40+7, 5000))
	w.note("holes/huge: data at 0, 5 GiB and 3 TiB+7")

	// Unwritten: preallocated then partly written, and a zeroed range in
	// a written file (XFS turns ZERO_RANGE into unwritten extents).
	w.fallocate("unwritten/prealloc", 0, 0, 256<<10)
	w.pwriteSync("unwritten/prealloc", 16<<10, content("prealloc", 16<<10, 4096))
	w.pwriteSync("unwritten/prealloc", 100<<10+bs, content("prealloc", 100<<10+bs, 3000))
	w.pwriteSync("unwritten/zeroed", 0, content("zeroed", 0, 64<<10))
	w.fallocate("unwritten/zeroed", unix.FALLOC_FL_ZERO_RANGE, 8<<10, 16<<10)
	w.note("unwritten/prealloc: fallocate 256 KiB, two writes; unwritten/zeroed: 64 KiB, 16 KiB zero-range")

	if !v4 {
		// Reflinks: a whole-file clone with one block rewritten (CoW), and
		// a range cloned within one file.
		w.pwriteSync("reflink/src", 0, content("src", 0, 256<<10))
		src := w.open("reflink/src", os.O_RDONLY)
		dst := w.open("reflink/clone", os.O_CREATE|os.O_WRONLY)
		if w.err == nil {
			w.check("FICLONE", unix.IoctlFileClone(int(dst.Fd()), int(src.Fd())))
			src.Close()
			dst.Close()
		}
		w.pwriteSync("reflink/clone", 64<<10, content("clone", 64<<10, int(bs)))
		w.pwriteSync("reflink/self", 0, content("self", 0, 128<<10))
		self := w.open("reflink/self", os.O_RDWR)
		if w.err == nil {
			w.check("FICLONERANGE", unix.IoctlFileCloneRange(int(self.Fd()), &unix.FileCloneRange{
				Src_fd: int64(self.Fd()), Src_offset: 0, Src_length: 32 << 10, Dest_offset: 64 << 10}))
			self.Close()
		}
		w.note("reflink/clone: FICLONE of reflink/src, one block rewritten; reflink/self: 32 KiB cloned to 64 KiB")
	}

	// Symlinks: inline, and remote ones around the V5 per-buffer header
	// (1024-56 = 968 bytes of target in one 1 KiB block).
	w.symlink("../frag/fragmented", "links/local")
	for _, n := range []int{400, 968, 969, 1023} {
		w.symlink(longTarget(n), fmt.Sprintf("links/remote-%d", n))
	}

	// Directories: a big one (its blocks interleave with its files' data
	// blocks, so it ends up a btree), then a run of names removed so
	// whole data blocks are freed and leave holes; a leaf one; names of
	// every length up to 255.
	big := 1500
	for i := 0; i < big && w.err == nil; i++ {
		w.writeFile(fmt.Sprintf("dirs/big/name-of-entry-number-%05d", i), []byte{byte(i)})
	}
	for i := 500; i < 1000 && w.err == nil; i++ {
		w.check("remove", os.Remove(w.path(fmt.Sprintf("dirs/big/name-of-entry-number-%05d", i))))
	}
	w.note("dirs/big: %d names created, 500..999 removed", big)
	for i := 0; i < 150; i++ {
		w.writeFile(fmt.Sprintf("dirs/leaf/e%03d", i), nil)
	}
	w.writeFile("dirs/xattr/a", nil)
	w.check("setxattr", unix.Setxattr(w.path("dirs/xattr"), "user.vtpmboot", bytes.Repeat([]byte("c"), 80), 0))
	for _, n := range []int{1, 2, 100, 254, 255} {
		w.writeFile("dirs/names/"+strings.Repeat("n", n), []byte(fmt.Sprint(n)))
	}
	w.writeFile("dirs/deep/a/b/c/d/e/f/g/h", []byte("deep\n"))
}

// dirty writes a RHEL-style /boot, checkpoints it (freeze/thaw), changes
// it with every change fsynced, records what the live mount sees, and
// shuts the filesystem down with the log flushed but not checkpointed
// (XFS_IOC_GOINGDOWN, LOGFLUSH, as xfstests' godown): the log then holds
// committed changes that are not in place. The norecovery view is what
// `mount -o ro,norecovery` reads afterwards.
func (w *writer) dirty(dev string) ([]kernelxfs.Manifest, error) {
	w.writeFile("grub2/grub.cfg", []byte("set default=\"${saved_entry}\"\nload_env -f ($root)/grub2/grubenv\nblscfg\n"))
	w.writeFile("grub2/grubenv", grubenv("kernelopts=root=/dev/xvda2 ro\nsaved_entry=abc-6.1.0\n"))
	w.writeFile("loader/entries/abc-6.1.0.conf", []byte("title Test (6.1.0)\nversion 6.1.0\nlinux /vmlinuz-6.1.0\ninitrd /initramfs-6.1.0.img\noptions $kernelopts\nid abc-6.1.0\n"))
	w.writeFile("vmlinuz-6.1.0", content("vmlinuz", 0, 2<<20))
	w.writeFile("initramfs-6.1.0.img", content("initramfs", 0, 1<<20))
	w.writeFile("old-kernel", content("old", 0, 64<<10))
	if w.err != nil {
		return nil, w.err
	}
	root, err := os.Open(mnt)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	// Freeze writes everything back and covers the log: the base state
	// is entirely in place. FIFREEZE/FITHAW = _IOWR('X', 119/120, int).
	const fifreeze, fithaw = 0xc0045877, 0xc0045878
	w.check("FIFREEZE", unix.IoctlSetInt(int(root.Fd()), fifreeze, 0))
	w.check("FITHAW", unix.IoctlSetInt(int(root.Fd()), fithaw, 0))

	w.writeFile("loader/entries/abc-6.2.0.conf", []byte("title New (6.2.0)\nlinux /vmlinuz-6.2.0\noptions $kernelopts\n"))
	w.pwriteSync("loader/entries/abc-6.2.0.conf", 0, []byte("title New (6.2.0)\n"))
	w.pwriteSync("grub2/grubenv", 0, grubenv("kernelopts=root=/dev/xvda2 ro quiet\nsaved_entry=abc-6.2.0\n"))
	w.pwriteSync("initramfs-6.1.0.img", 1<<20, content("appended", 1<<20, 8192))
	w.check("remove old-kernel", os.Remove(w.path("old-kernel")))
	w.check("syncfs", unix.Syncfs(int(root.Fd())))
	w.note("base state frozen in place; then abc-6.2.0.conf created, grubenv rewritten in place, initramfs appended, old-kernel removed, each fsynced")
	if w.err != nil {
		return nil, w.err
	}
	live, err := kernelxfs.Walk(mnt)
	if err != nil {
		return nil, err
	}
	// XFS_IOC_GOINGDOWN = _IOR('X', 125, __u32); 1 = XFS_FSOP_GOING_FLAGS_LOGFLUSH.
	const goingDown = 0x8004587d
	if err := unix.IoctlSetPointerInt(int(root.Fd()), goingDown, 1); err != nil {
		return nil, fmt.Errorf("XFS_IOC_GOINGDOWN: %w", err)
	}
	root.Close()
	if err := umount(); err != nil {
		return nil, err
	}
	nr, err := view(dev, "norecovery", "norecovery")
	if err != nil {
		return nil, err
	}
	nr.Notes = w.notes
	return []kernelxfs.Manifest{{View: "live", Entries: live, Notes: w.notes}, nr}, nil
}

// dirtyBLS adds kernelxfs.BLSLogOnly to an existing /boot, fsynced, and shuts the
// filesystem down with the log flushed but nothing written back, so the
// entry exists only in the log. It then checks, through the kernel's own
// ro,norecovery mount, that the entry is not in place.
func (w *writer) dirtyBLS(dev string) ([]kernelxfs.Manifest, error) {
	w.writeFile(kernelxfs.BLSLogOnly, []byte("title vtpmboot e2e: only in the XFS log\nversion 99.0\nlinux /vmlinuz-log-only\noptions log-only\n"))
	if w.err != nil {
		return nil, w.err
	}
	root, err := os.Open(mnt)
	if err != nil {
		return nil, err
	}
	if err := unix.Syncfs(int(root.Fd())); err != nil {
		return nil, err
	}
	live, err := kernelxfs.Walk(mnt)
	if err != nil {
		return nil, err
	}
	const goingDown = 0x8004587d // see dirty
	err = unix.IoctlSetPointerInt(int(root.Fd()), goingDown, 1)
	root.Close()
	if err != nil {
		return nil, fmt.Errorf("XFS_IOC_GOINGDOWN: %w", err)
	}
	if err := umount(); err != nil {
		return nil, err
	}
	nr, err := view(dev, "norecovery", "norecovery")
	if err != nil {
		return nil, err
	}
	for _, e := range nr.Entries {
		if e.Path == kernelxfs.BLSLogOnly {
			return nil, fmt.Errorf("%s is in place after the shutdown: the log is not what holds it", kernelxfs.BLSLogOnly)
		}
	}
	w.note("%s created and fsynced, then XFS_IOC_GOINGDOWN (LOGFLUSH)", kernelxfs.BLSLogOnly)
	nr.Notes = w.notes
	return []kernelxfs.Manifest{{View: "live", Entries: live, Notes: w.notes}, nr}, nil
}

// grubenv is a GRUB environment block: exactly 1024 bytes, '#'-padded.
func grubenv(vars string) []byte {
	b := []byte("# GRUB Environment Block\n" + vars)
	return append(b, bytes.Repeat([]byte("#"), 1024-len(b))...)
}
