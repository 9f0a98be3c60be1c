package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vtpmboot/vtpmboot/host/xl"
	"github.com/vtpmboot/vtpmboot/images"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
)

func runMkstub(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestErrors(t *testing.T) {
	root := testenv.RepoRoot()
	kernel := filepath.Join(root, ".cache", "kernel", "vmlinuz")
	mods := filepath.Join(root, ".cache", "kernel", "modules")
	testenv.NeedFile(t, kernel, "run scripts/fetch-kernel.sh")
	out := t.TempDir()
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--kernel", kernel, "-o", out, "--no-modules", "--bogus"}, exitUsage, "unknown flag --bogus"},
		{[]string{"--kernel", kernel, "-o", out, "--no-modules", "--init", "/bin/true"}, exitUsage, "dynamically linked"},
		{[]string{"--kernel", kernel, "-o", out, "--no-modules", "--init", kernel}, exitUsage, "not a static x86-64 Linux executable"},
		{[]string{"--kernel", kernel, "-o", out, "--no-modules", "--init", "/nonexistent/init"}, exitUsage, "/nonexistent/init"},
		{[]string{"--kernel", kernel, "-o", out, "--no-modules", "--init", "/bin/true", "--src", root}, exitUsage, "not both"},
		{[]string{"-o", out, "--modules", mods}, exitUsage, "--kernel"},
		{[]string{"--kernel", "/nonexistent/vmlinuz", "-o", out, "--modules", mods}, exitUsage, "/nonexistent/vmlinuz"},
		{[]string{"--kernel", kernel, "-o", out, "--modules", t.TempDir()}, exitUsage, "modules.dep"},
		{[]string{"--kernel", kernel, "-o", out, "--modules", mods, "--module-list", "ext4,no_such_mod", "--src", root}, exitBuild, "no_such_mod"},
		{[]string{"--kernel", kernel, "-o", out, "--modules", mods, "--add", "nocolon"}, exitUsage, "HOSTPATH:ARCHIVEPATH"},
	} {
		code, _, stderr := runMkstub(t, c.args...)
		if code != c.code || !strings.Contains(stderr, c.want) {
			t.Errorf("mkstub %q: exit %d, stderr %q; want exit %d mentioning %q", c.args, code, stderr, c.code, c.want)
		}
	}
}

func TestBuild(t *testing.T) {
	testenv.NeedCommands(t, "go")
	root := testenv.RepoRoot()
	kernel := filepath.Join(root, ".cache", "kernel", "vmlinuz")
	mods := filepath.Join(root, ".cache", "kernel", "modules")
	testenv.NeedFile(t, kernel, "run scripts/fetch-kernel.sh")
	extra := filepath.Join(t.TempDir(), "extra")
	if err := os.WriteFile(extra, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "stub")
	code, stdout, stderr := runMkstub(t, "--kernel", kernel, "--modules", mods, "-o", out,
		"--src", root, "--init-package", "./internal/target/targetinit", "--add", extra+":etc/extra",
		"--vtpm-backend", "web1-vtpm")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(out, "pvh.cfg")); err == nil {
		t.Error("mkstub wrote a PVH example, which the stub refuses")
	}
	for _, name := range []string{"vmlinuz", "vtpmboot.cpio.gz", "hvm.cfg"} {
		p := filepath.Join(out, name)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		if !strings.Contains(stdout, hex.EncodeToString(sum[:])+"  "+p) {
			t.Errorf("output does not give the sha256 of %s:\n%s", p, stdout)
		}
	}
	k1, _ := os.ReadFile(kernel)
	k2, _ := os.ReadFile(filepath.Join(out, "vmlinuz"))
	if !bytes.Equal(k1, k2) {
		t.Error("vmlinuz is not a copy of --kernel")
	}
	// The example configs must parse the way xl would read them.
	for kind, console := range map[string]string{"hvm": "console=ttyS0"} {
		c, err := xl.ParseFile(filepath.Join(out, kind+".cfg"))
		if err != nil {
			t.Fatalf("%s.cfg: %v", kind, err)
		}
		if ty, err := c.Type(); err != nil || ty != kind {
			t.Errorf("%s.cfg: type %q, %v", kind, ty, err)
		}
		if k, err := c.Kernel(); err != nil || k != filepath.Join(out, "vmlinuz") {
			t.Errorf("%s.cfg: kernel %q, %v", kind, k, err)
		}
		if r, err := c.Ramdisk(); err != nil || r != filepath.Join(out, "vtpmboot.cpio.gz") {
			t.Errorf("%s.cfg: ramdisk %q, %v", kind, r, err)
		}
		if e, err := c.Extra(); err != nil || !strings.Contains(e, console) || !strings.Contains(e, "vtpmboot.tpm=required") {
			t.Errorf("%s.cfg: extra %q, %v", kind, e, err)
		}
		v, err := c.VTPMs()
		if err != nil || len(v) != 1 || v[0].Backend != "web1-vtpm" || v[0].UUID != images.ExampleUUID {
			t.Errorf("%s.cfg: vtpm %+v, %v", kind, v, err)
		}
	}
}

