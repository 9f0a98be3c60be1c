package modload

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

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
