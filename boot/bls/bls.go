// Package bls reads Boot Loader Specification entries (loader/entries/*.conf)
// two ways: as systemd-boot would boot them (Parse) and as Fedora/RHEL's
// GRUB "blscfg" command turns them into menu entries (LoadGRUB), which the
// grub2 package runs through its own interpreter. The two differ in
// ordering, in which "options" lines count and in the command line bytes;
// docs/config-bls.md has the rules.
package bls

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/vtpmboot/vtpmboot/boot/entry"
	"github.com/vtpmboot/vtpmboot/boot/grub2/grubenv"
)

// MaxEntries bounds how many entry files are read from one directory;
// a real /boot holds a handful, a hostile one could hold millions.
const MaxEntries = 1024

// Pair is one "key value" line of an entry file.
type Pair struct {
	Key, Value string
	Line       int
}

// File is one entry file as read.
type File struct {
	Name  string // path inside the filesystem
	ID    string // file name without ".conf"
	Pairs []Pair
}

func (f *File) get(key string) (string, int, bool) {
	for _, p := range f.Pairs {
		if p.Key == key {
			return p.Value, p.Line, true
		}
	}
	return "", 0, false
}

func (f *File) all(key string) []string {
	var out []string
	for _, p := range f.Pairs {
		if p.Key == key {
			out = append(out, p.Value)
		}
	}
	return out
}

// parseSpec reads an entry file the way the BLS spec and systemd-boot do:
// blank lines and '#' comments skipped, key up to the first whitespace,
// value the rest with surrounding whitespace removed.
func parseSpec(name string, data []byte) *File {
	f := &File{Name: name, ID: strings.TrimSuffix(path.Base(name), ".conf")}
	for i, raw := range strings.Split(string(data), "\n") {
		l := strings.TrimSpace(raw)
		if l == "" || l[0] == '#' {
			continue
		}
		k, v, _ := strings.Cut(l, " ")
		if j := strings.IndexAny(l, " \t"); j >= 0 {
			k, v = l[:j], l[j+1:]
		}
		f.Pairs = append(f.Pairs, Pair{Key: k, Value: strings.TrimSpace(v), Line: i + 1})
	}
	return f
}

// parseGRUB reads an entry file the way blscfg's read_entry does, quirks
// included: leading blanks skipped, '#' lines skipped, the key ends at the
// first space (a tab only if the line has no space), and the first line
// with no separator or nothing after it (an empty line!) ends the file.
func parseGRUB(name string, data []byte) (*File, int) {
	f := &File{Name: name, ID: strings.TrimSuffix(path.Base(name), ".conf")}
	for i, raw := range strings.Split(string(data), "\n") {
		l := strings.TrimSuffix(raw, "\r")
		l = strings.TrimLeft(l, " \t")
		if strings.HasPrefix(l, "#") {
			continue
		}
		sep := strings.IndexByte(l, ' ')
		if sep < 0 {
			sep = strings.IndexByte(l, '\t')
		}
		if sep < 0 || sep == len(l)-1 {
			if i == len(strings.Split(string(data), "\n"))-1 && l == "" {
				return f, 0 // the newline at the end of the file
			}
			return f, i + 1
		}
		v := strings.TrimLeft(l[sep+1:], " \t")
		f.Pairs = append(f.Pairs, Pair{Key: l[:sep], Value: v, Line: i + 1})
	}
	return f, 0
}

// readDir lists *.conf entry files (not starting with '.') in dir, in
// name order.
func readDir(fsys fs.FS, dir string) ([]string, error) {
	des, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", dir, err)
	}
	var names []string
	for _, de := range des {
		n := de.Name()
		if strings.HasPrefix(n, ".") || len(n) <= len(".conf") || !strings.HasSuffix(n, ".conf") {
			continue
		}
		if !de.Type().IsRegular() && de.Type()&fs.ModeSymlink == 0 {
			continue
		}
		names = append(names, path.Join(dir, n))
	}
	if len(names) > MaxEntries {
		return nil, fmt.Errorf("read %s: %d entry files, limit %d", dir, len(names), MaxEntries)
	}
	sort.Strings(names)
	return names, nil
}

// GrubenvPaths are where Fedora/RHEL keep the grubenv whose kernelopts the
// entries' "$kernelopts" refers to: /boot/grub2/grubenv on a root
// filesystem, grub2/grubenv on a separate /boot.
var GrubenvPaths = []string{"boot/grub2/grubenv", "grub2/grubenv"}

