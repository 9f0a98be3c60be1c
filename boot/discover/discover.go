// Package discover finds a guest's boot configuration on its filesystems and
// selects the entry to boot. It is the one selector: the stub runs it over
// the guest's partitions mounted read-only, pcrsim over the same partitions
// read from a disk image, so both pick the same kernel, initrds and command
// line.
package discover

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"syscall"

	"github.com/vtpmboot/vtpmboot/boot/bls"
	"github.com/vtpmboot/vtpmboot/boot/disks"
	"github.com/vtpmboot/vtpmboot/boot/entry"
	"github.com/vtpmboot/vtpmboot/boot/grub2"
	"github.com/vtpmboot/vtpmboot/boot/grublegacy"
	"github.com/vtpmboot/vtpmboot/boot/syslinux"
)

// candidate is one place a boot configuration may live.
type candidate struct {
	format entry.Format
	path   string
	dir    bool // BLS: a directory of entries rather than a file
	parse  func(disks.Volume, string) (*entry.Menu, error)
}

func parseGRUB2(p disks.Volume, path string) (*entry.Menu, error) {
	return grub2.ParseWith(p.FS, path, grub2.Options{Root: p.GRUBDevice()})
}

func onFS(parse func(fs.FS, string) (*entry.Menu, error)) func(disks.Volume, string) (*entry.Menu, error) {
	return func(p disks.Volume, path string) (*entry.Menu, error) { return parse(p.FS, path) }
}

var (
	parseBLS        = onFS(bls.Parse)
	parseSyslinux   = onFS(syslinux.Parse)
	parseGRUBLegacy = onFS(grublegacy.Parse)
)

// searchOrder is the priority of configurations within one filesystem. It
// follows Xen's pygrub, the host-side loader Xen admins know: GRUB2 first,
// then extlinux/syslinux, then GRUB legacy. Boot Loader Spec entries come
// right after GRUB2: a grub.cfg that runs blscfg already includes them, and
// a bare /loader/entries directory means systemd-boot style. A guest that
// still carries a stale menu.lst next to a live grub.cfg therefore boots
// what GRUB2 would have booted.
var searchOrder = []candidate{
	{entry.GRUB2, "boot/grub/grub.cfg", false, parseGRUB2},
	{entry.GRUB2, "grub/grub.cfg", false, parseGRUB2},
	{entry.GRUB2, "boot/grub2/grub.cfg", false, parseGRUB2},
	{entry.GRUB2, "grub2/grub.cfg", false, parseGRUB2},
	{entry.BLS, "loader/entries", true, parseBLS},
	{entry.BLS, "boot/loader/entries", true, parseBLS},
	{entry.Syslinux, "boot/extlinux/extlinux.conf", false, parseSyslinux},
	{entry.Syslinux, "extlinux/extlinux.conf", false, parseSyslinux},
	{entry.Syslinux, "boot/extlinux.conf", false, parseSyslinux},
	{entry.Syslinux, "extlinux.conf", false, parseSyslinux},
	{entry.Syslinux, "boot/syslinux/syslinux.cfg", false, parseSyslinux},
	{entry.Syslinux, "syslinux/syslinux.cfg", false, parseSyslinux},
	{entry.Syslinux, "syslinux.cfg", false, parseSyslinux},
	{entry.GRUBLegacy, "boot/grub/menu.lst", false, parseGRUBLegacy},
	{entry.GRUBLegacy, "grub/menu.lst", false, parseGRUBLegacy},
	{entry.GRUBLegacy, "boot/grub/grub.conf", false, parseGRUBLegacy},
	{entry.GRUBLegacy, "grub/grub.conf", false, parseGRUBLegacy},
}

// SearchPaths lists where configurations are looked for, in priority
// order, for --help texts and docs.
func SearchPaths() []string {
	out := make([]string, len(searchOrder))
	for i, c := range searchOrder {
		out[i] = "/" + c.path + " (" + string(c.format) + ")"
	}
	return out
}

// Found is one configuration file (or BLS directory) found on a volume.
type Found struct {
	Volume disks.Volume
	Format entry.Format
	Path   string
	// Menu is the parsed configuration; Err says why parsing failed.
	Menu *entry.Menu
	Err  error
}

