package images

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// DefaultModules are the kernel modules the stub needs on the Debian kernel:
// the block and TPM front ends for Xen (HVM/PVH) and QEMU; ResolveModules
// adds their dependencies. No filesystem driver: the stub reads guest
// filesystems in userspace (boot/disks), so no kernel code parses guest
// bytes before they are measured.
var DefaultModules = []string{
	"xen-blkfront", "xen-tpmfront",
	"virtio_pci", "virtio_blk",
}

// Module is one kernel module to pack.
type Module struct {
	// Name is the canonical module name (dashes as underscores).
	Name string
	// Path is relative to the modules directory, as in modules.dep.
	Path string
	// Deps are the modules.dep dependencies (paths), as depmod wrote them.
	Deps []string
}

// ModuleSet is a resolved, dependency-ordered set of modules.
type ModuleSet struct {
	// Dir is the host modules directory (/lib/modules/<release>).
	Dir string
	// Release is the kernel release the modules were built for, read from
	// their vermagic so a directory not named after the release still works.
	Release string
	// Modules are in load order: every module after its dependencies and
	// soft pre-dependencies.
	Modules []Module
	// Builtin lists requested or soft-dependency names that the kernel has
	// built in (from modules.builtin), so nothing is packed for them.
	Builtin []string
}

// ModName turns a module file name or user spelling into the canonical
// name: "kernel/fs/xfs/xfs.ko" and "xen-blkfront" → "xfs", "xen_blkfront".
func ModName(s string) string {
	s = path.Base(s)
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		s = strings.TrimSuffix(s, ext)
	}
	s = strings.TrimSuffix(s, ".ko")
	return strings.ReplaceAll(s, "-", "_")
}

type depDB struct {
	dir     string
	paths   map[string]string   // name → path
	deps    map[string][]string // path → dep paths
	builtin map[string]bool     // names
	aliases map[string][]string // alias → names
	softPre map[string][]string // name → pre names/aliases
}

func readLines(file string, fn func(lineNo int, line string) error) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := fn(n, line); err != nil {
			return fmt.Errorf("%s:%d: %w", file, n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", file, err)
	}
	return nil
}

