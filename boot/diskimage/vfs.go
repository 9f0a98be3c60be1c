package diskimage

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"
)

// maxSymlinkHops matches Linux's MAXSYMLINKS.
const maxSymlinkHops = 40

// maxSymlinkLen is PATH_MAX; a longer target is not something Linux wrote.
const maxSymlinkLen = 4096

// vnode is one file of a backend filesystem.
type vnode interface {
	mode() fs.FileMode
	size() int64
	mtime() time.Time
	// id identifies the node within its filesystem (inode or first cluster).
	id() uint64
}

// vdirent is one directory entry; load fetches its node (an inode read for
// ext), typ is the type from the entry itself or ^0 when unknown.
type vdirent struct {
	name string
	typ  fs.FileMode
	load func() (vnode, error)
}

const typUnknown = ^fs.FileMode(0)

// backend is what each filesystem reader implements (ext, FAT, XFS); vfs
// turns it into an fs.FS with path resolution and symlink handling done
// once, here.
type backend interface {
	root() (vnode, error)
	// scanDir calls fn for each entry except "." and ".." until fn returns false.
	scanDir(dir vnode, fn func(vdirent) bool) error
	readlink(n vnode) (string, error)
	content(n vnode) (io.ReaderAt, error)
	foldCase() bool
}

// dirCaseFolder is a backend whose directories can each be
// case-insensitive: ext4's casefold feature, a per-directory flag.
type dirCaseFolder interface {
	foldsDir(dir vnode) bool
}

// vfs is the fs.FS handed out in Partition.FS.
type vfs struct {
	b     backend
	where string // "disk.img partition 1", for errors
}

var (
	_ fs.ReadDirFS  = (*vfs)(nil)
	_ fs.StatFS     = (*vfs)(nil)
	_ fs.ReadLinkFS = (*vfs)(nil)
)

func (v *vfs) pathErr(op, name string, err error) error {
	// A spent budget is reported alone: it is the whole disk that is
	// refused, and where in the structure it ran out says nothing.
	var be *BudgetError
	if errors.As(err, &be) {
		return &fs.PathError{Op: op, Path: name, Err: be}
	}
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrInvalid) {
		return &fs.PathError{Op: op, Path: name, Err: err}
	}
	return &fs.PathError{Op: op, Path: name, Err: fmt.Errorf("%s: %w", v.where, err)}
}

