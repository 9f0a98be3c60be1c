package images

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vtpmboot/vtpmboot/boot/modload"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
)

func modulesDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(testenv.RepoRoot(), ".cache", "kernel", "modules")
	testenv.NeedFile(t, filepath.Join(dir, "modules.dep"), "run scripts/fetch-kernel.sh")
	return dir
}

// parseDep is an independent reading of modules.dep for cross-checks.
func parseDep(t *testing.T, dir string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "modules.dep"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[k] = strings.Fields(v)
		}
	}
	return out
}

func TestResolveModulesDependencyOrder(t *testing.T) {
	dir := modulesDir(t)
	ms, err := ResolveModules(dir, DefaultModules)
	if err != nil {
		t.Fatal(err)
	}
	release, err := os.ReadFile(filepath.Join(dir, "..", "release"))
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.TrimSpace(string(release)); ms.Release != want {
		t.Errorf("Release = %q, want %q", ms.Release, want)
	}
	dep := parseDep(t, dir)
	pos := map[string]int{}
	for i, m := range ms.Modules {
		if _, dup := pos[m.Path]; dup {
			t.Errorf("%s packed twice", m.Path)
		}
		pos[m.Path] = i
	}
	for i, m := range ms.Modules {
		deps, ok := dep[m.Path]
		if !ok {
			t.Errorf("%s is not in modules.dep", m.Path)
		}
		for _, d := range deps {
			if j, ok := pos[d]; !ok || j >= i {
				t.Errorf("%s (position %d) needs %s, which is at position %d (absent: %v)", m.Path, i, d, j, !ok)
			}
		}
	}
	for _, n := range DefaultModules {
		found := false
		for _, m := range ms.Modules {
			found = found || m.Name == modload.ModName(n)
		}
		if !found {
			t.Errorf("requested module %s not in the set", n)
		}
	}
	t.Logf("%d modules for %s: %s; built in: %v", len(ms.Modules), ms.Release, ms.LoadOrder(), ms.Builtin)

	// kmod's own resolver, softdeps included, is the reference: every
	// module modprobe would insert for n must be packed no later than n.
	// (Unrelated modules may come in any order, so only that is compared.)
	testenv.NeedCommands(t, "modprobe")
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "lib", "modules"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(dir, filepath.Join(root, "lib", "modules", ms.Release)); err != nil {
		t.Fatal(err)
	}
	for _, n := range DefaultModules {
		out, err := exec.Command("modprobe", "-d", root, "-S", ms.Release, "--show-depends", n).CombinedOutput()
		if err != nil {
			t.Fatalf("modprobe --show-depends %s: %v\n%s", n, err, out)
		}
		var self int
		for _, m := range ms.Modules {
			if m.Name == modload.ModName(n) {
				self = pos[m.Path]
			}
		}
		inserts := 0
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) < 2 || f[0] != "insmod" {
				continue
			}
			inserts++
			rel, err := filepath.Rel(filepath.Join(root, "lib", "modules", ms.Release), f[1])
			if err != nil {
				t.Fatal(err)
			}
			j, ok := pos[rel]
			switch {
			case !ok && strings.Contains(rel, "crc32c"):
				// modprobe may pick another provider of the crc32c soft
				// dependency (crc32c_intel); one provider is enough.
			case !ok:
				t.Errorf("modprobe %s inserts %s, which is not packed", n, rel)
			case j > self:
				t.Errorf("modprobe %s inserts %s before it, we load it after", n, rel)
			}
		}
		if inserts == 0 {
			t.Errorf("modprobe --show-depends %s inserted nothing:\n%s", n, out)
		}
	}
	// The stub packs no filesystem, but the resolver must still honour
	// soft pre-dependencies for a --module-list that asks for one: ext4's
	// crc32c must come before it.
	ms, err = ResolveModules(dir, []string{"ext4"})
	if err != nil {
		t.Fatal(err)
	}
	idx := func(name string) int {
		for i, m := range ms.Modules {
			if m.Name == name {
				return i
			}
		}
		return -1
	}
	if c, e := idx("crc32c_generic"), idx("ext4"); c < 0 || c > e {
		t.Errorf("crc32c_generic at %d, ext4 at %d: softdep not honoured", c, e)
	}
}

