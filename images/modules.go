package images

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/vtpmboot/vtpmboot/boot/modload"
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

// Module is one kernel module to pack: modload's, so the image builder
// and the stub read modules.dep with the same parser and order modules by
// the same rules.
type Module = modload.Module

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
	// Builtin lists requested names that the kernel has built in (from
	// modules.builtin), so nothing is packed for them.
	Builtin []string
}

// ResolveModules finds names (dashes or underscores) in the modules
// directory dir and returns them with their dependencies and soft
// pre-dependencies in load order. Built-in modules are listed in Builtin
// and not packed; a name that is neither a module nor built in is an error.
//
// modules.dep is read and ordered by boot/modload, as the stub reads the
// image's copy. A host directory also has depmod's modules.softdep and
// modules.alias, which stand in for each module's .modinfo (reading four
// thousand ELF files would be slow), and modules.builtin(.modinfo): an
// alias the kernel provides built in needs no module, so it is not
// offered by one.
func ResolveModules(dir string, names []string) (*ModuleSet, error) {
	depFile := filepath.Join(dir, "modules.dep")
	b, err := os.ReadFile(depFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("modules directory %s: %w", dir, ErrNoModulesDep)
	}
	if err != nil {
		return nil, fmt.Errorf("modules directory %s: %w", dir, err)
	}
	mods, err := modload.ParseDep(depFile, b)
	if err != nil {
		return nil, err
	}
	builtin := map[string]bool{}
	builtinAlias := map[string]bool{}
	aliases := map[string][]string{} // module name → aliases
	softPre := map[string][]string{} // module name → pre names/aliases
	// The optional files only refine the result; a kernel without them
	// (no builtins, no softdeps) is still usable.
	optional := func(name string, fn func(f []string)) error {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", filepath.Join(dir, name), err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
				fn(strings.Fields(line))
			}
		}
		return nil
	}
	if err := optional("modules.builtin", func(f []string) { builtin[modload.ModName(f[0])] = true }); err != nil {
		return nil, err
	}
	if b, err := os.ReadFile(filepath.Join(dir, "modules.builtin.modinfo")); err == nil {
		for _, rec := range bytes.Split(b, []byte{0}) {
			mod, kv, ok := strings.Cut(string(rec), ".")
			if a, isAlias := strings.CutPrefix(kv, "alias="); ok && isAlias {
				builtinAlias[a] = true
				builtin[modload.ModName(mod)] = true
			}
		}
	}
	if err := optional("modules.alias", func(f []string) {
		if len(f) == 3 && f[0] == "alias" && !builtinAlias[f[1]] {
			aliases[modload.ModName(f[2])] = append(aliases[modload.ModName(f[2])], f[1])
		}
	}); err != nil {
		return nil, err
	}
	if err := optional("modules.softdep", func(f []string) {
		if len(f) < 3 || f[0] != "softdep" {
			return
		}
		name := modload.ModName(f[1])
		for _, w := range modload.SoftPre(f[2:]) {
			if !builtin[modload.ModName(w)] && !builtinAlias[w] {
				softPre[name] = append(softPre[name], w)
			}
		}
	}); err != nil {
		return nil, err
	}
	for i := range mods {
		mods[i].Aliases = aliases[mods[i].Name]
		mods[i].SoftPre = softPre[mods[i].Name]
	}
	set := modload.NewSet(dir, depFile, mods)
	ms := &ModuleSet{Dir: dir}
	var want []string
	for _, n := range names {
		if mn := modload.ModName(n); builtin[mn] {
			ms.Builtin = append(ms.Builtin, mn)
			continue
		}
		if _, ok := set.Lookup(n); !ok {
			return nil, fmt.Errorf("module %s: not in %s and not built in", n, depFile)
		}
		want = append(want, n)
	}
	sort.Strings(ms.Builtin)
	if len(want) > 0 {
		if ms.Modules, err = set.Order(want); err != nil {
			return nil, err
		}
	}
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
