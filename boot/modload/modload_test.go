package modload

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vtpmboot/vtpmboot/images"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
)

func realModules(t *testing.T) string {
	dir := filepath.Join(testenv.RepoRoot(), ".cache", "kernel", "modules")
	testenv.NeedFile(t, filepath.Join(dir, "modules.dep"), "run scripts/fetch-kernel.sh")
	return dir
}

// The order is checked against modinfo's own reading of each module's
// "depends" field (kmod), not against modules.dep.
func TestOrderAgainstModinfo(t *testing.T) {
	testenv.NeedCommands(t, "modinfo")
	dir := realModules(t)
	b, err := os.ReadFile(filepath.Join(dir, "modules.dep"))
	if err != nil {
		t.Fatal(err)
	}
	mods, err := ParseDep("modules.dep", b)
	if err != nil {
		t.Fatal(err)
	}
	order, err := Order("modules.dep", mods, []string{"ext4", "xfs", "xen-blkfront", "xen-tpmfront", "virtio_blk", "vfat"})
	if err != nil {
		t.Fatal(err)
	}
	pos := map[string]int{}
	for i, m := range order {
		pos[m.Name] = i
	}
	for _, want := range []string{"ext4", "jbd2", "mbcache", "xfs", "xen_blkfront", "virtio_blk", "fat", "vfat"} {
		if _, ok := pos[want]; !ok {
			t.Errorf("%s missing from %v", want, order)
		}
	}
	for i, m := range order {
		out, err := exec.Command("modinfo", "-F", "depends", filepath.Join(dir, m.Path)).Output()
		if err != nil {
			t.Fatalf("modinfo %s: %v", m.Path, err)
		}
		for _, d := range strings.Split(strings.TrimSpace(string(out)), ",") {
			if d == "" {
				continue
			}
			p, ok := pos[ModName(d)]
			if !ok || p >= i {
				t.Errorf("%s (at %d) depends on %s (at %d, present %v)", m.Name, i, d, p, ok)
			}
		}
	}
}

func writeDep(t *testing.T, dep string) string {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(dep), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// A fake finit_module: loading modules into the test machine's kernel is
// not an option, so this checks the bookkeeping (order, EEXIST, failures
// propagating to dependents). The real loading is proven by the QEMU boot.
func TestLoadAllBookkeeping(t *testing.T) {
	dir := writeDep(t, `kernel/lib/crc32c.ko:
kernel/fs/jbd2/jbd2.ko: kernel/lib/crc16.ko
kernel/lib/crc16.ko:
kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko kernel/lib/crc16.ko
kernel/drivers/xen/xen-blkfront.ko: kernel/drivers/xen/xenbus.ko
kernel/drivers/xen/xenbus.ko:
kernel/drivers/block/virtio_blk.ko:
`)
	var calls []string
	old := finit
	defer func() { finit = old }()
	finit = func(file string) (bool, error) {
		calls = append(calls, ModName(file))
		switch ModName(file) {
		case "crc16":
			return true, nil
		case "xenbus":
			return false, errors.New("finit_module: no such device")
		}
		return false, nil
	}
	got, err := LoadAll(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range got {
		names = append(names, l.Name)
	}
	if want := "crc32c crc16 jbd2 ext4 xenbus xen_blkfront virtio_blk"; strings.Join(names, " ") != want {
		t.Errorf("order %q, want %q", strings.Join(names, " "), want)
	}
	if want := "crc32c crc16 jbd2 ext4 xenbus virtio_blk"; strings.Join(calls, " ") != want {
		t.Errorf("finit calls %q, want %q (xen_blkfront skipped: its dependency failed)", strings.Join(calls, " "), want)
	}
	for _, l := range got {
		switch l.Name {
		case "crc16":
			if !l.Already || l.Err != nil {
				t.Errorf("crc16: %+v", l)
			}
		case "xenbus", "xen_blkfront":
			if l.Err == nil {
				t.Errorf("%s: no error", l.Name)
			}
		default:
			if l.Err != nil || l.Already {
				t.Errorf("%s: %+v", l.Name, l)
			}
		}
	}
}

func TestBadModulesDep(t *testing.T) {
	for dep, want := range map[string]string{
		"no colon here\n":                  "modules.dep:1",
		"a.ko: b.ko\nb.ko: a.ko\n":         "cycle",
		"a.ko: missing.ko\n":               "not listed",
		"../../etc/x.ko:\n":                "bad module path",
		"a.ko:\na.ko:\n":                   "listed twice",
		"/abs.ko:\n":                       "bad module path",
		"a.ko: ../b.ko\n":                  "bad dependency",
		"x.ko:\n" + strings.Repeat("y", 3): "modules.dep:2",
	} {
		dir := writeDep(t, dep)
		_, err := LoadAll(dir, nil)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "modules.dep") {
			t.Errorf("modules.dep %q: err = %v, want %q", dep, err, want)
		}
	}
	if _, err := LoadAll(t.TempDir(), nil); err == nil || !strings.Contains(err.Error(), "modules.dep") {
		t.Errorf("missing modules.dep: %v", err)
	}
	dir := writeDep(t, "a.ko:\n")
	if _, err := LoadAll(dir, []string{"nope"}); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("unknown name: %v", err)
	}
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
	s, err := Open(dir)
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
			p, ok := pos[ModName(d)]
			if !ok || p >= i {
				t.Errorf("%s (at %d) depends on %s (at %d, present %v) in %q", m.Name, i, d, p, ok, names(order))
			}
		}
	}
}
