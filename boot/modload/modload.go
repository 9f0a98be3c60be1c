// Package modload loads the stub image's kernel modules in dependency order
// from a modules.dep, with finit_module: there is no modprobe (no shell, no
// kmod) in the stub.
package modload

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// Module is one line of modules.dep.
type Module struct {
	// Name is the canonical module name ("xen_blkfront").
	Name string
	// Path is relative to the modules directory, as modules.dep writes it.
	Path string
	Deps []string // paths
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

// Order returns the modules named (nil: all of them) with their
// dependencies, every module after everything it depends on. Ties keep
// the file's order, which carries soft dependencies (crc32c before ext4)
// that modules.dep itself cannot express.
func Order(file string, mods []Module, names []string) ([]Module, error) {
	byPath := make(map[string]Module, len(mods))
	byName := make(map[string]Module, len(mods))
	for _, m := range mods {
		byPath[m.Path] = m
		byName[m.Name] = m
	}
	var roots []Module
	if names == nil {
		roots = mods
	} else {
		for _, n := range names {
			m, ok := byName[ModName(n)]
			if !ok {
				return nil, fmt.Errorf("%s: no module %q", file, n)
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
			return fmt.Errorf("%s: dependency cycle: %s", file, strings.Join(append(chain, m.Path), " -> "))
		}
		state[m.Path] = visiting
		for _, d := range m.Deps {
			dm, ok := byPath[d]
			if !ok {
				return fmt.Errorf("%s: %s depends on %s, which is not listed", file, m.Path, d)
			}
			if err := visit(dm, append(chain, m.Path)); err != nil {
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

// LoadAll loads the modules named (nil: every module in dir/modules.dep)
// and their dependencies, dependencies first. It returns an error only
// when modules.dep is missing or malformed; a module that fails to load is
// reported in its Loaded.Err and the rest are still tried.
func LoadAll(dir string, names []string) ([]Loaded, error) {
	file := filepath.Join(dir, "modules.dep")
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	mods, err := ParseDep(file, b)
	if err != nil {
		return nil, err
	}
	order, err := Order(file, mods, names)
	if err != nil {
		return nil, err
	}
	failed := map[string]string{}
	out := make([]Loaded, 0, len(order))
	for _, m := range order {
		l := Loaded{Module: m}
		for _, d := range m.Deps {
			if why, ok := failed[d]; ok {
				l.Err = fmt.Errorf("dependency %s did not load: %s", ModName(d), why)
				break
			}
		}
		if l.Err == nil {
			start := time.Now()
			l.Already, l.Err = finit(filepath.Join(dir, filepath.FromSlash(m.Path)))
			l.Duration = time.Since(start)
		}
		if l.Err != nil {
			failed[m.Path] = l.Err.Error()
		}
		out = append(out, l)
	}
	return out, nil
}