func loadDepDB(dir string) (*depDB, error) {
	db := &depDB{dir: dir, paths: map[string]string{}, deps: map[string][]string{},
		builtin: map[string]bool{}, aliases: map[string][]string{}, softPre: map[string][]string{}}
	depFile := filepath.Join(dir, "modules.dep")
	if _, err := os.Stat(depFile); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("modules directory %s: %w", dir, ErrNoModulesDep)
		}
		return nil, fmt.Errorf("modules directory %s: %w", dir, err)
	}
	err := readLines(depFile, func(_ int, line string) error {
		mod, rest, ok := strings.Cut(line, ":")
		if !ok || mod == "" {
			return fmt.Errorf("malformed modules.dep line %q", line)
		}
		if !validRelPath(mod) {
			return fmt.Errorf("module path %q escapes the modules directory", mod)
		}
		deps := strings.Fields(rest)
		for _, d := range deps {
			if !validRelPath(d) {
				return fmt.Errorf("dependency path %q escapes the modules directory", d)
			}
		}
		db.paths[ModName(mod)] = mod
		db.deps[mod] = deps
		return nil
	})
	if err != nil {
		return nil, err
	}
	// The optional files below only refine the result; a kernel without
	// them (no builtins, no softdeps) is still usable.
	optional := func(name string, fn func(int, string) error) error {
		err := readLines(filepath.Join(dir, name), fn)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	if err := optional("modules.builtin", func(_ int, line string) error {
		db.builtin[ModName(line)] = true
		return nil
	}); err != nil {
		return nil, err
	}
	if err := optional("modules.alias", func(_ int, line string) error {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == "alias" {
			db.aliases[f[1]] = append(db.aliases[f[1]], ModName(f[2]))
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if err := optional("modules.softdep", func(_ int, line string) error {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "softdep" {
			return nil
		}
		name, pre := ModName(f[1]), false
		for _, w := range f[2:] {
			switch w {
			case "pre:":
				pre = true
			case "post:":
				pre = false
			default:
				if pre {
					db.softPre[name] = append(db.softPre[name], w)
				}
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	// Built-in modules answer aliases too (crypto-sha256 is built in on
	// Debian); modules.builtin.modinfo is NUL-separated "mod.key=value".
	if b, err := os.ReadFile(filepath.Join(dir, "modules.builtin.modinfo")); err == nil {
		for _, rec := range bytes.Split(b, []byte{0}) {
			mod, kv, ok := strings.Cut(string(rec), ".")
			if !ok {
				continue
			}
			if a, ok := strings.CutPrefix(kv, "alias="); ok {
				db.aliases[a] = append(db.aliases[a], ModName(mod))
				db.builtin[ModName(mod)] = true
			}
		}
	}
	return db, nil
}

func validRelPath(p string) bool {
	return p != "" && !path.IsAbs(p) && path.Clean(p) == p && !strings.HasPrefix(p, "../") && p != ".."
}

// resolveSoft picks the module that satisfies a soft dependency: the name
// itself, or one module providing the alias. When the kernel has one built
// in, nothing is needed. Among several providers the portable "_generic"
// one wins: crc32c_intel would fail to load on a CPU without SSE4.2.
func (db *depDB) resolveSoft(want string) (name string, builtin bool, ok bool) {
	n := ModName(want)
	if db.builtin[n] {
		return n, true, true
	}
	if _, found := db.paths[n]; found {
		return n, false, true
	}
	cands := append([]string(nil), db.aliases[want]...)
	sort.Strings(cands)
	for _, c := range cands {
		if db.builtin[c] {
			return c, true, true
		}
	}
	for _, c := range cands {
		if strings.HasSuffix(c, "_generic") {
			if _, found := db.paths[c]; found {
				return c, false, true
			}
		}
	}
	for _, c := range cands {
		if _, found := db.paths[c]; found {
			return c, false, true
		}
	}
	return "", false, false
}

// ResolveModules finds names (dashes or underscores) in the modules
// directory dir and returns them with their dependencies and soft
// pre-dependencies in load order. Built-in modules are listed in Builtin
// and not packed; a name that is neither a module nor built in is an error.
func ResolveModules(dir string, names []string) (*ModuleSet, error) {
	db, err := loadDepDB(dir)
	if err != nil {
		return nil, err
	}
	ms := &ModuleSet{Dir: dir}
	done := map[string]bool{}     // paths
	visiting := map[string]bool{} // cycle guard: a corrupt modules.dep must not recurse forever
	builtin := map[string]bool{}
	var visit func(p string) error
	visit = func(p string) error {
		if done[p] {
			return nil
		}
		if visiting[p] {
			return fmt.Errorf("%s/modules.dep: dependency cycle through %s", dir, p)
		}
		visiting[p] = true
		deps, ok := db.deps[p]
		if !ok {
			return fmt.Errorf("%s/modules.dep: dependency %s has no line of its own", dir, p)
		}
		name := ModName(p)
		for _, s := range db.softPre[name] {
			sn, isBuiltin, ok := db.resolveSoft(s)
			if !ok {
				// modprobe ignores an unresolvable softdep too.
				continue
			}
			if isBuiltin {
				builtin[sn] = true
				continue
			}
			if err := visit(db.paths[sn]); err != nil {
				return err
			}
		}
		for _, d := range deps {
			if err := visit(d); err != nil {
				return err
			}
		}
		visiting[p] = false
		done[p] = true
		ms.Modules = append(ms.Modules, Module{Name: name, Path: p, Deps: deps})
		return nil
	}
	for _, n := range names {
		mn := ModName(n)
		if db.builtin[mn] {
			builtin[mn] = true
			continue
		}
		p, ok := db.paths[mn]
		if !ok {
			return nil, fmt.Errorf("module %s: not in %s/modules.dep and not built in", n, dir)
		}
		if err := visit(p); err != nil {
			return nil, err
		}
	}
	for b := range builtin {
		ms.Builtin = append(ms.Builtin, b)
	}
	sort.Strings(ms.Builtin)
	for _, m := range ms.Modules {
		full := filepath.Join(dir, filepath.FromSlash(m.Path))
		vm, err := vermagic(full)
		if err != nil {
			return nil, err
		}
		rel, _, _ := strings.Cut(vm, " ")
		if ms.Release == "" {
			ms.Release = rel
		} else if rel != ms.Release {
			return nil, fmt.Errorf("module %s is for kernel %s, but %s is for %s: mixed modules directory", full, rel, ms.Modules[0].Path, ms.Release)
		}
	}
	return ms, nil
}

// vermagic reads a module's "vermagic=" modinfo string.
func vermagic(file string) (string, error) {
	f, err := elf.Open(file)
	if err != nil {
		return "", fmt.Errorf("module %s: %w", file, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return "", fmt.Errorf("module %s: no .modinfo section (compressed or not a kernel module?)", file)
	}
	b, err := sec.Data()
	if err != nil {
		return "", fmt.Errorf("module %s: .modinfo: %w", file, err)
	}
	for _, rec := range bytes.Split(b, []byte{0}) {
		if v, ok := bytes.CutPrefix(rec, []byte("vermagic=")); ok {
			return string(v), nil
		}
	}
	return "", fmt.Errorf("module %s: no vermagic in .modinfo", file)
}

// ModulesDep renders the standard modules.dep format restricted to the set,
// one line per module in load order, so a loader that walks it top to
// bottom loads dependencies first, and one that follows each line's
// dependencies finds them all packed.
func (ms *ModuleSet) ModulesDep() []byte {
	var b bytes.Buffer
	for _, m := range ms.Modules {
		b.WriteString(m.Path + ":")
		for _, d := range m.Deps {
			b.WriteString(" " + d)
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// LoadOrder lists the module paths one per line in load order; modules.dep
// cannot carry soft dependencies, this list can.
func (ms *ModuleSet) LoadOrder() []byte {
	var b bytes.Buffer
	for _, m := range ms.Modules {
		b.WriteString(m.Path + "\n")
	}
	return b.Bytes()
}

// ModulesRoot is where modules live inside the initramfs.
func (ms *ModuleSet) ModulesRoot() string { return "lib/modules/" + ms.Release }

// LoadOrderPath is the initramfs path of the LoadOrder list.
const LoadOrderPath = "etc/vtpmboot/modules"

// AddTo packs the modules at lib/modules/<release>/<path>, a restricted
// modules.dep next to them and the load-order list at LoadOrderPath.
func (ms *ModuleSet) AddTo(ir *Initramfs) {
	root := ms.ModulesRoot()
	for _, m := range ms.Modules {
		ir.Add(File{Path: root + "/" + m.Path, Source: filepath.Join(ms.Dir, filepath.FromSlash(m.Path))})
	}
	ir.Add(File{Path: root + "/modules.dep", Data: ms.ModulesDep()})
	ir.Add(File{Path: LoadOrderPath, Data: ms.LoadOrder()})
}
