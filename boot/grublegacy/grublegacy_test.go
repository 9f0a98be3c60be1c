package grublegacy

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/vtpmboot/vtpmboot/boot/entry"
	"github.com/vtpmboot/vtpmboot/internal/golden"
	"github.com/vtpmboot/vtpmboot/internal/loadercase"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
)

// goldenCases are real-world-shaped trees in testdata/grublegacy; each is
// a filesystem root with the config where its generator puts it.
var goldenCases = []struct{ dir, config string }{
	{"debian-lenny", "boot/grub/menu.lst"},
	{"ubuntu-hardy", "boot/grub/menu.lst"},
	{"centos5", "grub/grub.conf"},
	{"centos6", "grub/grub.conf"},
	{"edge", "boot/grub/menu.lst"},
}

func testdataDir() string { return filepath.Join(testenv.RepoRoot(), "testdata", "grublegacy") }

func TestGolden(t *testing.T) {
	root := testdataDir()
	for _, c := range goldenCases {
		t.Run(c.dir, func(t *testing.T) {
			m, err := Parse(os.DirFS(filepath.Join(root, c.dir)), c.config)
			if err != nil {
				t.Fatal(err)
			}
			golden.JSON(t, filepath.Join(root, c.dir+".golden.json"), m)
		})
	}
}

// TestCmdlineBytes pins the command lines that matter most, written out
// by hand from the config files and pv-grub's rule (everything after the
// kernel file name and the blanks after it, to the end of the line), so a
// golden regenerated with a bug in it still fails here.
func TestCmdlineBytes(t *testing.T) {
	type want struct {
		index           int
		kernel, cmdline string
		initrds         []string
	}
	cases := []struct {
		dir, config string
		def         int
		entries     []want
	}{
		{"debian-lenny", "boot/grub/menu.lst", 0, []want{
			{0, "boot/vmlinuz-2.6.26-2-xen-amd64", "root=/dev/xvda2 ro console=hvc0", []string{"boot/initrd.img-2.6.26-2-xen-amd64"}},
			{1, "boot/vmlinuz-2.6.26-2-xen-amd64", "root=/dev/xvda2 ro console=hvc0 single", []string{"boot/initrd.img-2.6.26-2-xen-amd64"}},
		}},
		{"ubuntu-hardy", "boot/grub/menu.lst", 2, []want{
			// The trailing blank update-grub leaves is part of the bytes.
			{0, "boot/vmlinuz-2.6.24-32-xen", "root=UUID=2f9a6a7e-2b6e-4c3c-9d8e-4b1a0b9c7d11 ro quiet splash ", []string{"boot/initrd.img-2.6.24-32-xen"}},
			{3, "boot/memtest86+.bin", "", []string{}},
			{4, "", "", []string{}},
			{5, "", "", []string{}},
		}},
		{"centos5", "grub/grub.conf", 0, []want{
			// /boot is its own partition: paths are relative to it.
			{0, "vmlinuz-2.6.18-419.el5xen", "ro root=/dev/VolGroup00/LogVol00 console=xvc0", []string{"initrd-2.6.18-419.el5xen.img"}},
		}},
		{"centos6", "grub/grub.conf", 1, []want{
			// anaconda's double blank survives: GRUB does not collapse runs.
			{1, "vmlinuz-2.6.32-754.el6.x86_64", "ro root=/dev/mapper/VolGroup-lv_root rd_NO_LUKS LANG=en_US.UTF-8 rd_NO_MD rd_LVM_LV=VolGroup/lv_swap SYSFONT=latarcyrheb-sun16 crashkernel=auto rd_LVM_LV=VolGroup/lv_root  KEYBOARDTYPE=pc KEYTABLE=us rd_NO_DM console=hvc0 rhgb quiet", []string{"initramfs-2.6.32-754.el6.x86_64.img"}},
			{2, "vmlinuz-2.6.32-754.el6.x86_64", "ro root=/dev/mapper/VolGroup-lv_root single", []string{"initramfs-2.6.32-754.el6.x86_64.img"}}, // locked: bootable when chosen (lockWhy)
		}},
		{"edge", "boot/grub/menu.lst", 2, []want{
			{0, "", "", []string{}}, // xen.gz + module
			// backslash-newline is one blank, the tab another; trailing
			// blanks stay; the second initrd replaces the first.
			{1, "boot/vmlinuz-3.2.0-4-amd64", "root=/dev/xvda1   ro   console=hvc0   ", []string{"boot/initrd.img-3.2.0-4-amd64.new"}},
			{2, "", "", []string{}}, // chainloader
			{3, "", "", []string{}}, // relative path
			{4, "", "", []string{}}, // initrd before kernel
			{5, "boot/vmlinuz-x", "a  b", []string{}},
			{6, "boot/vmlinuz", "", []string{}},
		}},
	}
	for _, c := range cases {
		t.Run(c.dir, func(t *testing.T) {
			m, err := Parse(os.DirFS(filepath.Join(testdataDir(), c.dir)), c.config)
			if err != nil {
				t.Fatal(err)
			}
			if m.Default != c.def {
				t.Errorf("default = %d (%s), want %d", m.Default, m.DefaultReason, c.def)
			}
			for _, w := range c.entries {
				if w.index >= len(m.Entries) {
					t.Fatalf("only %d entries, want index %d", len(m.Entries), w.index)
				}
				e := m.Entries[w.index]
				if e.Kernel != w.kernel || e.Cmdline != w.cmdline || strings.Join(e.Initrds, "|") != strings.Join(w.initrds, "|") {
					t.Errorf("entry %d %q:\n got kernel=%q cmdline=%q initrds=%q\nwant kernel=%q cmdline=%q initrds=%q",
						w.index, e.Title, e.Kernel, e.Cmdline, e.Initrds, w.kernel, w.cmdline, w.initrds)
				}
			}
		})
	}
}

