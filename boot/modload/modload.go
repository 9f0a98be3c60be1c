// Package modload loads the stub image's kernel modules in dependency order
// from a modules.dep, with finit_module: there is no modprobe (no shell, no
// kmod) in the stub.
//
// The stub image packs only block and TPM front ends: guest filesystems
// are read in userspace (boot/disks), never by a kernel driver, so there
// is one stage and no filesystem module to load.
package modload

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Module is one line of modules.dep, with what the module's own .modinfo
// adds.
type Module struct {
	// Name is the canonical module name ("xen_blkfront").
	Name string
	// Path is relative to the modules directory, as modules.dep writes it.
	Path string
	Deps []string // paths
	// SoftPre are the module's "softdep=pre:" names or aliases
	// (ext4: "crypto-crc32c"): modules it uses without linking against
	// them, which modules.dep cannot express and modprobe would load first.
	SoftPre []string
	// Aliases are the module's "alias=" values ("fs-ext4", "crc32c").
	Aliases []string
}

// Loaded is the outcome of loading one module.
type Loaded struct {
	Module
	// Already is true when the kernel had it (EEXIST): built in by
	// another name, or loaded as someone's dependency.
	Already bool
	// Err is why the module did not load. It is a warning for the caller:
	// xen-* front ends fail on QEMU, virtio ones on Xen, and either way
	// the stub goes on to look for a disk and a TPM.
	Err      error
	Duration time.Duration
}

// ModName turns "kernel/drivers/block/xen-blkfront.ko" or "xen-blkfront"
// into the kernel's name for the module, "xen_blkfront".
func ModName(p string) string {
	n := path.Base(p)
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		n = strings.TrimSuffix(n, ext)
	}
	n = strings.TrimSuffix(n, ".ko")
	return strings.ReplaceAll(n, "-", "_")
}