// LoadGrubenv reads the first grubenv of GrubenvPaths that exists. A
// missing file is not an error (nil map); a malformed one is.
func LoadGrubenv(fsys fs.FS) (map[string]string, string, error) {
	for _, p := range GrubenvPaths {
		data, err := entry.ReadConfig(fsys, p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, p, err
		}
		vars, err := grubenv.Parse(data)
		if err != nil {
			return nil, p, fmt.Errorf("%s: %w", p, err)
		}
		return grubenv.Map(vars), p, nil
	}
	return nil, "", nil
}

// ExpandGRUB substitutes $name references the way blscfg's expand_val
// does before it hands "options" to GRUB's script parser: a name is
// letters, digits and '_'; an unset variable expands to nothing; no
// quoting or ${} form is understood.
func ExpandGRUB(s string, lookup func(string) (string, bool)) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		if s[i] != '$' {
			b.WriteByte(s[i])
			i++
			continue
		}
		j := i + 1
		for j < len(s) && isNameChar(s[j]) {
			j++
		}
		if v, ok := lookup(s[i+1 : j]); ok {
			b.WriteString(v)
		}
		i = j
	}
	return b.String()
}

func isNameChar(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}

// Parse reads the entries in dir as systemd-boot boots them: sorted per
// the BLS spec, options lines joined with single spaces, no BOOT_IMAGE.
// "$var" in options is expanded from a Fedora grubenv if one exists,
// because such entries are only meaningful with it (see the docs).
func Parse(fsys fs.FS, dir string) (*entry.Menu, error) {
	dir = path.Clean(strings.TrimPrefix(dir, "/"))
	names, err := readDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	m := &entry.Menu{Format: entry.BLS, Config: dir}
	env, envPath, err := LoadGrubenv(fsys)
	if err != nil {
		m.Warnings = append(m.Warnings, fmt.Sprintf("%s ignored: %v", envPath, err))
		env = nil
	}
	type cand struct {
		f                           *File
		sortKey, machineID, version string
		e                           entry.Entry
		bad                         bool // boot counting: no tries left
	}
	var cands []cand
	for _, name := range names {
		data, err := entry.ReadConfig(fsys, name)
		if err != nil {
			m.Warnings = append(m.Warnings, fmt.Sprintf("%s skipped: %v", name, err))
			continue
		}
		f := parseSpec(name, data)
		// Boot counting (systemd-boot, "NAME+LEFT[-DONE].conf"): the
		// counter is not part of the entry's id; an entry with no
		// tries left is sorted after every other.
		id, left, counted := splitCounter(f.ID)
		f.ID = id
		e, warns, err := specEntry(f, env, envPath)
		m.Warnings = append(m.Warnings, warns...)
		if err != nil {
			m.Warnings = append(m.Warnings, fmt.Sprintf("%s skipped: %v", name, err))
			continue
		}
		sk, _, _ := f.get("sort-key")
		mid, _, _ := f.get("machine-id")
		ver, _, _ := f.get("version")
		cands = append(cands, cand{f, sk, mid, ver, e, counted && left == 0})
	}
	if len(cands) == 0 {
		return nil, fmt.Errorf("%s: no bootable BLS entries (*.conf with a linux line)", dir)
	}
	// systemd-boot's order: entries with a sort-key first, by sort-key,
	// then machine-id ascending, then version descending, then the file
	// name descending as a version (newest kernel first).
	sort.SliceStable(cands, func(i, j int) bool {
		a, b := cands[i], cands[j]
		if a.bad != b.bad {
			return b.bad
		}
		if (a.sortKey != "") != (b.sortKey != "") {
			return a.sortKey != ""
		}
		if a.sortKey != "" {
			if a.sortKey != b.sortKey {
				return a.sortKey < b.sortKey
			}
			if a.machineID != b.machineID {
				return a.machineID < b.machineID
			}
			if c := VerCmp(a.version, b.version); c != 0 {
				return c > 0
			}
		}
		return VerCmp(a.f.ID, b.f.ID) > 0
	})
	for i := range cands {
		e := cands[i].e
		e.Index = i
		e.MenuPath = fmt.Sprint(i)
		m.Entries = append(m.Entries, e)
	}
	m.DefaultReason = "first entry in BLS sort order"
	conf, confPath, confErr := loaderConf(fsys, dir)
	if confErr != nil {
		m.Warnings = append(m.Warnings, fmt.Sprintf("%s ignored: %v", confPath, confErr))
	}
	if t := conf["timeout"]; t == "menu-force" {
		m.Waits = fmt.Sprintf("%s says timeout menu-force: systemd-boot shows its menu and waits for a key", confPath)
	}
	if pat, ok := conf["default"]; ok && pat != "" && pat != "@saved" {
		for i, e := range m.Entries {
			// systemd-boot matches the glob against the id; ids
			// carry ".conf" in newer releases, so both forms match.
			if a, _ := path.Match(pat, e.ID); a {
				m.Default, m.DefaultReason = i, fmt.Sprintf("default %q in %s", pat, confPath)
				return m, nil
			}
			if b, _ := path.Match(pat, e.ID+".conf"); b {
				m.Default, m.DefaultReason = i, fmt.Sprintf("default %q in %s", pat, confPath)
				return m, nil
			}
		}
		m.Warnings = append(m.Warnings, fmt.Sprintf("%s: default %q matches no entry", confPath, pat))
	} else if pat == "@saved" {
		m.Warnings = append(m.Warnings, fmt.Sprintf("%s: default @saved names an EFI variable, which a Xen guest does not have", confPath))
	}
	if saved := env["saved_entry"]; saved != "" {
		found := false
		for i, e := range m.Entries {
			if e.ID == saved {
				m.Default, found = i, true
				m.DefaultReason = fmt.Sprintf("saved_entry=%q in %s", saved, envPath)
				break
			}
		}
		if !found {
			m.Warnings = append(m.Warnings, fmt.Sprintf("%s: saved_entry=%q names no entry; using the first", envPath, saved))
		}
	}
	return m, nil
}

