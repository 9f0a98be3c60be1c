// Package entry holds what every boot-config parser produces: boot entries
// with the exact kernel path, initrd paths and command-line bytes, and the
// menu they came from. Discovery and selection work on these types only, so
// the stub and pcrsim pick the same entry from the same disk.
package entry

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
)

// Format names a boot-configuration format.
type Format string

const (
	GRUB2      Format = "grub2"
	GRUBLegacy Format = "grub-legacy"
	Syslinux   Format = "syslinux"
	BLS        Format = "bls"
)

// Entry is one bootable menu item.
type Entry struct {
	Format Format `json:"format"`
	// Config is the file, inside its filesystem, that defined the entry;
	// Line is the 1-based line of the entry's first line there.
	Config string `json:"config"`
	Line   int    `json:"line,omitempty"`
	// Index is the entry's position in the flattened menu (0-based).
	Index int `json:"index"`
	// MenuPath is how the boot loader itself names the position: GRUB2's
	// "1>2" for an entry in a submenu; the decimal index otherwise.
	MenuPath string `json:"menu_path"`
	// Title is GRUB's title, syslinux's MENU LABEL (or LABEL), BLS's title.
	Title string `json:"title"`
	// ID is GRUB2's --id, syslinux's LABEL, or the BLS file name without
	// ".conf"; empty when the format has none.
	ID string `json:"id,omitempty"`
	// Kernel and Initrds are fs.ValidPath paths inside the filesystem
	// that holds Config (no leading slash, already cleaned).
	Kernel  string   `json:"kernel"`
	Initrds []string `json:"initrds"`
	// Cmdline is the exact command line the kernel receives.
	Cmdline string `json:"cmdline"`
}

// Menu is a parsed configuration file.
type Menu struct {
	Format  Format  `json:"format"`
	Config  string  `json:"config"`
	Entries []Entry `json:"entries"`
	// Default is the index into Entries that the boot loader would boot
	// with no user input; DefaultReason says how it was decided.
	Default       int    `json:"default"`
	DefaultReason string `json:"default_reason"`
	// Waits, when not empty, says why the boot loader would not boot
	// Default unattended but stop and wait for a person (a menu with no
	// timeout, a password prompt). The selector then refuses to boot
	// without an explicit choice; see discover.ErrWaitsForPerson.
	Waits string `json:"waits,omitempty"`
	// Unbootable, when not empty, says why the loader's default item is
	// nothing vtpmboot can boot (a chainloader or multiboot item): the
	// selector refuses rather than boot another entry.
	Unbootable string `json:"unbootable,omitempty"`
	// Fallback lists, in order, the entries (indexes into Entries) the
	// loader tries when the default fails to load because a file is
	// missing (GRUB's "fallback").
	Fallback []int `json:"fallback,omitempty"`
	// Warnings lists lines that were understood but not honoured (an
	// unsupported command, say), so a user can see what was skipped.
	Warnings []string `json:"warnings,omitempty"`
}

// Size limits for untrusted guest files. A config larger than MaxConfigSize
// is not a boot config; kernels and initrds beyond their limits would not
// fit a guest's memory alongside the stub anyway.
const (
	MaxConfigSize      = 1 << 20
	MaxKernelSize      = 256 << 20
	MaxInitrdTotalSize = 1 << 30
)

// ErrTooLarge is wrapped by errors about files over a size limit.
var ErrTooLarge = errors.New("file too large")

// SyntaxError is a config parse error at a specific line.
type SyntaxError struct {
	File string
	Line int
	Msg  string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// ReadConfig reads a config file from fsys, refusing anything over
// MaxConfigSize and anything that is not a regular file.
func ReadConfig(fsys fs.FS, name string) ([]byte, error) {
	// Stat before opening: opening a FIFO in a mounted guest tree
	// (pcrsim --root) would block until someone writes to it.
	if st, err := fs.Stat(fsys, name); err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	} else if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("read %s: not a regular file (%v)", name, st.Mode().Type())
	}
	f, err := fsys.Open(name)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("read %s: not a regular file", name)
	}
	if st.Size() > MaxConfigSize {
		return nil, fmt.Errorf("read %s: %w: %d bytes, limit %d", name, ErrTooLarge, st.Size(), MaxConfigSize)
	}
	b, err := ReadLimited(f, MaxConfigSize)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return b, nil
}

// ReadLimited reads r to its end, refusing (with ErrTooLarge) more than
// limit bytes. It is the one capped read of untrusted files: guest configs
// here, event logs, xl configs and pcrsim's inputs elsewhere. The limit is
// enforced while reading, since files such as securityfs's report size 0.
func ReadLimited(r io.Reader, limit int) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(b) > limit {
		return nil, fmt.Errorf("%w: over %d bytes", ErrTooLarge, limit)
	}
	return b, nil
}

// ResolvePath turns a path as written in a config into an fs.ValidPath
// inside the config's own filesystem. base is the directory relative paths
// start from (fs.ValidPath form, "." for the root). "..", "." and repeated
// slashes are resolved lexically and can never climb above the root, the
// way a boot loader resolves them against its partition. A GRUB device
// prefix such as "(hd0,msdos1)" is dropped: paths always resolve inside the
// filesystem that holds the config.
func ResolvePath(base, p string) (string, error) {
	if strings.HasPrefix(p, "(") {
		i := strings.IndexByte(p, ')')
		if i < 0 {
			return "", fmt.Errorf("path %q: unterminated device name", p)
		}
		p = p[i+1:]
	}
	if p == "" {
		return "", fmt.Errorf("empty path")
	}
	if strings.IndexByte(p, 0) >= 0 {
		return "", fmt.Errorf("path %q contains a NUL byte", p)
	}
	if !strings.HasPrefix(p, "/") {
		p = "/" + base + "/" + p
	}
	clean := strings.TrimPrefix(path.Clean(p), "/")
	if clean == "" {
		clean = "."
	}
	if !fs.ValidPath(clean) {
		return "", fmt.Errorf("path %q is not valid inside a filesystem", p)
	}
	return clean, nil
}
