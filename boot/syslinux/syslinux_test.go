package syslinux

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/vtpmboot/vtpmboot/boot/entry"
	"github.com/vtpmboot/vtpmboot/internal/golden"
	"github.com/vtpmboot/vtpmboot/internal/loadercase"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
)

// goldenCases are real-world-shaped trees in testdata/syslinux; each is a
// filesystem root with the config where its generator puts it.
var goldenCases = []struct{ dir, config string }{
	{"debian-extlinux", "boot/extlinux/extlinux.conf"},
	{"alpine", "extlinux.conf"},
	{"arch", "boot/syslinux/syslinux.cfg"},
	{"edge", "boot/extlinux/extlinux.conf"},
}

func testdataDir() string { return filepath.Join(testenv.RepoRoot(), "testdata", "syslinux") }

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

// TestCmdlineBytes pins command lines written out by hand from the config
// files and syslinux 6's rule ("BOOT_IMAGE=<kernel> <args>", args being
// KERNEL's tail, APPEND (or the global one) and " initrd=<INITRD>"), so a
// golden regenerated with a bug in it still fails here.
func TestCmdlineBytes(t *testing.T) {
	type want struct {
		index      int
		id, kernel string
		cmdline    string
		initrds    []string
		unbootable bool
	}
	cases := []struct {
		dir, config string
		def         int
		entries     []want
	}{
		{"debian-extlinux", "boot/extlinux/extlinux.conf", 0, []want{
			{index: 0, id: "l0", kernel: "boot/vmlinuz-3.2.0-4-amd64",
				cmdline: "BOOT_IMAGE=/boot/vmlinuz-3.2.0-4-amd64 initrd=/boot/initrd.img-3.2.0-4-amd64 root=UUID=6b1c1f2e-9a39-4c1e-8d6a-0f3c2b7e5d41 ro console=hvc0 quiet",
				initrds: []string{"boot/initrd.img-3.2.0-4-amd64"}},
			{index: 1, id: "l0r", kernel: "boot/vmlinuz-3.2.0-4-amd64",
				cmdline: "BOOT_IMAGE=/boot/vmlinuz-3.2.0-4-amd64 initrd=/boot/initrd.img-3.2.0-4-amd64 root=UUID=6b1c1f2e-9a39-4c1e-8d6a-0f3c2b7e5d41 ro console=hvc0 single",
				initrds: []string{"boot/initrd.img-3.2.0-4-amd64"}},
		}},
		{"alpine", "extlinux.conf", 1, []want{
			{index: 0, id: "xen-lts", unbootable: true},
			// Relative names resolve against the config's directory.
			{index: 1, id: "virt", kernel: "vmlinuz-virt",
				cmdline: "BOOT_IMAGE=vmlinuz-virt root=UUID=4d9a5e8b-6f7c-4d2b-9e1a-2c3b4d5e6f70 modules=sd-mod,usb-storage,ext4 console=hvc0 quiet rootfstype=ext4 initrd=initramfs-virt",
				initrds: []string{"initramfs-virt"}},
		}},
		{"arch", "boot/syslinux/syslinux.cfg", 0, []want{
			{index: 0, id: "arch", kernel: "boot/vmlinuz-linux",
				cmdline: "BOOT_IMAGE=../vmlinuz-linux root=UUID=0a3407de-014b-458b-b5c1-848e92a327a3 rw console=hvc0 initrd=../intel-ucode.img,../initramfs-linux.img",
				initrds: []string{"boot/intel-ucode.img", "boot/initramfs-linux.img"}},
			{index: 2, id: "hdt", unbootable: true},
		}},
		{"edge", "boot/extlinux/extlinux.conf", 10, []want{
			{index: 0, id: "l0", kernel: "boot/extlinux/vmlinuz-a",
				cmdline: "BOOT_IMAGE=vmlinuz-a console=hvc0 root=/dev/xvda1", initrds: []string{}},
			{index: 1, id: "l1", kernel: "boot/vmlinuz-b",
				cmdline: "BOOT_IMAGE=/boot/vmlinuz-b quiet ro  single\t initrd=/boot/initrd-b.img,initrd-extra.img",
				initrds: []string{"boot/initrd-b.img", "boot/extlinux/initrd-extra.img"}},
			// APPEND - drops the global APPEND; no args leaves the blank.
			{index: 2, id: "l2", kernel: "vmlinuz-c", cmdline: "BOOT_IMAGE=../../vmlinuz-c ", initrds: []string{}},
			// The first initrd= in the line wins; INITRD's comes last.
			{index: 3, id: "l3", kernel: "boot/extlinux/vmlinuz-d",
				cmdline: "BOOT_IMAGE=vmlinuz-d initrd=first.img ro initrd=second.img",
				initrds: []string{"boot/extlinux/first.img"}},
			// LABEL without KERNEL boots the file named like the label.
			{index: 4, id: "vmlinuz-e", kernel: "boot/extlinux/vmlinuz-e", cmdline: "BOOT_IMAGE=vmlinuz-e root=/dev/xvda2", initrds: []string{}},
			{index: 5, id: "local", unbootable: true},
			{index: 6, id: "locked", kernel: "boot/extlinux/vmlinuz-a", cmdline: "BOOT_IMAGE=vmlinuz-a console=hvc0 root=/dev/xvda1", initrds: []string{}}, // MENU PASSWD: booted at the timeout
			{index: 7, id: "hidden", kernel: "boot/extlinux/vmlinuz-a",
				cmdline: "BOOT_IMAGE=vmlinuz-a console=hvc0 root=/dev/xvda1", initrds: []string{}},
			{index: 8, id: "bad-initrd", unbootable: true},
			{index: 9, id: "fromsub", kernel: "vmlinuz-sub",
				cmdline: "BOOT_IMAGE=/vmlinuz-sub console=hvc0 root=/dev/xvda1 initrd=initrd-sub",
				initrds: []string{"boot/extlinux/initrd-sub"}},
			// DEFAULT "l1   extra=1  ": the label's line plus one blank
			// and the rest, trailing blanks and all.
			{index: 10, id: "", kernel: "boot/vmlinuz-b",
				cmdline: "BOOT_IMAGE=/boot/vmlinuz-b quiet ro  single\t initrd=/boot/initrd-b.img,initrd-extra.img extra=1  ",
				initrds: []string{"boot/initrd-b.img", "boot/extlinux/initrd-extra.img"}},
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
				if e.ID != w.id {
					t.Errorf("entry %d: id %q, want %q", w.index, e.ID, w.id)
				}
				if w.unbootable {
					if e.Kernel != "" {
						t.Errorf("entry %d %q: kernel %q, want none (unbootable)", w.index, e.ID, e.Kernel)
					}
					continue
				}
				if e.Kernel != w.kernel || e.Cmdline != w.cmdline || strings.Join(e.Initrds, "|") != strings.Join(w.initrds, "|") {
					t.Errorf("entry %d %q:\n got kernel=%q cmdline=%q initrds=%q\nwant kernel=%q cmdline=%q initrds=%q",
						w.index, e.ID, e.Kernel, e.Cmdline, e.Initrds, w.kernel, w.cmdline, w.initrds)
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
	const three = "label a\nkernel /a\nlabel b\nkernel /b\nlabel c\nmenu hide\nkernel /c\n"
	cases := []struct {
		name, data string
		want       int
		reason     string
		cmdline    string // of the default entry, when it matters
	}{
		{"no default no ui", three, 0, "no DEFAULT or UI", ""},
		{"default label", "default b\n" + three, 1, "label \"b\"", ""},
		{"default keyword case", "DEFAULT b\n" + three, 1, "label \"b\"", ""},
		{"labels are case-sensitive", "default B\n" + three, 3, "not a label", "BOOT_IMAGE=B "},
		{"default hidden label without ui", "default c\n" + three, 2, "label \"c\"", ""},
		{"default implicit kernel", "default /boot/vmlinuz root=/dev/xvda1\n" + three, 3, "not a label", "BOOT_IMAGE=/boot/vmlinuz root=/dev/xvda1"},
		{"implicit off", "implicit 0\ndefault /boot/vmlinuz\n" + three, 0, "IMPLICIT is 0", ""},
		{"ui menu default", "ui menu.c32\n" + strings.Replace(three, "label b\n", "label b\nmenu default\n", 1), 1, "MENU DEFAULT", ""},
		{"ui default beats menu default", "ui menu.c32\ndefault a\n" + strings.Replace(three, "label b\n", "label b\nmenu default\n", 1), 0, "DEFAULT a", ""},
		{"ui default hidden ignored", "ui menu.c32\ndefault c\n" + three, 0, "first menu entry", ""},
		{"ui first entry", "ui vesamenu.c32\n" + three, 0, "first menu entry", ""},
		{"old style default menu.c32", "default menu.c32\n" + strings.Replace(three, "label b\n", "label b\nmenu default\n", 1), 1, "MENU DEFAULT", ""},
		{"ui ontimeout", "ui menu.c32\nontimeout b\n" + three, 1, "ONTIMEOUT", ""},
		{"ui after default keeps ui", "default b\nui menu.c32\n" + three, 1, "DEFAULT b", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := Parse(mapfs(map[string]string{"syslinux.cfg": c.data}), "syslinux.cfg")
			if err != nil {
				t.Fatal(err)
			}
			if m.Default != c.want || !strings.Contains(m.DefaultReason, c.reason) {
				t.Errorf("default %d (%q), want %d (%q)", m.Default, m.DefaultReason, c.want, c.reason)
			}
			if c.cmdline != "" && m.Entries[m.Default].Cmdline != c.cmdline {
				t.Errorf("default cmdline %q, want %q", m.Entries[m.Default].Cmdline, c.cmdline)
			}
			checkInvariants(t, m)
		})
	}
}

func TestInclude(t *testing.T) {
	t.Run("loop", func(t *testing.T) {
		_, err := Parse(os.DirFS(filepath.Join(testdataDir(), "loop")), "a.cfg")
		var se *entry.SyntaxError
		if !errors.As(err, &se) || !strings.Contains(err.Error(), "INCLUDE loop") || se.File != "b.cfg" || se.Line != 1 {
			t.Errorf("error %v, want an INCLUDE loop at b.cfg:1", err)
		}
	})
	t.Run("self", func(t *testing.T) {
		_, err := Parse(mapfs(map[string]string{"x/s.cfg": "label a\nkernel /a\ninclude s.cfg\n"}), "x/s.cfg")
		if err == nil || !strings.Contains(err.Error(), "INCLUDE loop") {
			t.Errorf("error %v", err)
		}
	})
	t.Run("depth", func(t *testing.T) {
		files := map[string]string{"c0.cfg": "label a\nkernel /a\ninclude c1.cfg\n"}
		for i := 1; i < 40; i++ {
			files["c"+strconv.Itoa(i)+".cfg"] = "include c" + strconv.Itoa(i+1) + ".cfg\n"
		}
		_, err := Parse(mapfs(files), "c0.cfg")
		if err == nil || !strings.Contains(err.Error(), "nested more than") {
			t.Errorf("error %v", err)
		}
	})
	t.Run("relative to the main config's directory", func(t *testing.T) {
		m, err := Parse(mapfs(map[string]string{
			"boot/syslinux/syslinux.cfg": "include sub/a.cfg\n",
			"boot/syslinux/sub/a.cfg":    "include b.cfg\n",
			"boot/syslinux/b.cfg":        "label b\nkernel vmlinuz\n",
			"boot/syslinux/sub/b.cfg":    "label wrong\nkernel wrong\n",
		}), "boot/syslinux/syslinux.cfg")
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Entries) != 1 || m.Entries[0].ID != "b" || m.Entries[0].Kernel != "boot/syslinux/vmlinuz" || m.Entries[0].Config != "boot/syslinux/b.cfg" {
			t.Errorf("entries %+v", m.Entries)
		}
	})
	t.Run("menu include as submenu", func(t *testing.T) {
		m, err := Parse(mapfs(map[string]string{
			"s.cfg":   "ui menu.c32\nmenu include sub.cfg Tools\nlabel main\nkernel /main\n",
			"sub.cfg": "label t\nmenu default\nkernel /t\n",
		}), "s.cfg")
		if err != nil {
			t.Fatal(err)
		}
		// MENU DEFAULT inside a submenu is not the root menu's default;
		// the first entry is, which here is the submenu's own.
		if len(m.Entries) != 2 || m.Default != 0 || m.Entries[0].ID != "t" || !strings.Contains(m.DefaultReason, "first menu entry") {
			t.Errorf("default %d %q, entries %+v", m.Default, m.DefaultReason, m.Entries)
		}
	})
}

func TestBadInput(t *testing.T) {
	cases := []struct {
		name, data string
		errHas     string
	}{
		{"empty", "", "no bootable entry"},
		{"only comments", "# nothing\n\n", "no bootable entry"},
		{"only com32", "label m\ncom32 menu.c32\n", "no bootable entry"},
		{"NUL byte", "label a\nkernel /a\x00\n", "NUL byte"},
		{"binary garbage", "\x7fELF\x02\x01\x01\x00\x00", "NUL byte"},
		{"binary garbage without NUL", "\x7fELF\x02\x01\x01\xff\xfe\x80\n\x01", "no bootable entry"},
		{"huge line", "label a\nkernel /a\nappend " + strings.Repeat("x", 10000) + "\n", "longer than 4095"},
		{"unterminated last line", "label a\nkernel /a\nappend ro", ""},
		{"dotdot cannot escape", "label a\nkernel ../../../../vmlinuz\n", ""},
		{"initrd only commas", "label a\nkernel /a\ninitrd ,,,\n", "no bootable entry"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := Parse(mapfs(map[string]string{"boot/extlinux/extlinux.conf": c.data}), "boot/extlinux/extlinux.conf")
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
			if !strings.Contains(err.Error(), "boot/extlinux/extlinux.conf") || !strings.Contains(err.Error(), c.errHas) {
				t.Errorf("error %q: want it to name the file and say %q", err, c.errHas)
			}
		})
	}
	t.Run("dotdot result", func(t *testing.T) {
		m, err := Parse(mapfs(map[string]string{"boot/extlinux/extlinux.conf": "label a\nkernel ../../../../vmlinuz\n"}), "boot/extlinux/extlinux.conf")
		if err != nil {
			t.Fatal(err)
		}
		if m.Entries[0].Kernel != "vmlinuz" {
			t.Errorf("kernel %q, want vmlinuz", m.Entries[0].Kernel)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		_, err := Parse(fstest.MapFS{}, "extlinux.conf")
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "extlinux.conf") {
			t.Errorf("error %v", err)
		}
	})
	t.Run("too large", func(t *testing.T) {
		_, err := Parse(mapfs(map[string]string{"extlinux.conf": strings.Repeat("#\n", entry.MaxConfigSize)}), "extlinux.conf")
		if !errors.Is(err, entry.ErrTooLarge) {
			t.Errorf("error %v", err)
		}
	})
	t.Run("include of a directory is skipped", func(t *testing.T) {
		m, err := Parse(mapfs(map[string]string{"e.conf": "label a\nkernel /a\ninclude d\ninclude .\n", "d/x": ""}), "e.conf")
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Warnings) != 2 || !strings.Contains(m.Warnings[1], "INCLUDE .: not a regular file") {
			t.Errorf("warnings %q", m.Warnings)
		}
	})
	t.Run("include too large names the including line", func(t *testing.T) {
		_, err := Parse(mapfs(map[string]string{"e.conf": "label a\nkernel /a\ninclude big.cfg\n", "big.cfg": strings.Repeat("#\n", entry.MaxConfigSize)}), "e.conf")
		if !errors.Is(err, entry.ErrTooLarge) || !strings.Contains(err.Error(), "e.conf:3: INCLUDE") || !strings.Contains(err.Error(), "big.cfg") {
			t.Errorf("error %v", err)
		}
	})
}