func specEntry(f *File, env map[string]string, envPath string) (entry.Entry, []string, error) {
	var warns []string
	e := entry.Entry{Format: entry.BLS, Config: f.Name, Line: 1, ID: f.ID, Initrds: []string{}}
	if len(f.Pairs) > 0 {
		e.Line = f.Pairs[0].Line
	}
	linux, _, ok := f.get("linux")
	if !ok {
		if _, _, efi := f.get("efi"); efi {
			return e, nil, errors.New("unified kernel images (efi key) are not supported")
		}
		return e, nil, errors.New("no linux key")
	}
	k, err := entry.ResolvePath(".", linux)
	if err != nil {
		return e, nil, fmt.Errorf("linux: %w", err)
	}
	e.Kernel = k
	look := func(n string) (string, bool) { v, ok := env[n]; return v, ok }
	for _, ir := range f.all("initrd") {
		if strings.Contains(ir, "$") {
			ir = ExpandGRUB(ir, look)
		}
		// systemd-boot accepts several initrds on one line too.
		for _, p := range strings.Fields(ir) {
			r, err := entry.ResolvePath(".", p)
			if err != nil {
				return e, nil, fmt.Errorf("initrd: %w", err)
			}
			e.Initrds = append(e.Initrds, r)
		}
	}
	e.Title, _, _ = f.get("title")
	if e.Title == "" {
		e.Title = f.ID
	}
	opts := strings.Join(f.all("options"), " ")
	if strings.Contains(opts, "$") {
		if env == nil {
			warns = append(warns, fmt.Sprintf("%s: options contain $variables and no grubenv was found; they expand to nothing", f.Name))
		} else {
			warns = append(warns, fmt.Sprintf("%s: options $variables expanded from %s as GRUB's blscfg would", f.Name, envPath))
		}
		opts = ExpandGRUB(opts, look)
	}
	e.Cmdline = opts
	for _, p := range f.Pairs {
		switch p.Key {
		case "title", "version", "machine-id", "sort-key", "linux", "initrd", "options", "architecture":
		case "devicetree", "devicetree-overlay":
			warns = append(warns, fmt.Sprintf("%s:%d: %s ignored (no device trees on x86)", f.Name, p.Line, p.Key))
		case "grub_users", "grub_arg", "grub_class", "grub_hotkey":
		default:
			warns = append(warns, fmt.Sprintf("%s:%d: unknown key %q ignored", f.Name, p.Line, p.Key))
		}
	}
	return e, warns, nil
}

// GRUBEntry is what blscfg makes of one entry file: the pieces of the
// script it generates ("linux ($root)LINUX OPTIONS", "initrd ($root)I...").
type GRUBEntry struct {
	File    string
	Line    int
	ID      string
	Title   string // blscfg falls back to the linux path
	Linux   string
	Initrds []string
	// Options is the first "options" line only (blscfg reads one), not
	// yet expanded; HasOptions is false when the file has none, and then
	// blscfg uses $default_kernelopts.
	Options    string
	HasOptions bool
}