func mapfs(files map[string]string) fstest.MapFS {
	m := fstest.MapFS{}
	for k, v := range files {
		m[k] = &fstest.MapFile{Data: []byte(v), Mode: 0o644}
	}
	return m
}

func TestDefault(t *testing.T) {
	const two = "title a\nkernel /a\ntitle b\nkernel /b\n"
	cases := []struct {
		name   string
		files  map[string]string
		want   int
		reason string
	}{
		{"none", map[string]string{"menu.lst": two}, 0, "no default"},
		{"number", map[string]string{"menu.lst": "default 1\n" + two}, 1, "default 1"},
		{"equals", map[string]string{"menu.lst": "default=1\n" + two}, 1, "default 1"},
		{"hex", map[string]string{"menu.lst": "default 0x1\n" + two}, 1, "default 1"},
		{"trailing junk", map[string]string{"menu.lst": "default 1 # second\n" + two}, 1, "default 1"},
		{"not a number", map[string]string{"menu.lst": "default one\n" + two}, 0, "no default"},
		{"out of range", map[string]string{"menu.lst": "default 9\n" + two}, 0, "past the last entry"},
		{"out of range, fallback", map[string]string{"menu.lst": "default 9\nfallback 5 1\n" + two}, 1, "fallback 1"},
		{"saved", map[string]string{"menu.lst": "default saved\n" + two, "default": "1\n#\n#\n"}, 1, "default says 1"},
		{"saved once format", map[string]string{"menu.lst": "default saved\n" + two, "default": "0:1"}, 1, "default says 1"},
		{"saved, no file", map[string]string{"menu.lst": "default saved\n" + two}, 0, "not readable"},
		{"saved, garbage file", map[string]string{"menu.lst": "default saved\n" + two, "default": "xyz"}, 0, "no number"},
		{"saved, out of range", map[string]string{"menu.lst": "default saved\n" + two, "default": "7"}, 0, "past the last entry"},
		{"last default wins", map[string]string{"menu.lst": "default 0\ndefault 1\n" + two}, 1, "default 1"},
		// default inside an entry is a menu-only command: no effect.
		{"default in entry", map[string]string{"menu.lst": "title a\nkernel /a\ndefault 1\ntitle b\nkernel /b\n"}, 0, "no default"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := Parse(mapfs(c.files), "menu.lst")
			if err != nil {
				t.Fatal(err)
			}
			if m.Default != c.want || !strings.Contains(m.DefaultReason, c.reason) {
				t.Errorf("default %d (%q), want %d (%q)", m.Default, m.DefaultReason, c.want, c.reason)
			}
		})
	}
}