func TestResolveModulesErrors(t *testing.T) {
	dir := modulesDir(t)
	if _, err := ResolveModules(dir, []string{"no_such_module"}); err == nil || !strings.Contains(err.Error(), "no_such_module") {
		t.Errorf("missing module: err = %v, want one naming it", err)
	}
	empty := t.TempDir()
	if _, err := ResolveModules(empty, DefaultModules); err == nil || !strings.Contains(err.Error(), "modules.dep") {
		t.Errorf("no modules.dep: err = %v", err)
	}
	ms, err := ResolveModules(dir, []string{"tpm_tis"})
	if err != nil || len(ms.Modules) != 0 || len(ms.Builtin) != 1 {
		t.Errorf("built-in tpm_tis: %+v, %v; want skipped as built in", ms, err)
	}
}

func TestInitramfsLayout(t *testing.T) {
	testenv.NeedCommands(t, "cpio")
	src := filepath.Join(t.TempDir(), "src")
	if err := os.WriteFile(src, []byte("from disk"), 0o600); err != nil {
		t.Fatal(err)
	}
	ir := &Initramfs{}
	ir.AddData("/init", []byte("#!/bin/sh\n"), 0o755)
	ir.Add(File{Path: "etc/deep/dir/file", Source: src})
	ir.Add(File{Path: "bin/sh", Symlink: "/init"})
	ir.Add(File{Path: "empty", Dir: true})
	var buf bytes.Buffer
	if err := ir.WriteCPIO(&buf); err != nil {
		t.Fatal(err)
	}
	// GNU cpio is the independent reader: names, order, owners, mtimes.
	cmd := exec.Command("cpio", "-itv", "--quiet")
	cmd.Stdin = bytes.NewReader(buf.Bytes())
	cmd.Env = append(os.Environ(), "TZ=UTC")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -t: %v\n%s", err, out)
	}
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if f[2] != "root" || f[3] != "root" {
			t.Errorf("owner not root: %s", line)
		}
		if !strings.Contains(line, "1970") {
			t.Errorf("mtime not 0: %s", line)
		}
		names = append(names, f[8])
		if f[8] == "init" && f[0] != "-rwxr-xr-x" {
			t.Errorf("init mode: %s", line)
		}
		if f[8] == "bin/sh" && (f[0][0] != 'l' || f[len(f)-1] != "/init") {
			t.Errorf("symlink: %s", line)
		}
	}
	want := "bin bin/sh empty etc etc/deep etc/deep/dir etc/deep/dir/file init"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("entries:\n got %s\nwant %s", got, want)
	}
	cmd = exec.Command("cpio", "-i", "--quiet", "--to-stdout", "etc/deep/dir/file")
	cmd.Stdin = bytes.NewReader(buf.Bytes())
	if out, err := cmd.Output(); err != nil || string(out) != "from disk" {
		t.Errorf("extracted %q, %v", out, err)
	}

	bad := &Initramfs{Files: []File{{Path: "a", Data: []byte("x")}, {Path: "a/b", Data: []byte("y")}}}
	if err := bad.WriteCPIO(io.Discard); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("file used as directory: err = %v", err)
	}
	missing := &Initramfs{Files: []File{{Path: "x", Source: "/nonexistent/file"}}}
	if err := missing.WriteCPIO(io.Discard); err == nil || !strings.Contains(err.Error(), "/nonexistent/file") {
		t.Errorf("missing source: err = %v", err)
	}
}

const targetInit = "./internal/target/targetinit"

// stubInit is the real stub when it exists, so the size check measures what
// ships; until then targetinit stands in.
func stubInit() string {
	if _, err := os.Stat(filepath.Join(testenv.RepoRoot(), "cmd", "vtpmboot", "main.go")); err == nil {
		return DefaultInitPackage
	}
	return targetInit
}