func checkInvariants(t *testing.T, m *entry.Menu) {
	t.Helper()
	if len(m.Entries) == 0 || m.Default < 0 || m.Default >= len(m.Entries) {
		t.Fatalf("default %d out of %d entries", m.Default, len(m.Entries))
	}
	bootable := false
	for i, e := range m.Entries {
		if e.Index != i || e.MenuPath == "" || e.Format != entry.Syslinux {
			t.Errorf("entry %d: bad index/path/format %+v", i, e)
		}
		if e.Kernel == "" {
			continue
		}
		bootable = true
		if !strings.HasPrefix(e.Cmdline, "BOOT_IMAGE=") {
			t.Errorf("entry %d: cmdline %q lacks BOOT_IMAGE=", i, e.Cmdline)
		}
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
		f.Add(data, []byte("label inc\nkernel /inc\n"))
	}
	f.Add([]byte("include inc.cfg\ninclude inc.cfg\n"), []byte("include syslinux.cfg\n"))
	// The real-loader corpus (e2e/loader): configs real SYSLINUX 6.04 booted.
	cases, err := loadercase.LoadCorpus(testenv.RepoRoot(), loadercase.Syslinux)
	if err != nil {
		f.Fatal(err)
	}
	for _, c := range cases {
		if _, b := c.MainConfig(); b != nil {
			f.Add(b, []byte("label inc\nkernel /inc\n"))
		}
	}
	f.Fuzz(func(t *testing.T, config, inc []byte) {
		fsys := fstest.MapFS{
			"boot/syslinux/syslinux.cfg": &fstest.MapFile{Data: config},
			"boot/syslinux/inc.cfg":      &fstest.MapFile{Data: inc},
		}
		m, err := Parse(fsys, "boot/syslinux/syslinux.cfg")
		if err != nil {
			if !strings.Contains(err.Error(), "boot/syslinux/") {
				t.Errorf("error does not name a file: %v", err)
			}
			return
		}
		checkInvariants(t, m)
	})
}