func (v *vfs) lookup(dir vnode, name string) (vnode, error) {
	if !dir.mode().IsDir() {
		return nil, fmt.Errorf("not a directory: %w", fs.ErrNotExist)
	}
	var found *vdirent
	fold := v.b.foldCase()
	// XFS's ASCII-CI filesystems fold A-Z only (xfs_ascii_ci_compname).
	af, _ := v.b.(interface{ asciiFold() bool })
	ascii := af != nil && af.asciiFold()
	cf, _ := v.b.(dirCaseFolder)
	dirFolds := !fold && cf != nil && cf.foldsDir(dir)
	var spelled string
	err := v.b.scanDir(dir, func(d vdirent) bool {
		if d.name == name || (fold && strings.EqualFold(d.name, name)) || (ascii && asciiEqualFold(d.name, name)) {
			found = &d
			return false
		}
		// A case-insensitive directory's lookup takes the first entry
		// equal to name under case folding, as the kernel's does. One
		// spelled otherwise is what the guest's own kernel would open;
		// reporting it as absent would let discovery fall through to
		// a lower-priority file, so it is an error instead.
		if dirFolds && strings.EqualFold(d.name, name) {
			spelled = d.name
			return false
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	if spelled != "" {
		return nil, fmt.Errorf("%q is not in this case-insensitive (casefold) directory but %q is: the guest's kernel would open it, vtpmboot matches names exactly; name the file as it is stored", name, spelled)
	}
	if found == nil {
		return nil, fs.ErrNotExist
	}
	return found.load()
}

func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// resolve walks name from the root. Symlinks are followed inside this
// filesystem only: absolute targets restart at its root and ".." stops at
// the root, so a guest link can never name a host path.
func (v *vfs) resolve(name string, followLast bool) (vnode, error) {
	root, err := v.b.root()
	if err != nil {
		return nil, err
	}
	stack := []vnode{root}
	var parts []string
	if name != "." {
		parts = strings.Split(name, "/")
	}
	hops := 0
	for i := 0; i < len(parts); i++ {
		p := parts[i]
		switch p {
		case "", ".":
			continue
		case "..":
			if len(stack) > 1 {
				stack = stack[:len(stack)-1]
			}
			continue
		}
		n, err := v.lookup(stack[len(stack)-1], p)
		if err != nil {
			return nil, err
		}
		last := i == len(parts)-1
		if n.mode()&fs.ModeSymlink != 0 && (!last || followLast) {
			hops++
			if hops > maxSymlinkHops {
				return nil, fmt.Errorf("more than %d symlinks (loop?) resolving %q", maxSymlinkHops, name)
			}
			target, err := v.b.readlink(n)
			if err != nil {
				return nil, err
			}
			if strings.HasPrefix(target, "/") {
				stack = stack[:1]
			}
			rest := parts[i+1:]
			parts = append(strings.Split(target, "/"), rest...)
			i = -1
			continue
		}
		if n.mode().IsDir() {
			// A corrupt directory naming an ancestor would make any tree walk
			// endless; real ext and FAT trees never contain one.
			for _, a := range stack {
				if a.id() == n.id() {
					return nil, fmt.Errorf("%w: directory cycle at %q", ErrCorrupt, p)
				}
			}
		}
		stack = append(stack, n)
	}
	return stack[len(stack)-1], nil
}

func (v *vfs) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	n, err := v.resolve(name, true)
	if err != nil {
		return nil, v.pathErr("open", name, err)
	}
	fi := &fileInfo{name: path.Base(name), n: n}
	if n.mode().IsDir() {
		return &dirFile{v: v, n: n, fi: fi, path: name}, nil
	}
	if !n.mode().IsRegular() {
		return nil, v.pathErr("open", name, fmt.Errorf("not a regular file or directory (mode %v)", n.mode()))
	}
	ra, err := v.b.content(n)
	if err != nil {
		return nil, v.pathErr("open", name, err)
	}
	return &regFile{SectionReader: io.NewSectionReader(&pathReaderAt{ra, v, name}, 0, n.size()), fi: fi}, nil
}

func (v *vfs) Stat(name string) (fs.FileInfo, error) { return v.stat("stat", name, true) }

// Lstat does not follow a final symlink (fs.ReadLinkFS).
func (v *vfs) Lstat(name string) (fs.FileInfo, error) { return v.stat("lstat", name, false) }

func (v *vfs) stat(op, name string, follow bool) (fs.FileInfo, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	n, err := v.resolve(name, follow)
	if err != nil {
		return nil, v.pathErr(op, name, err)
	}
	return &fileInfo{name: path.Base(name), n: n}, nil
}

// ReadLink returns a symlink's target as stored (fs.ReadLinkFS).
func (v *vfs) ReadLink(name string) (string, error) {
	if !fs.ValidPath(name) {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: fs.ErrInvalid}
	}
	n, err := v.resolve(name, false)
	if err != nil {
		return "", v.pathErr("readlink", name, err)
	}
	if n.mode()&fs.ModeSymlink == 0 {
		return "", v.pathErr("readlink", name, errors.New("not a symlink"))
	}
	t, err := v.b.readlink(n)
	if err != nil {
		return "", v.pathErr("readlink", name, err)
	}
	return t, nil
}

func (v *vfs) ReadDir(name string) ([]fs.DirEntry, error) {
	f, err := v.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	d, ok := f.(*dirFile)
	if !ok {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: errors.New("not a directory")}
	}
	ents, err := d.ReadDir(-1)
	sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
	return ents, err
}

// pathReaderAt adds the file and partition to read errors, so a corrupt
// block deep in a kernel file is reported against that file.
type pathReaderAt struct {
	r    io.ReaderAt
	v    *vfs
	name string
}

func (p *pathReaderAt) ReadAt(b []byte, off int64) (int, error) {
	n, err := p.r.ReadAt(b, off)
	if err != nil && err != io.EOF {
		err = p.v.pathErr("read", p.name, err)
	}
	return n, err
}

type fileInfo struct {
	name string
	n    vnode
}

func (f *fileInfo) Name() string       { return f.name }
func (f *fileInfo) Size() int64        { return f.n.size() }
func (f *fileInfo) Mode() fs.FileMode  { return f.n.mode() }
func (f *fileInfo) ModTime() time.Time { return f.n.mtime() }
func (f *fileInfo) IsDir() bool        { return f.n.mode().IsDir() }
func (f *fileInfo) Sys() any           { return nil }

// regFile streams a file's blocks; it is also an io.ReaderAt and io.Seeker.
type regFile struct {
	*io.SectionReader
	fi *fileInfo
}

func (f *regFile) Stat() (fs.FileInfo, error) { return f.fi, nil }
func (f *regFile) Close() error               { return nil }