func buildGz(t *testing.T, o StubOptions) ([]byte, *ModuleSet) {
	t.Helper()
	ir, ms, err := Stub(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out", "stub.cpio.gz")
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := ir.WriteFile(out); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b, ms
}

// copyTree copies the files under src (relative to the repo root) to dst.
func copyTree(t *testing.T, dst string, rels ...string) {
	t.Helper()
	root := testenv.RepoRoot()
	for _, rel := range rels {
		err := filepath.Walk(filepath.Join(root, rel), func(p string, fi os.FileInfo, err error) error {
			if err != nil || fi.IsDir() {
				return err
			}
			r, _ := filepath.Rel(root, p)
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(filepath.Join(dst, filepath.Dir(r)), 0o755); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dst, r), b, 0o644)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestStubReproducible(t *testing.T) {
	testenv.NeedCommands(t, "go")
	dir := modulesDir(t)
	o := StubOptions{Init: GoBuild{Package: targetInit, Dir: testenv.RepoRoot()}, ModulesDir: dir}
	a, _ := buildGz(t, o)
	// The second build runs from a copy of the sources at another path, the
	// usual way reproducibility breaks (paths baked into the binary). A
	// cold GOCACHE would also be a fair test, but rebuilding the standard
	// library costs minutes.
	copyDir := filepath.Join(t.TempDir(), "elsewhere", "src")
	copyTree(t, copyDir, "go.mod", "go.sum", "internal/target", "pcrbank", "boot/entry", "boot/measure", "boot/eventlog", "boot/acpilog", "boot/modload")
	o.Init = GoBuild{Package: targetInit, Dir: copyDir}
	b, _ := buildGz(t, o)
	ha, hb := sha256.Sum256(a), sha256.Sum256(b)
	if ha != hb {
		t.Fatalf("two builds differ: %x (%d bytes) vs %x (%d bytes)", ha, len(a), hb, len(b))
	}
}

func TestStubContentsAndSize(t *testing.T) {
	testenv.NeedCommands(t, "go", "cpio")
	dir := modulesDir(t)
	pkg := stubInit()
	a, ms := buildGz(t, StubOptions{Init: GoBuild{Package: pkg, Dir: testenv.RepoRoot()}, ModulesDir: dir})
	ha := sha256.Sum256(a)
	t.Logf("stub initramfs (init %s, %d modules): %d bytes compressed, sha256 %s", pkg, len(ms.Modules), len(a), hex.EncodeToString(ha[:]))
	const limit = 4 << 20
	if len(a) >= limit {
		t.Errorf("stub initramfs is %d bytes, over the %d-byte (4 MiB) budget", len(a), limit)
	}

	// gzip header: no name, mtime 0, fixed OS byte.
	zr, err := gzip.NewReader(bytes.NewReader(a))
	if err != nil {
		t.Fatal(err)
	}
	if zr.Name != "" || !zr.ModTime.IsZero() || zr.OS != gzipOS {
		t.Errorf("gzip header %+v", zr.Header)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("cpio", "-it", "--quiet")
	cmd.Stdin = bytes.NewReader(raw)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio -t: %v", err)
	}
	list := string(out)
	for _, want := range []string{"init\n", ms.ModulesRoot() + "/modules.dep\n", LoadOrderPath + "\n", ms.ModulesRoot() + "/kernel/drivers/block/xen-blkfront.ko\n"} {
		if !strings.Contains(list, want) {
			t.Errorf("initramfs lacks %s", want)
		}
	}
	// Guest filesystems are read in userspace: no kernel filesystem
	// driver may be in the image.
	if strings.Contains(list, "/kernel/fs/") {
		t.Errorf("initramfs packs filesystem modules:\n%s", list)
	}
}

// TestPrebuiltInit: a static Go binary is accepted byte for byte; the same
// file marked for another machine, a dynamically linked program and a
// non-ELF file are refused with ErrNotStaticInit, before any initramfs.
func TestPrebuiltInit(t *testing.T) {
	testenv.NeedCommands(t, "go")
	bin, err := GoBuild{Package: targetInit, Dir: testenv.RepoRoot()}.Binary(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	got, err := Prebuilt{Path: write("init", bin)}.Binary(context.Background())
	if err != nil || !bytes.Equal(got, bin) {
		t.Fatalf("static init: %v (same bytes: %v)", err, bytes.Equal(got, bin))
	}
	arm := append([]byte(nil), bin...)
	arm[18], arm[19] = 183, 0 // e_machine = EM_AARCH64 (little-endian)
	dyn, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"arm64": arm, "dynamic": dyn, "text": []byte("#!/bin/sh\nexec /sbin/init\n")} {
		if _, err := (Prebuilt{Path: write(name, b)}).Binary(context.Background()); !errors.Is(err, ErrNotStaticInit) || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v, want ErrNotStaticInit naming the file", name, err)
		}
	}
	if _, err := (Prebuilt{Path: dir}).Binary(context.Background()); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
}