// LoadGRUB reads dir as Fedora's blscfg does and returns the entries in
// its menu order: file names compared as name-version-release with rpm's
// version comparison, newest first; a file whose name compares equal to
// one already read is dropped; files without "linux" are skipped.
func LoadGRUB(fsys fs.FS, dir string) ([]GRUBEntry, []string, error) {
	names, err := readDir(fsys, dir)
	if err != nil {
		return nil, nil, err
	}
	var warns []string
	var list []*File
	for _, name := range names {
		data, err := entry.ReadConfig(fsys, name)
		if err != nil {
			warns = append(warns, fmt.Sprintf("%s skipped: %v", name, err))
			continue
		}
		f, stop := parseGRUB(name, data)
		if stop > 0 {
			warns = append(warns, fmt.Sprintf("%s:%d: line without a value; GRUB's blscfg stops reading the file here", name, stop))
		}
		// bls_add_entry: insert before the first entry it is newer than.
		pos, dup := len(list), false
		for i, o := range list {
			c := splitCmp(f.ID, o.ID)
			if c == 0 {
				dup = true
				break
			}
			if c > 0 {
				pos = i
				break
			}
		}
		if dup {
			warns = append(warns, fmt.Sprintf("%s dropped: its name compares equal to another entry's, as blscfg does", name))
			continue
		}
		list = append(list, nil)
		copy(list[pos+1:], list[pos:])
		list[pos] = f
	}
	var out []GRUBEntry
	for _, f := range list {
		linux, _, ok := f.get("linux")
		if !ok {
			warns = append(warns, fmt.Sprintf("%s skipped: no linux key", f.Name))
			continue
		}
		g := GRUBEntry{File: f.Name, Line: 1, ID: f.ID, Linux: linux, Initrds: f.all("initrd")}
		if len(f.Pairs) > 0 {
			g.Line = f.Pairs[0].Line
		}
		g.Title, _, ok = f.get("title")
		if !ok {
			g.Title = linux
		}
		g.Options, _, g.HasOptions = f.get("options")
		if n := len(f.all("options")); n > 1 {
			warns = append(warns, fmt.Sprintf("%s: %d options lines; GRUB's blscfg uses only the first", f.Name, n))
		}
		if _, _, dt := f.get("devicetree"); dt {
			warns = append(warns, fmt.Sprintf("%s: devicetree ignored", f.Name))
		}
		out = append(out, g)
	}
	return out, warns, nil
}

// splitCmp is blscfg's bls_cmp: name, version and release split at the
// last two '-' and compared with VerCmp in turn.
func splitCmp(a, b string) int {
	an, av, ar := splitNVR(a)
	bn, bv, br := splitNVR(b)
	if c := VerCmp(an, bn); c != 0 {
		return c
	}
	if c := VerCmp(av, bv); c != 0 {
		return c
	}
	return VerCmp(ar, br)
}

func splitNVR(s string) (name, version, release string) {
	i := strings.LastIndexByte(s, '-')
	if i < 0 {
		return s, "", ""
	}
	release = s[i+1:]
	s = s[:i]
	j := strings.LastIndexByte(s, '-')
	if j < 0 {
		// "Bubble up": name takes the version slot's value.
		return s, release, ""
	}
	return s[:j], s[j+1:], release
}

// splitCounter splits systemd-boot's boot counter off an entry file's id:
// "fedora+3-1" is id "fedora" with 3 tries left; "fedora+0" has none.
func splitCounter(id string) (string, int, bool) {
	i := strings.LastIndexByte(id, '+')
	if i < 0 {
		return id, 0, false
	}
	c := id[i+1:]
	left, _, _ := strings.Cut(c, "-")
	n, err := strconv.Atoi(left)
	if err != nil || n < 0 || left != strconv.Itoa(n) {
		return id, 0, false
	}
	if _, done, ok := strings.Cut(c, "-"); ok {
		if d, err := strconv.Atoi(done); err != nil || d < 0 || done != strconv.Itoa(d) {
			return id, 0, false
		}
	}
	return id[:i], n, true
}

// loaderConf reads systemd-boot's loader.conf next to the entries
// directory (loader/loader.conf on the ESP): "key value" lines, '#'
// comments. A missing file is no error.
func loaderConf(fsys fs.FS, dir string) (map[string]string, string, error) {
	p := path.Join(path.Dir(dir), "loader.conf")
	if _, err := fs.Stat(fsys, p); err != nil {
		return nil, p, nil
	}
	data, err := entry.ReadConfig(fsys, p)
	if err != nil {
		return nil, p, err
	}
	conf := map[string]string{}
	for _, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || l[0] == '#' {
			continue
		}
		k, v, _ := strings.Cut(l, " ")
		if k2, v2, ok := strings.Cut(l, "\t"); ok && len(k2) < len(k) {
			k, v = k2, v2
		}
		conf[k] = strings.TrimSpace(v)
	}
	return conf, p, nil
}