// search lists every configuration on every readable volume in priority
// order: volumes in the order given, and within a volume by searchOrder.
// The first element is the one that boots; the rest are reported so a
// user can see what was passed over.
func search(parts []disks.Volume) []Found {
	var out []Found
	for _, p := range parts {
		if p.FS == nil {
			continue
		}
		for _, c := range searchOrder {
			st, err := fs.Stat(p.FS, c.path)
			if err != nil {
				if NotThere(err) {
					continue
				}
				// Only absence lets the search go on: a configuration
				// that is there but cannot be read is where the boot
				// loader would look, and booting a lower-priority
				// leftover instead is what an attacker who corrupts it
				// wants.
				out = append(out, Found{Volume: p, Format: c.format, Path: c.path, Err: fmt.Errorf("cannot read it: %w", err)})
				continue
			}
			if st.IsDir() != c.dir {
				if c.dir {
					continue // a file named like the BLS directory holds no entries
				}
				out = append(out, Found{Volume: p, Format: c.format, Path: c.path, Err: fmt.Errorf("not a regular file (%v)", st.Mode().Type())})
				continue
			}
			if c.dir {
				has, err := hasConfEntries(p.FS, c.path)
				if err != nil {
					out = append(out, Found{Volume: p, Format: c.format, Path: c.path, Err: fmt.Errorf("cannot list it: %w", err)})
					continue
				}
				if !has {
					continue
				}
			}
			// Each configuration gets its own budget of bytes to read,
			// whatever it sources or includes.
			bp := p
			bp.FS = newBudgetFS(p.FS)
			m, err := c.parse(bp, c.path)
			out = append(out, Found{Volume: p, Format: c.format, Path: c.path, Menu: m, Err: err})
		}
	}
	return out
}

func hasConfEntries(fsys fs.FS, dir string) (bool, error) {
	ents, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return false, err
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".conf") {
			return true, nil
		}
	}
	return false, nil
}

