package modload_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vtpmboot/vtpmboot/boot/modload"
	"github.com/vtpmboot/vtpmboot/images"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
)

// An external test package: images builds on modload, and this checks the
// two together on the modules the stub image really packs.

type Module = modload.Module

func realModules(t *testing.T) string {
	dir := filepath.Join(testenv.RepoRoot(), ".cache", "kernel", "modules")
	testenv.NeedFile(t, filepath.Join(dir, "modules.dep"), "run scripts/fetch-kernel.sh")
	return dir
}

// stubImage lays out the modules the stub image packs (images.Stub with
// the default module list) the way the initramfs has them: the restricted
// modules.dep images writes, and the real module files.
func stubImage(t *testing.T) string {
	t.Helper()
	ms, err := images.ResolveModules(realModules(t), images.DefaultModules)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, m := range ms.Modules {
		dst := filepath.Join(dir, filepath.FromSlash(m.Path))
		os.MkdirAll(filepath.Dir(dst), 0o755)
		if err := os.Symlink(filepath.Join(ms.Dir, filepath.FromSlash(m.Path)), dst); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "modules.dep"), ms.ModulesDep(), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func names(mods []Module) string {
	var n []string
	for _, m := range mods {
		n = append(n, m.Name)
	}
	return strings.Join(n, " ")
}

// The stub image's modules are checked on the real Debian modules as the
// image packs them: exactly the block and TPM front ends and what they
// need, no filesystem driver (guest filesystems are read in userspace),
// in an order checked against kmod's own reading of every module
// (modinfo's depends and softdep fields), not against our parser.
func TestStubImageModules(t *testing.T) {
	testenv.NeedCommands(t, "modinfo")
	dir := stubImage(t)
	s, err := modload.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Warnings) > 0 {
		t.Errorf("warnings: %q", s.Warnings)
	}
	all := make([]string, len(s.Modules))
	for i, m := range s.Modules {
		all[i] = m.Name
		if strings.HasPrefix(m.Path, "kernel/fs/") {
			t.Errorf("the stub image packs filesystem module %s", m.Path)
		}
	}
	order, err := s.Order(all)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"xen_blkfront": true, "xen_tpmfront": true, "virtio_pci_legacy_dev": true, "virtio_pci_modern_dev": true,
		"virtio_ring": true, "virtio": true, "virtio_pci": true, "virtio_blk": true}
	got := map[string]bool{}
	for _, m := range order {
		got[m.Name] = true
	}
	if len(got) != len(want) {
		t.Errorf("image modules %q, want exactly %v", names(order), want)
	}
	for n := range want {
		if !got[n] {
			t.Errorf("image modules %q lack %s", names(order), n)
		}
	}
	checkOrder(t, dir, order)
}

// checkOrder asserts that every module comes after what modinfo (kmod)
// says it depends on, hard dependencies and soft "pre:" ones alike.
func checkOrder(t *testing.T, dir string, order []Module) {
	t.Helper()
	pos := map[string]int{}
	aliasOf := map[string]string{}
	for i, m := range order {
		pos[m.Name] = i
		out, err := exec.Command("modinfo", "-F", "alias", filepath.Join(dir, m.Path)).Output()
		if err != nil {
			t.Fatalf("modinfo %s: %v", m.Path, err)
		}
		for _, a := range strings.Fields(string(out)) {
			aliasOf[a] = m.Name
		}
	}
	for i, m := range order {
		var deps []string
		for _, field := range []string{"depends", "softdep"} {
			out, err := exec.Command("modinfo", "-F", field, filepath.Join(dir, m.Path)).Output()
			if err != nil {
				t.Fatalf("modinfo %s: %v", m.Path, err)
			}
			v := strings.TrimSpace(string(out))
			if field == "depends" {
				deps = append(deps, strings.FieldsFunc(v, func(r rune) bool { return r == ',' })...)
				continue
			}
			for _, w := range strings.Fields(strings.TrimPrefix(v, "pre:")) {
				if a, ok := aliasOf[w]; ok {
					w = a
				}
				deps = append(deps, w)
			}
		}
		for _, d := range deps {
			p, ok := pos[modload.ModName(d)]
			if !ok || p >= i {
				t.Errorf("%s (at %d) depends on %s (at %d, present %v) in %q", m.Name, i, d, p, ok, names(order))
			}
		}
	}
}
