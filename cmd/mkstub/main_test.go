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
		{[]string{"--help"}, exitOK, "usage: mkstub"},
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
		"--src", root, "--init", "./internal/target/targetinit", "--add", extra+":etc/extra",
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