// NotThere reports whether err means a path does not exist, the one
// outcome that lets discovery move on to a lower-priority configuration
// or partition. A path component that is a file (ENOTDIR) does not exist
// either; anything else (an I/O error, corruption, a symlink loop) is a
// refusal.
func NotThere(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// Choice is the entry that will boot and why.
type Choice struct {
	Volume disks.Volume
	Found  Found
	Entry  entry.Entry
	// Reason explains the choice in one sentence for the console and pcrsim.
	Reason string
}

// ErrWaitsForPerson is wrapped by the selection error when the boot loader
// would stop at its menu or a password prompt instead of booting the
// default: vtpmboot does not guess what the person would have chosen.
var ErrWaitsForPerson = errors.New("the boot loader would wait for a person")

// ErrDefaultUnbootable is wrapped by the selection error when the loader's
// default item is a chainloader or multiboot item.
var ErrDefaultUnbootable = errors.New("the boot loader's default is not a Linux entry vtpmboot can boot")

// ErrNoConfig means no partition holds a boot configuration vtpmboot reads.
var ErrNoConfig = errors.New("no boot configuration found")

// chooseFrom selects the entry of the first configuration found.
func chooseFrom(found []Found, selector string) (*Choice, error) {
	if len(found) == 0 {
		var where []string
		for _, c := range searchOrder {
			where = append(where, "/"+c.path)
		}
		return nil, fmt.Errorf("%w: looked for %s", ErrNoConfig, strings.Join(where, ", "))
	}
	f := found[0]
	if f.Err != nil {
		return nil, fmt.Errorf("%s on %s: %w", f.Path, f.Volume.Name, f.Err)
	}
	e, reason, err := SelectEntry(f.Menu, selector)
	if err != nil {
		return nil, fmt.Errorf("%s on %s: %w", f.Path, f.Volume.Name, err)
	}
	if e.Kernel == "" {
		return nil, fmt.Errorf("%s on %s: entry %d %q (line %d) has no Linux kernel vtpmboot can boot (chainloader or multiboot entries are not supported)",
			f.Path, f.Volume.Name, e.Index, e.Title, e.Line)
	}
	if err := checkFiles(f.Volume, e); err != nil {
		fb, why, ok := fallback(f, selector, e, err)
		if !ok {
			return nil, err
		}
		e, reason = fb, reason+"; "+why
	}
	return &Choice{
		Volume: f.Volume,
		Found:  f,
		Entry:  e,
		Reason: fmt.Sprintf("%s %s on %s: %s", f.Format, "/"+f.Path, f.Volume.Name, reason),
	}, nil
}

// SelectEntry picks an entry of m. An empty selector takes the menu's
// default, unless the boot loader would not boot it unattended (m.Waits):
// then it fails with ErrWaitsForPerson, because the real loader would stop
// there too. Otherwise, in this order: a menu position ("2", or GRUB2's
// "1>0" for an entry in a submenu), an ID (GRUB2 --id, syslinux LABEL, BLS
// file name), an exact title. A selector matching several titles is an
// error: booting a guess is worse than not booting.
func SelectEntry(m *entry.Menu, selector string) (entry.Entry, string, error) {
	if m == nil || len(m.Entries) == 0 {
		return entry.Entry{}, "", errors.New("menu has no entries")
	}
	if selector == "" {
		if m.Default < 0 || m.Default >= len(m.Entries) {
			return entry.Entry{}, "", fmt.Errorf("default entry %d out of range (%d entries)", m.Default, len(m.Entries))
		}
		e := m.Entries[m.Default]
		if m.Unbootable != "" {
			return entry.Entry{}, "", fmt.Errorf("%w: %s; choose a Linux entry with vtpmboot.entry= (pcrsim --entry), or fix the config", ErrDefaultUnbootable, m.Unbootable)
		}
		if m.Waits != "" {
			return entry.Entry{}, "", fmt.Errorf("%w: %s; choose an entry with vtpmboot.entry= (pcrsim --entry), or fix the config", ErrWaitsForPerson, m.Waits)
		}
		return e, fmt.Sprintf("default entry %s %q (%s)", e.MenuPath, e.Title, m.DefaultReason), nil
	}
	// Positions count the way the boot loader counts them: GRUB2's
	// "default=2" is the third top-level item, so "2" matches MenuPath.
	for _, e := range m.Entries {
		if e.MenuPath == selector {
			return e, fmt.Sprintf("entry %s %q selected by position %q", e.MenuPath, e.Title, selector), nil
		}
	}
	if isPosition(selector) {
		return entry.Entry{}, "", fmt.Errorf("no entry at position %q (%s)", selector, listEntries(m))
	}
	for _, e := range m.Entries {
		if e.ID != "" && e.ID == selector {
			return e, fmt.Sprintf("entry %s %q selected by id %q", e.MenuPath, e.Title, selector), nil
		}
	}
	var hits []entry.Entry
	for _, e := range m.Entries {
		if e.Title == selector {
			hits = append(hits, e)
		}
	}
	switch len(hits) {
	case 1:
		return hits[0], fmt.Sprintf("entry %s %q selected by title", hits[0].MenuPath, hits[0].Title), nil
	case 0:
		return entry.Entry{}, "", fmt.Errorf("no entry matches %q (%s)", selector, listEntries(m))
	}
	var at []string
	for _, e := range hits {
		at = append(at, e.MenuPath)
	}
	return entry.Entry{}, "", fmt.Errorf("title %q matches %d entries (%s); select by index instead", selector, len(hits), strings.Join(at, ", "))
}

// isPosition reports whether s looks like a menu position ("3", "1>0"),
// which is never taken as a title: a title "2" would be too surprising.
func isPosition(s string) bool {
	for _, part := range strings.Split(s, ">") {
		if _, err := strconv.Atoi(part); err != nil {
			return false
		}
	}
	return true
}

func listEntries(m *entry.Menu) string {
	var b strings.Builder
	b.WriteString("entries: ")
	for i, e := range m.Entries {
		if i > 0 {
			b.WriteString(", ")
		}
		if i == 8 {
			fmt.Fprintf(&b, "... %d more", len(m.Entries)-i)
			break
		}
		fmt.Fprintf(&b, "%s %q", e.MenuPath, e.Title)
	}
	return b.String()
}

// fallback is what the loader boots when the default entry fails to load
// because one of its files is missing: the first of the menu's fallback
// entries whose files are all there (GRUB's "fallback", legacy and 2).
// Only the default falls back: an explicit selector names what to boot.
func fallback(f Found, selector string, def entry.Entry, err error) (entry.Entry, string, bool) {
	if selector != "" || len(f.Menu.Fallback) == 0 || !errors.Is(err, fs.ErrNotExist) {
		return entry.Entry{}, "", false
	}
	for _, i := range f.Menu.Fallback {
		if i < 0 || i >= len(f.Menu.Entries) {
			continue
		}
		e := f.Menu.Entries[i]
		if e.Kernel == "" || checkFiles(f.Volume, e) != nil {
			continue
		}
		return e, fmt.Sprintf("it fails to load (%v), so the loader falls back to entry %s %q", err, e.MenuPath, e.Title), true
	}
	return entry.Entry{}, "", false
}
