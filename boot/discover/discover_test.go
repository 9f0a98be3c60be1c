package discover

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/vtpmboot/vtpmboot/boot/disks"
	"github.com/vtpmboot/vtpmboot/boot/entry"
	"github.com/vtpmboot/vtpmboot/internal/fakekernel"
)

const grubCfg = `set default=0
set timeout=5
menuentry 'Debian GNU/Linux' --id debian {
	linux /boot/vmlinuz-6.1 root=/dev/xvda1 ro quiet
	initrd /boot/initrd.img-6.1
}
menuentry 'Debian GNU/Linux (recovery mode)' --id debian-recovery {
	linux /boot/vmlinuz-6.1 root=/dev/xvda1 ro single
	initrd /boot/initrd.img-6.1 /boot/extra.img
}
menuentry 'Twin' { linux /boot/vmlinuz-6.1 a }
menuentry 'Twin' { linux /boot/vmlinuz-6.1 b }
`

const menuLst = `default 0
timeout 5
title Legacy
root (hd0,0)
kernel /boot/vmlinuz-6.1 root=/dev/xvda1 ro legacy
initrd /boot/initrd.img-6.1
title Windows
rootnoverify (hd0,1)
chainloader +1
`

func files() fstest.MapFS {
	return fstest.MapFS{
		"boot/vmlinuz-6.1":    {Data: fakekernel.Image([]byte("kernel"))},
		"boot/initrd.img-6.1": {Data: []byte("initrd")},
		"boot/extra.img":      {Data: []byte("extra")},
	}
}

func withFiles(extra map[string]string) fstest.MapFS {
	m := files()
	for k, v := range extra {
		m[k] = &fstest.MapFile{Data: []byte(v)}
	}
	return m
}

func TestGRUB2WinsOverStaleMenuLst(t *testing.T) {
	fsys := withFiles(map[string]string{"boot/grub/grub.cfg": grubCfg, "boot/grub/menu.lst": menuLst})
	c, err := choose([]disks.Volume{{Name: "vda1", FS: fsys}}, "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Found.Format != entry.GRUB2 || c.Entry.ID != "debian" {
		t.Fatalf("chose %s entry %q", c.Found.Format, c.Entry.ID)
	}
	if found := search([]disks.Volume{{Name: "vda1", FS: fsys}}); len(found) != 2 || found[1].Format != entry.GRUBLegacy {
		t.Fatalf("Discover should list the passed-over menu.lst too: %+v", found)
	}
	if !strings.HasPrefix(c.Entry.Cmdline, "BOOT_IMAGE=/boot/vmlinuz-6.1 ") {
		t.Errorf("cmdline %q", c.Entry.Cmdline)
	}
}

func TestSelectors(t *testing.T) {
	fsys := withFiles(map[string]string{"boot/grub/grub.cfg": grubCfg})
	parts := []disks.Volume{{Name: "vda1", FS: fsys}}
	for sel, wantTitle := range map[string]string{
		"1":                                "Debian GNU/Linux (recovery mode)",
		"debian-recovery":                  "Debian GNU/Linux (recovery mode)",
		"Debian GNU/Linux (recovery mode)": "Debian GNU/Linux (recovery mode)",
		"0":                                "Debian GNU/Linux",
	} {
		c, err := choose(parts, sel)
		if err != nil {
			t.Fatalf("%q: %v", sel, err)
		}
		if c.Entry.Title != wantTitle {
			t.Errorf("%q chose %q, want %q", sel, c.Entry.Title, wantTitle)
		}
	}
	c, err := choose(parts, "1")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.Entry.Initrds, " "); got != "boot/initrd.img-6.1 boot/extra.img" {
		t.Errorf("initrds %q", got)
	}
	for sel, wantErr := range map[string]string{
		"Twin": "matches 2 entries",
		"9":    "no entry at position",
		"nope": "no entry matches",
	} {
		if _, err := choose(parts, sel); err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%q: err %v, want %q", sel, err, wantErr)
		}
	}
}