// ParseDep reads modules.dep ("path: dep dep ..." per line). file names
// the file in errors.
func ParseDep(file string, b []byte) ([]Module, error) {
	var mods []Module
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		p, deps, ok := strings.Cut(line, ":")
		p = strings.TrimSpace(p)
		if !ok || p == "" {
			return nil, fmt.Errorf("%s:%d: want \"module.ko: dependencies\", got %q", file, n, line)
		}
		if !validPath(p) {
			return nil, fmt.Errorf("%s:%d: bad module path %q", file, n, p)
		}
		if seen[p] {
			return nil, fmt.Errorf("%s:%d: %s listed twice", file, n, p)
		}
		seen[p] = true
		m := Module{Name: ModName(p), Path: p}
		for _, d := range strings.Fields(deps) {
			if !validPath(d) {
				return nil, fmt.Errorf("%s:%d: bad dependency path %q", file, n, d)
			}
			m.Deps = append(m.Deps, d)
		}
		mods = append(mods, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	return mods, nil
}

// validPath keeps module paths inside the modules directory.
func validPath(p string) bool {
	return p != "" && !path.IsAbs(p) && path.Clean(p) == p && p != ".." && !strings.HasPrefix(p, "../")
}

// ReadModinfo returns the soft pre-dependencies and aliases a module file
// declares in its .modinfo section (what depmod turns into modules.softdep
// and modules.alias, neither of which the stub image carries).
func ReadModinfo(file string) (softPre, aliases []string, err error) {
	f, err := elf.Open(file)
	if err != nil {
		return nil, nil, fmt.Errorf("module %s: %w", file, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, nil, fmt.Errorf("module %s: no .modinfo section", file)
	}
	b, err := sec.Data()
	if err != nil {
		return nil, nil, fmt.Errorf("module %s: read .modinfo: %w", file, err)
	}
	for _, rec := range bytes.Split(b, []byte{0}) {
		k, v, ok := strings.Cut(string(rec), "=")
		if !ok {
			continue
		}
		switch k {
		case "alias":
			aliases = append(aliases, v)
		case "softdep":
			softPre = append(softPre, SoftPre(strings.Fields(v))...)
		}
	}
	return softPre, aliases, nil
}

// SoftPre returns the "pre:" names of a softdep's words ("pre: a b post:
// c" gives a, b): only what must be loaded first matters. It is the one
// reader of that syntax, for .modinfo here and modules.softdep in images.
func SoftPre(words []string) []string {
	var out []string
	pre := false
	for _, w := range words {
		switch w {
		case "pre:":
			pre = true
		case "post:":
			pre = false
		default:
			if pre {
				out = append(out, w)
			}
		}
	}
	return out
}

// Set is a modules directory as the stub sees it. It remembers what it
// loaded, so a second stage neither reloads nor retries a module.
type Set struct {
	Dir string
	// Modules are in modules.dep order.
	Modules []Module
	// Warnings say which module files' .modinfo could not be read (their
	// soft dependencies are then unknown); loading still goes on.
	Warnings []string

	file    string
	byPath  map[string]int
	byName  map[string]int
	aliases map[string][]string // alias → names
	outcome map[string]error    // path → nil (loaded or already there) or why not
}

// NewSet indexes mods (in modules.dep order); file names modules.dep in
// errors.
func NewSet(dir, file string, mods []Module) *Set {
	s := &Set{Dir: dir, Modules: mods, file: file, byPath: map[string]int{}, byName: map[string]int{},
		aliases: map[string][]string{}, outcome: map[string]error{}}
	for i, m := range mods {
		s.byPath[m.Path] = i
		s.byName[m.Name] = i
		for _, a := range m.Aliases {
			s.aliases[a] = append(s.aliases[a], m.Name)
		}
	}
	return s
}

// Open reads dir/modules.dep and each listed module's .modinfo. Only a
// missing or malformed modules.dep is an error.
func Open(dir string) (*Set, error) {
	file := filepath.Join(dir, "modules.dep")
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	mods, err := ParseDep(file, b)
	if err != nil {
		return nil, err
	}
	var warnings []string
	for i := range mods {
		mods[i].SoftPre, mods[i].Aliases, err = ReadModinfo(filepath.Join(dir, filepath.FromSlash(mods[i].Path)))
		if err != nil {
			warnings = append(warnings, err.Error())
		}
	}
	s := NewSet(dir, file, mods)
	s.Warnings = warnings
	return s, nil
}

// Lookup finds a module by name ("xen-blkfront", "xen_blkfront") or, as
// modprobe does for soft dependencies, by alias ("crypto-crc32c"). Among
// several providers of an alias a "_generic" one wins: crc32c_intel would
// fail on a CPU without SSE4.2.
func (s *Set) Lookup(name string) (Module, bool) {
	if i, ok := s.byName[ModName(name)]; ok {
		return s.Modules[i], true
	}
	cands := append([]string(nil), s.aliases[name]...)
	if len(cands) == 0 {
		return Module{}, false
	}
	sort.Strings(cands)
	pick := cands[0]
	for _, c := range cands {
		if strings.HasSuffix(c, "_generic") {
			pick = c
			break
		}
	}
	return s.Modules[s.byName[pick]], true
}

// Order returns the modules named (nil: all of them) with their
// dependencies and soft pre-dependencies, every module after everything
// it depends on. Ties keep the order of names. A name that is not in the
// set is an error; an unresolvable soft dependency is skipped, as
// modprobe skips it.
func (s *Set) Order(names []string) ([]Module, error) {
	var roots []Module
	if names == nil {
		roots = s.Modules
	} else {
		for _, n := range names {
			m, ok := s.Lookup(n)
			if !ok {
				return nil, fmt.Errorf("%s: no module %q", s.file, n)
			}
			roots = append(roots, m)
		}
	}
	const (
		visiting = 1
		done     = 2
	)
	state := map[string]int{}
	var out []Module
	var visit func(m Module, chain []string) error
	visit = func(m Module, chain []string) error {
		switch state[m.Path] {
		case done:
			return nil
		case visiting:
			return fmt.Errorf("%s: dependency cycle: %s", s.file, strings.Join(append(chain, m.Path), " -> "))
		}
		state[m.Path] = visiting
		for _, sd := range m.SoftPre {
			dm, ok := s.Lookup(sd)
			// A soft dependency on oneself, or back up the chain, is no
			// reason to fail: it only orders, and the order is settled.
			if !ok || state[dm.Path] == visiting {
				continue
			}
			if err := visit(dm, append(chain, m.Path)); err != nil {
				return err
			}
		}
		for _, d := range m.Deps {
			i, ok := s.byPath[d]
			if !ok {
				return fmt.Errorf("%s: %s depends on %s, which is not listed", s.file, m.Path, d)
			}
			if err := visit(s.Modules[i], append(chain, m.Path)); err != nil {
				return err
			}
		}
		state[m.Path] = done
		out = append(out, m)
		return nil
	}
	for _, m := range roots {
		if err := visit(m, nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// finit is the system call, replaced in tests: loading modules into the
// test machine's own kernel is not something a unit test may do.
var finit = finitModule

// Load loads mods, which must be in load order (from Order). A module this Set already tried is skipped and not
// reported again; a module whose dependency failed is not tried. Every
// failure is reported in its Loaded.Err and the rest are still tried.
func (s *Set) Load(mods []Module) []Loaded {
	out := make([]Loaded, 0, len(mods))
	for _, m := range mods {
		if _, tried := s.outcome[m.Path]; tried {
			continue
		}
		l := Loaded{Module: m}
		for _, d := range m.Deps {
			if why := s.outcome[d]; why != nil {
				l.Err = fmt.Errorf("dependency %s did not load: %v", ModName(d), why)
				break
			}
		}
		if l.Err == nil {
			start := time.Now()
			l.Already, l.Err = finit(filepath.Join(s.Dir, filepath.FromSlash(m.Path)))
			l.Duration = time.Since(start)
		}
		s.outcome[m.Path] = l.Err
		out = append(out, l)
	}
	return out
}

// LoadAll loads the modules named (nil: every module in dir/modules.dep)
// and their dependencies, dependencies first. It returns an error only
// when modules.dep is missing or malformed; a module that fails to load is
// reported in its Loaded.Err and the rest are still tried.
func LoadAll(dir string, names []string) ([]Loaded, error) {
	s, err := Open(dir)
	if err != nil {
		return nil, err
	}
	order, err := s.Order(names)
	if err != nil {
		return nil, err
	}
	return s.Load(order), nil
}

// Order is Set.Order over modules.dep lines alone (no .modinfo): file
// order breaks ties.
func Order(file string, mods []Module, names []string) ([]Module, error) {
	return NewSet("", file, mods).Order(names)
}