func TestHelpAndVersion(t *testing.T) {
	code, stdout, _ := runMkstub(t, "--help")
	if code != exitOK || !strings.Contains(stdout, "usage: mkstub") {
		t.Errorf("--help: exit %d\n%s", code, stdout)
	}
	// Flags are listed the way they are typed: --kernel VMLINUZ, not -kernel string.
	for _, want := range []string{"\n  --kernel VMLINUZ\n", "\n  --init PATH\n", "\n  -o DIR\n", "\n  --version\n"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("--help does not list %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "\n  -kernel") || strings.Contains(stdout, " string\n") {
		t.Errorf("--help uses the flag package's spelling:\n%s", stdout)
	}
	code, stdout, _ = runMkstub(t, "--version")
	if code != exitOK || !strings.HasPrefix(stdout, "mkstub ") || !strings.Contains(stdout, "measurement contract 1") {
		t.Errorf("--version: exit %d %q", code, stdout)
	}
}

// TestNoInit: outside the source tree and with no installed /init, mkstub
// says what to give instead of running go.
func TestNoInit(t *testing.T) {
	root := testenv.RepoRoot()
	kernel := filepath.Join(root, ".cache", "kernel", "vmlinuz")
	testenv.NeedFile(t, kernel, "run scripts/fetch-kernel.sh")
	old := installedInit
	installedInit = func() string { return "/nonexistent/lib/vtpmboot/init" }
	t.Cleanup(func() { installedInit = old })
	t.Chdir(t.TempDir())
	code, _, stderr := runMkstub(t, "--kernel", kernel, "--no-modules", "-o", "out")
	if code != exitUsage || !strings.Contains(stderr, "/nonexistent/lib/vtpmboot/init") || !strings.Contains(stderr, "--init PATH") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

// TestInstalledInit is the installed case: outside the source tree, with
// no go on PATH, mkstub packs the prebuilt /init next to it, and the
// initramfs is byte for byte the one built from the source tree with go
// (the reproducibility guarantee holds across the two ways).
func TestInstalledInit(t *testing.T) {
	testenv.NeedCommands(t, "go")
	root := testenv.RepoRoot()
	kernel := filepath.Join(root, ".cache", "kernel", "vmlinuz")
	mods := filepath.Join(root, ".cache", "kernel", "modules")
	testenv.NeedFile(t, kernel, "run scripts/fetch-kernel.sh")

	fromSrc := filepath.Join(t.TempDir(), "src")
	if code, _, stderr := runMkstub(t, "--kernel", kernel, "--modules", mods, "-o", fromSrc, "--src", root); code != exitOK {
		t.Fatalf("from source: exit %d: %s", code, stderr)
	}
	bin, err := images.GoBuild{Package: images.DefaultInitPackage, Dir: root}.Binary(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	prefix := t.TempDir()
	initPath := filepath.Join(prefix, "lib", "vtpmboot", "init")
	if err := os.MkdirAll(filepath.Dir(initPath), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(initPath, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	old := installedInit
	installedInit = func() string { return initPath }
	t.Cleanup(func() { installedInit = old })
	t.Chdir(t.TempDir())
	t.Setenv("PATH", "/nonexistent")
	installed := filepath.Join(t.TempDir(), "inst")
	code, stdout, stderr := runMkstub(t, "--kernel", kernel, "--modules", mods, "-o", installed)
	if code != exitOK {
		t.Fatalf("installed: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "init: "+initPath+"\n") {
		t.Errorf("mkstub does not say which /init it packed:\n%s", stdout)
	}
	a, _ := os.ReadFile(filepath.Join(fromSrc, "vtpmboot.cpio.gz"))
	b, _ := os.ReadFile(filepath.Join(installed, "vtpmboot.cpio.gz"))
	if len(a) == 0 || !bytes.Equal(a, b) {
		ha, hb := sha256.Sum256(a), sha256.Sum256(b)
		t.Errorf("initramfs from source %x (%d bytes) != with the installed /init %x (%d bytes)", ha, len(a), hb, len(b))
	}
}
