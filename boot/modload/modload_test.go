package modload

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vtpmboot/vtpmboot/boot/mount"
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

// The split is checked on the real Debian modules as the stub image packs
// them. The expected stage contents are spelled out here; the order within
// each stage is checked against kmod's own reading of every module
// (modinfo's depends and softdep fields), not against our parser.
func TestStagesOnStubImage(t *testing.T) {
	testenv.NeedCommands(t, "modinfo")
	dir := stubImage(t)
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Warnings) > 0 {
		t.Errorf("warnings: %q", s.Warnings)
	}
	dev, err := s.DeviceModules(mount.AllModules())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"xen_blkfront": true, "xen_tpmfront": true, "virtio_pci_legacy_dev": true, "virtio_pci_modern_dev": true,
		"virtio_ring": true, "virtio": true, "virtio_pci": true, "virtio_blk": true}
	got := map[string]bool{}
	for _, m := range dev {
		got[m.Name] = true
	}
	if len(got) != len(want) {
		t.Errorf("device stage %q, want exactly %v", names(dev), want)
	}
	for n := range want {
		if !got[n] {
			t.Errorf("device stage %q lacks %s", names(dev), n)
		}
	}
	checkOrder(t, dir, dev)

	for typ, want := range map[string][]string{
		"ext4":    {"ext4", "jbd2", "mbcache", "crc16", "crc32c_generic"},
		"ext2":    {"ext4", "jbd2", "mbcache", "crc16", "crc32c_generic"},
		"xfs":     {"xfs", "libcrc32c", "crc32c_generic"},
		"vfat":    {"vfat", "fat", "nls_cp437", "nls_ascii"},
		"iso9660": {"isofs", "cdrom"},
	} {
		order, err := s.Order(mount.FSInfo{Type: typ}.Modules())
		if err != nil {
			t.Errorf("%s: %v", typ, err)
			continue
		}
		if len(order) != len(want) {
			t.Errorf("%s: stage 2 loads %q, want %q", typ, names(order), want)
		}
		for _, n := range want {
			if !strings.Contains(" "+names(order)+" ", " "+n+" ") {
				t.Errorf("%s: stage 2 %q lacks %s", typ, names(order), n)
			}
			if got[n] {
				t.Errorf("%s: %s is in the device stage too", typ, n)
			}
		}
		checkOrder(t, dir, order)
	}
	// btrfs is not packed (images.DefaultModules says why): the stub must
	// say so, not fail.
	if _, err := s.Order(mount.FSInfo{Type: "btrfs"}.Modules()); err == nil {
		t.Error("btrfs resolved in an image that does not pack it")
	}
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

// Two stages over one Set, with a fake finit_module (see
// TestLoadAllBookkeeping for why): the second stage does not reload what
// the first loaded, inherits its failures, and reports a filesystem
// driver the image lacks as one failed module rather than failing.
func TestTwoStagesBookkeeping(t *testing.T) {
	dir := writeDep(t, `kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio.ko:
kernel/lib/libcrc32c.ko:
kernel/drivers/md/dm-mod.ko: kernel/lib/libcrc32c.ko
kernel/drivers/block/xen-blkfront.ko:
kernel/drivers/cdrom/cdrom.ko:
kernel/fs/isofs/isofs.ko: kernel/drivers/cdrom/cdrom.ko
kernel/fs/xfs/xfs.ko: kernel/lib/libcrc32c.ko
kernel/fs/nls/nls_utf8.ko:
`)
	var calls []string
	old := finit
	defer func() { finit = old }()
	finit = func(file string) (bool, error) {
		calls = append(calls, ModName(file))
		if ModName(file) == "cdrom" {
			return false, errors.New("finit_module: exec format error")
		}
		return false, nil
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Warnings) != len(s.Modules) {
		t.Errorf("%d warnings for %d empty module files: %q", len(s.Warnings), len(s.Modules), s.Warnings)
	}
	dev, err := s.DeviceModules([]string{"xfs", "isofs", "ext4"})
	if err != nil {
		t.Fatal(err)
	}
	// libcrc32c stays: dm-mod, not a filesystem, needs it too. nls_utf8
	// is under kernel/fs/ and nothing asks for it, so it never loads.
	if got, want := names(dev), "virtio virtio_blk libcrc32c dm_mod xen_blkfront"; got != want {
		t.Errorf("device stage %q, want %q", got, want)
	}
	s.Load(dev)
	got := s.LoadNames([]string{"xfs", "isofs", "btrfs"})
	if want := "virtio virtio_blk libcrc32c dm_mod xen_blkfront xfs cdrom"; strings.Join(calls, " ") != want {
		t.Errorf("finit calls %q, want %q", strings.Join(calls, " "), want)
	}
	byName := map[string]Loaded{}
	for _, l := range got {
		byName[l.Name] = l
	}
	if len(got) != 4 || byName["xfs"].Err != nil {
		t.Errorf("stage 2: %+v", got)
	}
	if err := byName["isofs"].Err; err == nil || !strings.Contains(err.Error(), "cdrom") {
		t.Errorf("isofs: %v, want its failed dependency named", err)
	}
	if err := byName["btrfs"].Err; err == nil || !strings.Contains(err.Error(), "modules.dep") {
		t.Errorf("btrfs: %v, want not in modules.dep", err)
	}
}

// The filesystem table in boot/mount is checked against the kernel's own
// naming: mount(2) asks for a missing filesystem with request_module
// ("fs-<type>"), so the driver for each type must carry that alias.
func TestFSTableMatchesKernelAliases(t *testing.T) {
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
	path := map[string]string{}
	for _, m := range mods {
		path[m.Name] = m.Path
	}
	for _, typ := range []string{"ext2", "ext3", "ext4", "xfs", "btrfs", "vfat", "iso9660"} {
		info := mount.FSInfo{Type: typ}
		fstype, _ := info.MountType()
		want := info.Modules()
		if len(want) == 0 {
			t.Errorf("%s: no modules", typ)
			continue
		}
		for _, n := range want {
			if path[n] == "" {
				t.Errorf("%s: module %s not in the Debian kernel's modules.dep", typ, n)
			}
		}
		out, err := exec.Command("modinfo", "-F", "alias", filepath.Join(dir, path[want[0]])).Output()
		if err != nil {
			t.Fatalf("modinfo %s: %v", want[0], err)
		}
		if !strings.Contains("\n"+string(out), "\nfs-"+fstype+"\n") {
			t.Errorf("%s: %s lacks alias fs-%s (has %q)", typ, want[0], fstype, out)
		}
	}
}