// TestWaits: when SYSLINUX stops for a person, Menu.Waits says why (the
// e2e/loader oracle cases named in docs/config-syslinux.md).
func TestWaits(t *testing.T) {
	const l = "label a\nkernel /a\nlabel b\nkernel /b\n"
	for _, c := range []struct{ cfg, want string }{
		{l, "no DEFAULT or UI"},
		{"timeout 10\n" + l, "no DEFAULT or UI"},
		{"default a\n" + l, ""},
		{"default a\ntimeout 0\n" + l, ""},
		{"default a\nprompt 1\n" + l, "PROMPT 1 with no TIMEOUT"},
		{"default a\nprompt 1\ntimeout 0\n" + l, "PROMPT 1 with no TIMEOUT"},
		{"default a\nprompt 1\ntimeout 10\n" + l, ""},
		{"default a\nprompt 1\ntotaltimeout 10\n" + l, ""},
		{"ui menu.c32\n" + l, "menu has no TIMEOUT"},
		{"ui menu.c32\ntimeout 0\n" + l, "menu has no TIMEOUT"},
		{"ui menu.c32\ntimeout 5\n" + l, ""},
		{"default menu.c32\n" + l, "menu has no TIMEOUT"},
	} {
		m, err := Parse(mapfs(map[string]string{"syslinux.cfg": c.cfg}), "syslinux.cfg")
		if err != nil {
			t.Fatal(err)
		}
		if (c.want == "") != (m.Waits == "") || !strings.Contains(m.Waits, c.want) {
			t.Errorf("%q: Waits %q, want %q", c.cfg, m.Waits, c.want)
		}
	}
	// PROMPT 1 with a timeout boots ONTIMEOUT; PROMPT 0 boots DEFAULT at once.
	for _, c := range []struct {
		cfg  string
		want int
	}{
		{"prompt 1\ntimeout 10\ndefault a\nontimeout b\n" + l, 1},
		{"prompt 0\ntimeout 10\ndefault a\nontimeout b\n" + l, 0},
	} {
		m, err := Parse(mapfs(map[string]string{"syslinux.cfg": c.cfg}), "syslinux.cfg")
		if err != nil {
			t.Fatal(err)
		}
		if m.Default != c.want {
			t.Errorf("%q: default %d (%s), want %d", c.cfg, m.Default, m.DefaultReason, c.want)
		}
	}
}