type dirFile struct {
	v     *vfs
	n     vnode
	fi    *fileInfo
	path  string
	ents  []fs.DirEntry
	read  bool
	index int
}

func (d *dirFile) Stat() (fs.FileInfo, error) { return d.fi, nil }
func (d *dirFile) Close() error               { return nil }
func (d *dirFile) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.path, Err: errors.New("is a directory")}
}

func (d *dirFile) ReadDir(count int) ([]fs.DirEntry, error) {
	if !d.read {
		d.read = true
		err := d.v.b.scanDir(d.n, func(e vdirent) bool {
			d.ents = append(d.ents, &dirEntry{e: e, v: d.v, dir: d.path})
			return true
		})
		if err != nil {
			return nil, d.v.pathErr("readdir", d.path, err)
		}
	}
	rest := d.ents[d.index:]
	if count <= 0 {
		d.index = len(d.ents)
		return rest, nil
	}
	if len(rest) == 0 {
		return nil, io.EOF
	}
	if count > len(rest) {
		count = len(rest)
	}
	d.index += count
	return rest[:count], nil
}

type dirEntry struct {
	e   vdirent
	v   *vfs
	dir string
}

func (d *dirEntry) Name() string { return d.e.name }
func (d *dirEntry) IsDir() bool  { return d.Type().IsDir() }
func (d *dirEntry) Type() fs.FileMode {
	if d.e.typ != typUnknown {
		return d.e.typ
	}
	n, err := d.e.load()
	if err != nil {
		return fs.ModeIrregular
	}
	return n.mode().Type()
}
func (d *dirEntry) Info() (fs.FileInfo, error) {
	n, err := d.e.load()
	if err != nil {
		return nil, d.v.pathErr("stat", path.Join(d.dir, d.e.name), err)
	}
	return &fileInfo{name: d.e.name, n: n}, nil
}

// unixMode converts an inode's st_mode bits (ext and XFS store the same).
func unixMode(imode uint16) fs.FileMode {
	m := fs.FileMode(imode & 0o777)
	if imode&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if imode&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if imode&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	switch imode & 0xF000 {
	case 0x4000:
		m |= fs.ModeDir
	case 0x8000:
	case 0xA000:
		m |= fs.ModeSymlink
	case 0x2000:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case 0x6000:
		m |= fs.ModeDevice
	case 0x1000:
		m |= fs.ModeNamedPipe
	case 0xC000:
		m |= fs.ModeSocket
	default:
		m |= fs.ModeIrregular
	}
	return m
}

// mapping is a run of a file's blocks starting at the one asked for.
type mapping struct {
	phys  uint64 // device block; 0 for a hole or an unwritten extent: read zeros
	count uint64
}

// blockFile streams the size bytes of a file made of 1<<blog-byte blocks
// that bmap maps onto r, block runs at a time; holes and unwritten extents
// read as zeros. ext and XFS both read their files through it.
type blockFile struct {
	r    io.ReaderAt
	size int64
	blog uint
	ino  uint64 // for errors
	bmap func(lb uint64) (mapping, error)
}

func (f blockFile) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if off >= f.size {
		return 0, io.EOF
	}
	want := int64(len(p))
	if want > f.size-off {
		want = f.size - off
	}
	bs := int64(1) << f.blog
	var done int64
	for done < want {
		pos := off + done
		lb := uint64(pos) >> f.blog
		m, err := f.bmap(lb)
		if err != nil {
			return int(done), err
		}
		if m.count == 0 {
			return int(done), fmt.Errorf("%w: inode %d: empty mapping at block %d", ErrCorrupt, f.ino, lb)
		}
		inBlock := pos & (bs - 1)
		chunk := want - done
		// A hole can span 2^54 blocks: compare in blocks first so the
		// run's length in bytes cannot overflow.
		if m.count <= uint64(chunk>>f.blog)+1 {
			chunk = min(chunk, int64(m.count)<<f.blog-inBlock)
		}
		dst := p[done : done+chunk]
		if m.phys == 0 {
			zeroFill(dst)
		} else if err := readFull(f.r, dst, int64(m.phys)<<f.blog+inBlock); err != nil {
			return int(done), fmt.Errorf("inode %d: %w", f.ino, err)
		}
		done += chunk
	}
	if done < int64(len(p)) {
		return int(done), io.EOF
	}
	return int(done), nil
}

// zeroFill reads holes.
func zeroFill(p []byte) {
	for i := range p {
		p[i] = 0
	}
}