func TestBadInput(t *testing.T) {
	cases := []struct {
		name, data string
		errHas     string // "" = parses; else the error must name the file and say this
	}{
		{"empty", "", "no menu entries"},
		{"only comments", "# nothing\n\n   # here\n", "no menu entries"},
		{"only globals", "default 0\ntimeout 5\n", "no menu entries"},
		{"titles without commands", "title a\ntitle b\n", "no menu entries"},
		{"nothing bootable", "title w\nchainloader +1\n", "no bootable entry"},
		{"NUL byte", "title a\nkernel /a\x00b\n", "NUL byte"},
		{"binary garbage", "\x7fELF\x02\x01\x01\x00\x00\x00\xff\xfe", "NUL byte"},
		{"binary garbage without NUL", "\x7fELF\x02\x01\x01\xff\xfe\x80\n\x01", "no menu entries"},
		{"unterminated last line", "title a\nkernel /a root=/dev/xvda1", ""},
		{"huge line", "title a\nkernel /a " + strings.Repeat("x", 100000) + "\n", ""},
		{"dotdot cannot escape", "title a\nkernel /../../../etc/../boot/vmlinuz ro\n", ""},
		{"unterminated device", "title a\nkernel (hd0,0/vmlinuz\n", "no bootable entry"},
		{"block list", "title a\nkernel (hd0,0)0+100\n", "no bootable entry"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := Parse(mapfs(map[string]string{"boot/grub/menu.lst": c.data}), "boot/grub/menu.lst")
			if c.errHas == "" {
				if err != nil {
					t.Fatal(err)
				}
				checkInvariants(t, m)
				return
			}
			if err == nil {
				t.Fatalf("parsed: %+v", m)
			}
			if !strings.Contains(err.Error(), "boot/grub/menu.lst") || !strings.Contains(err.Error(), c.errHas) {
				t.Errorf("error %q: want it to name the file and say %q", err, c.errHas)
			}
		})
	}
	t.Run("dotdot result", func(t *testing.T) {
		m, err := Parse(mapfs(map[string]string{"menu.lst": "title a\nkernel /../../x/../boot/vmlinuz\n"}), "menu.lst")
		if err != nil {
			t.Fatal(err)
		}
		if m.Entries[0].Kernel != "boot/vmlinuz" {
			t.Errorf("kernel %q, want boot/vmlinuz", m.Entries[0].Kernel)
		}
	})
	t.Run("huge line is cut at 1500 bytes", func(t *testing.T) {
		m, err := Parse(mapfs(map[string]string{"menu.lst": "title a\nkernel /a " + strings.Repeat("x", 5000) + "\n"}), "menu.lst")
		if err != nil {
			t.Fatal(err)
		}
		// "kernel /a " is 10 bytes of the 1500.
		if got := len(m.Entries[0].Cmdline); got != 1490 {
			t.Errorf("cmdline length %d, want 1490", got)
		}
		if len(m.Warnings) == 0 {
			t.Error("no warning about the cut line")
		}
	})
	t.Run("missing file", func(t *testing.T) {
		_, err := Parse(fstest.MapFS{}, "boot/grub/menu.lst")
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "boot/grub/menu.lst") {
			t.Errorf("error %v", err)
		}
	})
	t.Run("too large", func(t *testing.T) {
		_, err := Parse(mapfs(map[string]string{"menu.lst": strings.Repeat("#\n", entry.MaxConfigSize)}), "menu.lst")
		if !errors.Is(err, entry.ErrTooLarge) {
			t.Errorf("error %v", err)
		}
	})
	t.Run("syntax error type", func(t *testing.T) {
		_, err := Parse(mapfs(map[string]string{"menu.lst": "title a\n\nkernel /a\x00\n"}), "menu.lst")
		var se *entry.SyntaxError
		if !errors.As(err, &se) || se.File != "menu.lst" || se.Line != 3 {
			t.Errorf("error %#v", err)
		}
	})
}

// checkInvariants holds for every menu Parse returns.
func checkInvariants(t *testing.T, m *entry.Menu) {
	t.Helper()
	if len(m.Entries) == 0 || m.Default < 0 || m.Default >= len(m.Entries) {
		t.Fatalf("default %d out of %d entries", m.Default, len(m.Entries))
	}
	bootable := false
	for i, e := range m.Entries {
		if e.Index != i || e.MenuPath == "" || e.Format != entry.GRUBLegacy {
			t.Errorf("entry %d: bad index/path/format %+v", i, e)
		}
		if e.Kernel == "" {
			continue
		}
		bootable = true
		for _, p := range append([]string{e.Kernel}, e.Initrds...) {
			if !fs.ValidPath(p) {
				t.Errorf("entry %d: path %q is not fs.ValidPath", i, p)
			}
		}
	}
	if !bootable {
		t.Error("no bootable entry in a menu returned without error")
	}
}

func FuzzParse(f *testing.F) {
	for _, c := range goldenCases {
		data, err := os.ReadFile(filepath.Join(testdataDir(), c.dir, c.config))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, []byte("1\n"))
	}
	f.Add([]byte("default saved\ntitle a\\\nkernel /a\\\n\\\n"), []byte("0:3"))
	// The real-loader corpus (e2e/loader): configs real GRUB 0.97 booted.
	cases, err := loadercase.LoadCorpus(testenv.RepoRoot(), loadercase.GRUBLegacy)
	if err != nil {
		f.Fatal(err)
	}
	for _, c := range cases {
		if _, b := c.MainConfig(); b != nil {
			f.Add(b, []byte("1\n"))
		}
	}
	f.Fuzz(func(t *testing.T, config, saved []byte) {
		fsys := fstest.MapFS{
			"boot/grub/menu.lst": &fstest.MapFile{Data: config},
			"boot/grub/default":  &fstest.MapFile{Data: saved},
		}
		m, err := Parse(fsys, "boot/grub/menu.lst")
		if err != nil {
			if !strings.Contains(err.Error(), "boot/grub/menu.lst") {
				t.Errorf("error does not name the file: %v", err)
			}
			return
		}
		checkInvariants(t, m)
	})
}