func TestUnbootableAndMissing(t *testing.T) {
	legacy := withFiles(map[string]string{"boot/grub/menu.lst": menuLst})
	if _, err := choose([]disks.Volume{{Name: "xvda1", FS: legacy}}, "1"); err == nil || !strings.Contains(err.Error(), "Windows") {
		t.Errorf("chainloader entry: %v", err)
	}
	missing := fstest.MapFS{"boot/grub/grub.cfg": {Data: []byte(grubCfg)}}
	_, err := choose([]disks.Volume{{Name: "xvda1", FS: missing}}, "")
	if err == nil || !strings.Contains(err.Error(), "kernel") || !strings.Contains(err.Error(), "/boot/vmlinuz-6.1") || !strings.Contains(err.Error(), "Debian GNU/Linux") {
		t.Errorf("missing kernel: %v", err)
	}
	if _, err := choose([]disks.Volume{{Name: "xvda1", FS: fstest.MapFS{}}}, ""); !errors.Is(err, ErrNoConfig) {
		t.Errorf("no config: %v", err)
	}
	broken := withFiles(map[string]string{"boot/grub/grub.cfg": "menuentry 'x' {\n linux /boot/vmlinuz-6.1\n", "boot/grub/menu.lst": menuLst})
	if _, err := choose([]disks.Volume{{Name: "xvda1", FS: broken}}, ""); err == nil || !strings.Contains(err.Error(), "grub.cfg") {
		t.Errorf("a broken grub.cfg must fail, not fall back to menu.lst: %v", err)
	}
}

func TestNotARegularFile(t *testing.T) {
	fsys := fstest.MapFS{
		"boot/grub/grub.cfg": {Data: []byte(grubCfg)},
		"boot/vmlinuz-6.1":   {Mode: fs.ModeDir},
	}
	if _, err := choose([]disks.Volume{{Name: "p", FS: fsys}}, ""); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory as kernel: %v", err)
	}
}

// A guest controls every symlink on its disk. Through os.Root (what the
// stub and pcrsim --root use), a link pointing out of the filesystem must
// not be followed.
func TestSymlinkCannotEscape(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(outside, []byte("host file"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(dir, "boot/grub/grub.cfg"), "set timeout=5\nmenuentry x {\n linux /boot/vmlinuz\n}\n")
	if err := os.Symlink(outside, filepath.Join(dir, "boot/vmlinuz")); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	_, err = choose([]disks.Volume{{Name: "root", FS: root.FS()}}, "")
	if err == nil {
		t.Fatal("a kernel symlinked outside the filesystem was accepted")
	}
}

func TestInputsStreamWhatWasChosen(t *testing.T) {
	fsys := withFiles(map[string]string{"boot/grub/grub.cfg": grubCfg})
	c, err := choose([]disks.Volume{{Name: "p", FS: fsys}}, "debian-recovery")
	if err != nil {
		t.Fatal(err)
	}
	in := c.Inputs()
	var got []string
	for _, s := range in.Initrds {
		rc, err := s.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		got = append(got, s.Name()+"="+string(b))
	}
	if strings.Join(got, ",") != "/boot/initrd.img-6.1=initrd,/boot/extra.img=extra" || in.Kernel.Name() != "/boot/vmlinuz-6.1" {
		t.Errorf("inputs %v kernel %s", got, in.Kernel.Name())
	}
}

func mustWrite(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// errFS fails every lookup under one path with an I/O error, as a corrupt
// directory block or inode on a real disk does.
type errFS struct {
	fs.FS
	bad string
}

var errIO = errors.New("input/output error")

func (e errFS) Open(name string) (fs.File, error) {
	if strings.HasPrefix(name, e.bad) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: errIO}
	}
	return e.FS.Open(name)
}

// Only absence lets discovery fall through to a lower-priority
// configuration: an unreadable grub.cfg (or BLS directory) is a refusal
// naming it, never a quiet boot of the stale menu.lst behind it.
func TestUnreadableConfigIsNotSkipped(t *testing.T) {
	fsys := withFiles(map[string]string{"boot/grub/grub.cfg": grubCfg, "boot/grub/menu.lst": menuLst, "loader/entries/a.conf": "title A\nlinux /boot/vmlinuz-6.1\n"})
	noGRUB2 := withFiles(map[string]string{"boot/grub/menu.lst": menuLst, "loader/entries/a.conf": "title A\nlinux /boot/vmlinuz-6.1\n"})
	for bad, fsys := range map[string]fs.FS{"boot/grub/grub.cfg": fsys, "boot/grub": fsys, "loader/entries": noGRUB2} {
		_, err := choose([]disks.Volume{{Name: "vda1", FS: errFS{fsys, bad}}}, "")
		if err == nil || !errors.Is(err, errIO) || !strings.Contains(err.Error(), "vda1") {
			t.Errorf("%s unreadable: err %v, want a refusal wrapping the I/O error", bad, err)
		}
	}
	// A grub.cfg that is a directory is broken, not absent.
	dir := withFiles(map[string]string{"boot/grub/grub.cfg/x": "", "boot/grub/menu.lst": menuLst})
	if _, err := choose([]disks.Volume{{Name: "vda1", FS: dir}}, ""); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("grub.cfg directory: %v", err)
	}
	// A path component that is a file is absence (ENOTDIR), as for GRUB.
	file := withFiles(map[string]string{"boot/grub2": "a file", "boot/grub/menu.lst": menuLst})
	if c, err := choose([]disks.Volume{{Name: "vda1", FS: file}}, ""); err != nil || c.Found.Format != entry.GRUBLegacy {
		t.Errorf("boot/grub2 a file: %v", err)
	}
}

