// Package kernelxfs describes XFS images written by the Linux kernel's own
// XFS driver and what that driver read back from them: the oracle for the
// boot/diskimage tests of everything mkfs.xfs -p cannot write (fragmented
// files, holes, unwritten extents, reflinks, V5 remote symlinks, directories
// with freed blocks, a dirty log). gen/ builds the images by booting the
// Debian kernel under QEMU with guest/ as its /init; the images and their
// manifests live, compressed, in boot/diskimage/testdata/xfs.
package kernelxfs

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// BLSLogOnly is the entry the dirty-bls job (DirtyBLS) leaves only in the
// log: the newest version, so blscfg and systemd-boot would make it the
// default were the log replayed, naming a kernel that does not exist, so
// such a boot fails loudly.
const BLSLogOnly = "loader/entries/vtpmboot-log-only-99.0.conf"

// Entry is one file as the kernel saw it.
type Entry struct {
	Path string `json:"path"` // slash-separated, relative to the filesystem root ("." for the root)
	Type string `json:"type"` // "file", "dir", "symlink" or "other"
	Size int64  `json:"size,omitempty"`
	// SHA256 of a regular file's bytes; empty for files larger than
	// maxHashed, which get Windows instead.
	SHA256 string `json:"sha256,omitempty"`
	// Windows are hashes of parts of a huge sparse file: its start, its
	// end and the start of each data region the kernel reports
	// (SEEK_DATA), so 64-bit offsets are checked without reading
	// gigabytes of holes.
	Windows []Window `json:"windows,omitempty"`
	// Target of a symlink.
	Target string `json:"target,omitempty"`
	// Names in a directory, sorted, without "." and "..".
	Names []string `json:"names,omitempty"`
}

// Window is the SHA-256 of Len bytes at Off.
type Window struct {
	Off    int64  `json:"off"`
	Len    int64  `json:"len"`
	SHA256 string `json:"sha256"`
}

// maxHashed bounds the bytes Walk reads of one file.
const maxHashed = 256 << 20

// Manifest is one walk of one mounted filesystem.
type Manifest struct {
	// Image names the image (the testdata file without .img.gz).
	Image string `json:"image"`
	// View says how the filesystem was mounted for the walk: "clean" (ro
	// after a clean unmount), "norecovery" (ro,norecovery over a dirty
	// log) or "live" (the writer's own mount just before it went down).
	View string `json:"view"`
	// Kernel is the release that wrote and read it (uname -r).
	Kernel  string  `json:"kernel"`
	Entries []Entry `json:"entries"`
	// Notes say what the job did, for whoever reads the manifest.
	Notes []string `json:"notes,omitempty"`
}

// Views picks the "live" and "norecovery" manifests out of ms.
func Views(ms []Manifest) (live, norecovery Manifest) {
	for _, m := range ms {
		switch m.View {
		case "live":
			live = m
		case "norecovery":
			norecovery = m
		}
	}
	return live, norecovery
}

// Walk records every file under root.
func Walk(root string) ([]Entry, error) {
	var out []Entry
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		e := Entry{Path: filepath.ToSlash(rel)}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			e.Type = "symlink"
			if e.Target, err = os.Readlink(p); err != nil {
				return err
			}
		case d.IsDir():
			e.Type = "dir"
			ents, err := os.ReadDir(p)
			if err != nil {
				return err
			}
			e.Names = []string{}
			for _, x := range ents {
				e.Names = append(e.Names, x.Name())
			}
			sort.Strings(e.Names)
		case d.Type().IsRegular():
			e.Type = "file"
			if err := hashFile(p, &e); err != nil {
				return fmt.Errorf("read %s: %w", p, err)
			}
		default:
			e.Type = "other"
		}
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New("empty walk")
	}
	return out, nil
}

func hashFile(p string, e *Entry) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	e.Size = st.Size()
	if e.Size <= maxHashed {
		h := sha256.New()
		n, err := io.Copy(h, f)
		if err != nil {
			return err
		}
		if n != e.Size {
			return fmt.Errorf("read %d of %d bytes", n, e.Size)
		}
		e.SHA256 = hex.EncodeToString(h.Sum(nil))
		return nil
	}
	offs := []int64{0}
	for off := int64(0); len(offs) < 16; {
		d, err := f.Seek(off, seekData)
		if err != nil {
			break // ENXIO: no data after off
		}
		offs = append(offs, d)
		if off, err = f.Seek(d, seekHole); err != nil {
			return err
		}
	}
	offs = append(offs, max(e.Size-64<<10, 0))
	for _, off := range offs {
		n := min(64<<10, e.Size-off)
		b := make([]byte, n)
		if _, err := f.ReadAt(b, off); err != nil && err != io.EOF {
			return err
		}
		s := sha256.Sum256(b)
		e.Windows = append(e.Windows, Window{Off: off, Len: n, SHA256: hex.EncodeToString(s[:])})
	}
	return nil
}

// lseek whence values for data and holes (Linux).
const seekData, seekHole = 3, 4
