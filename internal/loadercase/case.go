// Package loadercase reads the boot-loader corpus (testdata/loader): each
// case a guest's boot files and what the real loader should do with them.
// The parser tests load it as their seed corpus and e2e/loader boots it
// under the real loaders (internal/loaderimg); this package needs no QEMU.
package loadercase

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Loader names a real boot loader the test installs.
type Loader string

const (
	GRUB2      Loader = "grub2"
	Syslinux   Loader = "syslinux"
	GRUBLegacy Loader = "grub-legacy"
)

// Case is one corpus configuration: the files of a guest's boot
// filesystem and what to put next to them. The file format is txtar-like:
// header lines "key: value" (and "#" comments) up to the first
// "-- name --" line, then each file's content up to the next such line.
//
//	source:   where the config comes from (required; README tables repeat it)
//	kernel:   a kernel path to create (observer with the path as marker); repeatable
//	initrd:   an initrd path to create (InitrdContent); repeatable
//	uuid:     the filesystem UUID (for "search --fs-uuid" configs)
//	grubenv:  NAME=VALUE to store in the GRUB2 environment block next to
//	          the config, written by grub-editenv; repeatable
//	symlink:  LINK -> TARGET, a symbolic link in the filesystem; repeatable
//	fs:       ext4 (GRUB2 default), ext2 (GRUB legacy default) or vfat (syslinux)
//	deadline: seconds the boot may take before the loader counts as waiting
//	          for a person (default DefaultDeadline)
type Case struct {
	Name     string
	Loader   Loader
	Source   string
	Kernels  []string
	Initrds  []string
	UUID     string
	GRUBEnv  []string
	Symlinks [][2]string
	FS       string
	Deadline time.Duration
	// Files maps a path inside the filesystem (no leading slash) to content.
	Files map[string][]byte
}

// DefaultDeadline bounds a boot that should end in the observer: a few
// seconds of loader and config timeout under TCG, with room for a loaded
// machine. A loader still showing its menu then is waiting for a person.
const DefaultDeadline = 25 * time.Second

// ParseCase parses a case file for loader l.
func ParseCase(l Loader, name string, data []byte) (*Case, error) {
	c := &Case{Name: name, Loader: l, Files: map[string][]byte{}, Deadline: DefaultDeadline}
	lines := strings.SplitAfter(string(data), "\n")
	cur := ""
	for n, line := range lines {
		if fname, ok := fileMarker(line); ok {
			p := strings.TrimPrefix(path.Clean("/"+fname), "/")
			if p == "" || p != strings.TrimPrefix(fname, "/") {
				return nil, fmt.Errorf("%s:%d: bad file name %q", name, n+1, fname)
			}
			if _, dup := c.Files[p]; dup {
				return nil, fmt.Errorf("%s:%d: file %s twice", name, n+1, p)
			}
			cur = p
			c.Files[p] = []byte{}
			continue
		}
		if cur != "" {
			c.Files[cur] = append(c.Files[cur], line...)
			continue
		}
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		k, v, ok := strings.Cut(t, ":")
		if !ok {
			return nil, fmt.Errorf("%s:%d: header line %q is not key: value", name, n+1, t)
		}
		v = strings.TrimSpace(v)
		switch k {
		case "source":
			c.Source = v
		case "kernel":
			c.Kernels = append(c.Kernels, v)
		case "initrd":
			c.Initrds = append(c.Initrds, v)
		case "uuid":
			c.UUID = v
		case "grubenv":
			c.GRUBEnv = append(c.GRUBEnv, v)
		case "symlink":
			l, t, ok := strings.Cut(v, " -> ")
			if !ok {
				return nil, fmt.Errorf("%s:%d: symlink %q is not LINK -> TARGET", name, n+1, v)
			}
			c.Symlinks = append(c.Symlinks, [2]string{strings.TrimPrefix(l, "/"), t})
		case "fs":
			c.FS = v
		case "deadline":
			s, err := strconv.Atoi(v)
			if err != nil || s <= 0 {
				return nil, fmt.Errorf("%s:%d: deadline %q is not a number of seconds", name, n+1, v)
			}
			c.Deadline = time.Duration(s) * time.Second
		default:
			return nil, fmt.Errorf("%s:%d: unknown header %q", name, n+1, k)
		}
	}
	if c.Source == "" {
		return nil, fmt.Errorf("%s: no source: line", name)
	}
	if len(c.Files) == 0 {
		return nil, fmt.Errorf("%s: no files", name)
	}
	for _, p := range append(append([]string{}, c.Kernels...), c.Initrds...) {
		if !strings.HasPrefix(p, "/") || path.Clean(p) != p {
			return nil, fmt.Errorf("%s: kernel/initrd path %q must be absolute and clean", name, p)
		}
	}
	if c.FS == "" {
		c.FS = map[Loader]string{GRUB2: "ext4", Syslinux: "vfat", GRUBLegacy: "ext2"}[l]
	}
	return c, nil
}

func fileMarker(line string) (string, bool) {
	t := strings.TrimRight(line, "\r\n")
	if !strings.HasPrefix(t, "-- ") || !strings.HasSuffix(t, " --") || len(t) < 7 {
		return "", false
	}
	return strings.TrimSpace(t[3 : len(t)-3]), true
}

// ConfigPaths lists the case's files in order, for messages.
func (c *Case) ConfigPaths() []string {
	var out []string
	for p := range c.Files {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// InitrdContent is what the test stores in an initrd file: its own path,
// so the bytes the loader hands over say which files it loaded, in which
// order and with what padding between them. The lengths differ with the
// path, which exercises the padding.
func InitrdContent(p string) []byte { return []byte("VTPM-INITRD " + p + "\n") }

// LoadCorpus reads testdata/loader/<l>/*.case under the repository root.
func LoadCorpus(root string, l Loader) ([]*Case, error) {
	names, err := filepath.Glob(filepath.Join(root, "testdata", "loader", string(l), "*.case"))
	if err != nil {
		return nil, err
	}
	var out []*Case
	for _, n := range names {
		data, err := os.ReadFile(n)
		if err != nil {
			return nil, err
		}
		c, err := ParseCase(l, strings.TrimSuffix(filepath.Base(n), ".case"), data)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// MainConfig is the file the case's loader reads first.
func (c *Case) MainConfig() (string, []byte) {
	switch c.Loader {
	case GRUB2:
		// The prefix directories loaderimg's installer looks for, in its
		// order (grub2Prefix).
		for _, p := range []string{"boot/grub/grub.cfg", "grub/grub.cfg", "boot/grub2/grub.cfg", "grub2/grub.cfg"} {
			if _, ok := c.Files[p]; ok {
				return p, c.Files[p]
			}
		}
	case Syslinux:
		for _, p := range []string{"boot/syslinux/syslinux.cfg", "syslinux/syslinux.cfg", "syslinux.cfg",
			"boot/extlinux/extlinux.conf", "extlinux/extlinux.conf", "boot/extlinux.conf", "extlinux.conf"} {
			if _, ok := c.Files[p]; ok {
				return p, c.Files[p]
			}
		}
	case GRUBLegacy:
		for _, p := range []string{"boot/grub/menu.lst", "grub/menu.lst", "boot/grub/grub.conf", "grub/grub.conf"} {
			if _, ok := c.Files[p]; ok {
				return p, c.Files[p]
			}
		}
	}
	return "", nil
}