// A small grub.cfg that sources a 1 MiB file over and over is within every
// per-file limit; the budget across files stops it, in bounded time, with
// an error naming it. 1000 sources would have lexed a gigabyte.
func TestConfigByteBudget(t *testing.T) {
	// Comments: the lexer reads every byte, and no command runs, so the
	// interpreter's own step limit never comes into it.
	big := strings.Repeat("# a comment line that costs lexing and nothing else\n", entry.MaxConfigSize/64)
	cfg := strings.Repeat("source /boot/grub/big.cfg\n", 1000) + "set timeout=5\nmenuentry x { linux /boot/vmlinuz-6.1 }\n"
	fsys := withFiles(map[string]string{"boot/grub/grub.cfg": cfg, "boot/grub/big.cfg": big})
	start := time.Now()
	_, err := choose([]disks.Volume{{Name: "vda1", FS: fsys}}, "")
	if !errors.Is(err, ErrBudget) || !strings.Contains(err.Error(), "big.cfg") {
		t.Fatalf("err %v, want the budget refusal", err)
	}
	t.Logf("refused after %v", time.Since(start))
	// The same file sourced a few times is fine.
	fsys = withFiles(map[string]string{"boot/grub/grub.cfg": strings.Repeat("source /boot/grub/big.cfg\n", 3) + "set timeout=5\nmenuentry x { linux /boot/vmlinuz-6.1 }\n", "boot/grub/big.cfg": "set a=b\n"})
	if _, err := choose([]disks.Volume{{Name: "vda1", FS: fsys}}, ""); err != nil {
		t.Errorf("small sources: %v", err)
	}
}

// TestLoaderWouldWait: the one selector refuses the default where the real
// loader stops for a person (e2e/loader proves each rule against it), with
// the way out in the message; an explicit choice still boots.
func TestLoaderWouldWait(t *testing.T) {
	fsys := withFiles(map[string]string{"boot/grub/grub.cfg": "menuentry 'L' { linux /boot/vmlinuz-6.1 }\n"})
	parts := []disks.Volume{{Name: "vda1", FS: fsys}}
	_, err := choose(parts, "")
	if !errors.Is(err, ErrWaitsForPerson) || !strings.Contains(err.Error(), "vtpmboot.entry=") || !strings.Contains(err.Error(), "timeout") {
		t.Errorf("no timeout: %v", err)
	}
	if c, err := choose(parts, "0"); err != nil || c.Entry.Title != "L" {
		t.Errorf("explicit choice: %v", err)
	}
	fsys = withFiles(map[string]string{"boot/grub/grub.cfg": "set timeout=0\nmenuentry 'W' { chainloader +1 }\nmenuentry 'L' { linux /boot/vmlinuz-6.1 }\n"})
	if _, err := choose([]disks.Volume{{Name: "vda1", FS: fsys}}, ""); !errors.Is(err, ErrDefaultUnbootable) || !strings.Contains(err.Error(), "chainloader") {
		t.Errorf("chainloader default: %v", err)
	}
}

// TestFallback: a default whose kernel is missing falls back as GRUB does;
// an explicit choice never does.
func TestFallback(t *testing.T) {
	fsys := withFiles(map[string]string{"boot/grub/grub.cfg": "set timeout=0\nset fallback=\"2 1\"\n" +
		"menuentry 'Gone' { linux /boot/missing }\nmenuentry 'One' { linux /boot/vmlinuz-6.1 one }\nmenuentry 'Two' { linux /boot/missing-too }\n"})
	parts := []disks.Volume{{Name: "vda1", FS: fsys}}
	c, err := choose(parts, "")
	if err != nil || c.Entry.Title != "One" || !strings.Contains(c.Reason, "falls back to entry 1") {
		t.Fatalf("fallback: %+v %v", c, err)
	}
	if _, err := choose(parts, "0"); err == nil || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("explicit choice of the broken entry: %v", err)
	}
}

// choose is Choose in the shape the tests below were written for.
func choose(vols []disks.Volume, selector string) (*Choice, error) {
	s := Choose(vols, selector)
	return s.Choice, s.Err
}
