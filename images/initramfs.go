// Package images builds the stub's initramfs reproducibly: the same inputs
// give byte-identical cpio.gz output on any machine and in any directory, so
// the initramfs digest that lands in a PCR can be predicted and published.
package images

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cavaliergopher/cpio"
)

// File is one entry of an initramfs. Exactly one of Data, Source or Symlink
// describes the content; a File with none of them and Dir set is a directory.
type File struct {
	// Path inside the archive; a leading "/" is optional ("init", "/etc/x").
	Path string
	// Mode holds the permission bits only; 0 means 0644 for files and 0755
	// for directories.
	Mode fs.FileMode
	// Data is the file's content.
	Data []byte
	// Source is a host file whose content is copied when the archive is
	// written, so large inputs (kernel modules) are not held in memory twice.
	Source string
	// Symlink makes the entry a symbolic link to this target.
	Symlink string
	// Dir makes the entry a directory.
	Dir bool
}

// Initramfs is a set of files packed as a newc cpio archive. Parent
// directories are added implicitly; entries are written in sorted path order
// with uid/gid 0 and mtime 0 so the archive depends only on names, modes and
// contents.
type Initramfs struct {
	Files []File
}

// Add appends f, replacing an earlier entry with the same path.
func (ir *Initramfs) Add(f File) {
	p := cleanPath(f.Path)
	for i := range ir.Files {
		if cleanPath(ir.Files[i].Path) == p {
			ir.Files[i] = f
			return
		}
	}
	ir.Files = append(ir.Files, f)
}

// AddData adds a regular file with the given content and permission bits.
func (ir *Initramfs) AddData(p string, data []byte, mode fs.FileMode) {
	ir.Add(File{Path: p, Data: data, Mode: mode})
}

func cleanPath(p string) string {
	return strings.TrimPrefix(path.Clean("/"+p), "/")
}

type entry struct {
	name string
	f    File
}

// entries validates the file set and returns it, parent directories
// included, in the order it is written.
func (ir *Initramfs) entries() ([]entry, error) {
	byName := map[string]entry{}
	for _, f := range ir.Files {
		name := cleanPath(f.Path)
		if name == "" || name == "." {
			return nil, fmt.Errorf("initramfs entry %q: empty path", f.Path)
		}
		kinds := 0
		for _, set := range []bool{f.Data != nil, f.Source != "", f.Symlink != "", f.Dir} {
			if set {
				kinds++
			}
		}
		if kinds > 1 {
			return nil, fmt.Errorf("initramfs entry %s: more than one of Data, Source, Symlink, Dir", name)
		}
		if f.Mode&^fs.ModePerm != 0 {
			return nil, fmt.Errorf("initramfs entry %s: mode %v has more than permission bits", name, f.Mode)
		}
		if prev, ok := byName[name]; ok && !(prev.f.Dir && f.Dir) {
			return nil, fmt.Errorf("initramfs entry %s: given twice", name)
		}
		byName[name] = entry{name, f}
		// The kernel's unpacker does not create missing parents, so every
		// directory on the way gets its own entry.
		for d := path.Dir(name); d != "."; d = path.Dir(d) {
			if e, ok := byName[d]; ok {
				if !e.f.Dir {
					return nil, fmt.Errorf("initramfs entry %s: parent %s is not a directory", name, d)
				}
				continue
			}
			byName[d] = entry{d, File{Path: d, Dir: true}}
		}
	}
	out := make([]entry, 0, len(byName))
	for _, e := range byName {
		out = append(out, e)
	}
	// Plain byte order puts every directory before its contents ("a" < "a/b").
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, nil
}

// WriteCPIO writes the uncompressed newc archive.
func (ir *Initramfs) WriteCPIO(w io.Writer) error {
	es, err := ir.entries()
	if err != nil {
		return err
	}
	cw := cpio.NewWriter(w)
	for i, e := range es {
		if err := writeEntry(cw, i, e); err != nil {
			return err
		}
	}
	if err := cw.Close(); err != nil {
		return fmt.Errorf("initramfs trailer: %w", err)
	}
	return nil
}

func writeEntry(cw *cpio.Writer, i int, e entry) error {
	h := &cpio.Header{
		Name:  e.name,
		Inode: int64(i + 1),
	}
	perm := cpio.FileMode(e.f.Mode.Perm())
	var body io.Reader
	switch {
	case e.f.Dir:
		if perm == 0 {
			perm = 0o755
		}
		h.Mode = cpio.TypeDir | perm
		h.Links = 2
	case e.f.Symlink != "":
		h.Mode = cpio.TypeSymlink | 0o777
		h.Links = 1
		h.Size = int64(len(e.f.Symlink))
		body = strings.NewReader(e.f.Symlink)
	case e.f.Source != "":
		fh, err := os.Open(e.f.Source)
		if err != nil {
			return fmt.Errorf("initramfs entry %s: %w", e.name, err)
		}
		defer fh.Close()
		st, err := fh.Stat()
		if err != nil {
			return fmt.Errorf("initramfs entry %s: %w", e.name, err)
		}
		if !st.Mode().IsRegular() {
			return fmt.Errorf("initramfs entry %s: source %s is not a regular file", e.name, e.f.Source)
		}
		if perm == 0 {
			perm = 0o644
		}
		h.Mode = cpio.TypeReg | perm
		h.Links = 1
		h.Size = st.Size()
		body = fh
	default:
		if perm == 0 {
			perm = 0o644
		}
		h.Mode = cpio.TypeReg | perm
		h.Links = 1
		h.Size = int64(len(e.f.Data))
		body = bytes.NewReader(e.f.Data)
	}
	if err := cw.WriteHeader(h); err != nil {
		return fmt.Errorf("initramfs entry %s: %w", e.name, err)
	}
	if body != nil {
		n, err := io.Copy(cw, body)
		if err != nil {
			return fmt.Errorf("initramfs entry %s: %w", e.name, err)
		}
		if n != h.Size {
			// A source that changed size while being packed would give an
			// archive whose digest matches nothing anyone can rebuild.
			return fmt.Errorf("initramfs entry %s: wrote %d bytes, expected %d (file changed while packing?)", e.name, n, h.Size)
		}
	}
	return nil
}

// gzipOS is the OS byte of the gzip header; fixed so output does not depend
// on the build host (compress/gzip's default, 255 "unknown", would do too).
const gzipOS = 3 // Unix

// WriteGzip writes the archive gzip-compressed with a fixed header (no name,
// no mtime) at BestCompression.
func (ir *Initramfs) WriteGzip(w io.Writer) error {
	zw, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return err
	}
	zw.Header = gzip.Header{OS: gzipOS}
	if err := ir.WriteCPIO(zw); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("gzip initramfs: %w", err)
	}
	return nil
}

// WriteFile writes the gzip-compressed archive to dst, replacing it only
// once the whole archive is written.
func (ir *Initramfs) WriteFile(dst string) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", dst, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = ir.WriteGzip(tmp); err != nil {
		return fmt.Errorf("write %s: %w", dst, err)
	}
	if err = tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("write %s: %w", dst, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", dst, err)
	}
	if err = os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("write %s: %w", dst, err)
	}
	return nil
}

// ErrNoModulesDep is returned when a modules directory lacks modules.dep.
var ErrNoModulesDep = errors.New("no modules.dep (not a /lib/modules/<release> directory?)")
