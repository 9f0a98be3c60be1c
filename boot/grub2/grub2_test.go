package grub2

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/vtpmboot/vtpmboot/boot/entry"
	"github.com/vtpmboot/vtpmboot/internal/golden"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
)

// goldenCases are real-layout filesystem trees under testdata/grub2.
var goldenCases = []struct{ dir, config string }{
	{"debian12", "boot/grub/grub.cfg"},
	{"fedora", "boot/grub2/grub.cfg"},
}

func TestGolden(t *testing.T) {
	root := filepath.Join(testenv.RepoRoot(), "testdata", "grub2")
	for _, c := range goldenCases {
		t.Run(c.dir, func(t *testing.T) {
			m, err := Parse(os.DirFS(filepath.Join(root, c.dir)), c.config)
			if err != nil {
				t.Fatal(err)
			}
			golden.JSON(t, filepath.Join(root, c.dir+".golden"), m)
		})
	}
}

func one(t *testing.T, cfg string, files ...string) *entry.Menu {
	t.Helper()
	fsys := fstest.MapFS{"grub.cfg": {Data: []byte(cfg)}}
	for i := 0; i+1 < len(files); i += 2 {
		fsys[files[i]] = &fstest.MapFile{Data: []byte(files[i+1])}
	}
	m, err := Parse(fsys, "grub.cfg")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// The expected command lines below are written from grub-core/lib/cmdline.c
// and loader/i386/linux.c by hand, not from this package's output.
func TestCmdlineQuoting(t *testing.T) {
	cases := []struct{ linux, want string }{
		{`linux /vmlinuz root=/dev/xvda1 ro`, `BOOT_IMAGE=/vmlinuz root=/dev/xvda1 ro`},
		{`linux /vmlinuz`, `BOOT_IMAGE=/vmlinuz`},
		{`linux (hd0,msdos1)/vmlinuz a`, `BOOT_IMAGE=(hd0,msdos1)/vmlinuz a`},
		{`linux /vmlinuz  a   b`, `BOOT_IMAGE=/vmlinuz a b`},
		{`linux /vmlinuz "quoted=a b c" x`, `BOOT_IMAGE=/vmlinuz "quoted=a b c" x`},
		{`linux /vmlinuz 'a"b' c\'d`, `BOOT_IMAGE=/vmlinuz a\"b c\'d`},
		{`linux /vmlinuz a\\b "x\\y"`, `BOOT_IMAGE=/vmlinuz a\\b x\\y`},
		{`linux /vmlinuz 'p=\x2d'`, `BOOT_IMAGE=/vmlinuz p=\\x2d`}, // GRUB 2.06: every backslash escaped (e2e/loader quoting case)
		{`linux "/my kernel" a`, `BOOT_IMAGE="/my kernel" a`},
		{`linux /vmlinuz a=""`, `BOOT_IMAGE=/vmlinuz a=`},
		{`linux /vmlinuz "" b`, `BOOT_IMAGE=/vmlinuz  b`},
		{`linux /vmlinuz $unset b`, `BOOT_IMAGE=/vmlinuz b`},
		{`linux /vmlinuz "$unset" b`, `BOOT_IMAGE=/vmlinuz  b`},
		{`linux /vmlinuz $two b`, `BOOT_IMAGE=/vmlinuz x=1 y=2 b`},
		{`linux /vmlinuz "$two" b`, `BOOT_IMAGE=/vmlinuz "x=1 y=2" b`},
		{`linux /vmlinuz k=${two}z`, `BOOT_IMAGE=/vmlinuz k=x=1 y=2z`},
		{"linux /vmlinuz a\\\n b", `BOOT_IMAGE=/vmlinuz a b`},
		{`linux /vmlinuz "a\qb"`, `BOOT_IMAGE=/vmlinuz a\\qb`},
		{`linux /vmlinuz \$two`, `BOOT_IMAGE=/vmlinuz $two`},
		// Leading blanks of an unquoted value are skipped (argv.c; real
		// GRUB in e2e/loader grub2/while-loop), trailing ones end it.
		{`linux /vmlinuz $lead b`, `BOOT_IMAGE=/vmlinuz i ix b`},
		{`linux /vmlinuz a$lead`, `BOOT_IMAGE=/vmlinuz ai ix`},
		{`linux /vmlinuz $blank b`, `BOOT_IMAGE=/vmlinuz b`},
	}
	for _, c := range cases {
		m := one(t, "two='x=1 y=2'\nlead='  i ix '\nblank='   '\nmenuentry t {\n"+c.linux+"\n}\n")
		if got := m.Entries[0].Cmdline; got != c.want {
			t.Errorf("%s:\n got %q\nwant %q", c.linux, got, c.want)
		}
	}
}

func TestDefaults(t *testing.T) {
	cfg := `
menuentry a --id ida { linux /a }
submenu s --id ids {
  menuentry b { linux /b }
  menuentry c --id idc { linux /c }
}
menuentry d { chainloader +1 }
menuentry e { linux /e }
`
	cases := []struct {
		def, want string
		warn      bool
	}{
		{"", "a", false},
		{"0", "a", false},
		{"1", "b", false},
		{"1>1", "c", false},
		{"ids>idc", "c", false},
		{"s>c", "c", false},
		{"e", "e", false},
		{"3", "e", false},
		{"7", "a", true},
		{"nothing", "a", true},
	}
	for _, c := range cases {
		m := one(t, "set timeout=5\nset default='"+c.def+"'\n"+cfg)
		if got := m.Entries[m.Default].Title; got != c.want {
			t.Errorf("default=%q: got %q want %q (%s)", c.def, got, c.want, m.DefaultReason)
		}
		if hasWarn(m, "default") != c.warn {
			t.Errorf("default=%q: warnings %q", c.def, m.Warnings)
		}
		if m.Unbootable != "" || m.Waits != "" {
			t.Errorf("default=%q: unbootable %q, waits %q", c.def, m.Unbootable, m.Waits)
		}
	}
	// A chainloader default: real GRUB runs it (e2e/loader
	// chainloader-default); vtpmboot must not boot entry a instead.
	m := one(t, "set default=2\n"+cfg)
	if !strings.Contains(m.Unbootable, `"d"`) || !strings.Contains(m.Unbootable, "chainloader") {
		t.Errorf("chainloader default: Unbootable = %q", m.Unbootable)
	}
}

func TestWaitsForPerson(t *testing.T) {
	for _, c := range []struct{ cfg, want string }{
		{"menuentry a { linux /a }", "timeout is never set"},
		{"set timeout=-1\nmenuentry a { linux /a }", `timeout="-1"`},
		{"set timeout=\nmenuentry a { linux /a }", `timeout=""`},
		{"set timeout=soon\nmenuentry a { linux /a }", `timeout="soon"`},
		{"set timeout=0\nmenuentry a { linux /a }", ""},
		{"set timeout=5s\nmenuentry a { linux /a }", ""},
		{"set timeout=5\nset superusers=\nmenuentry a { linux /a }", `entry "a"`},
		{"set timeout=5\nset superusers=root\nmenuentry a --users root { linux /a }", `entry "a"`},
		{"set timeout=5\nset superusers=root\nmenuentry a --unrestricted { linux /a }", ""},
		{"set timeout=5\nset superusers=root\nset default=\"0>0\"\nsubmenu s { menuentry a --unrestricted { linux /a } }", `submenu "s"`},
		{"set timeout=5\nset superusers=root\nset default=\"0>0\"\nsubmenu s --unrestricted { menuentry a --unrestricted { linux /a } }", ""},
	} {
		m := one(t, c.cfg)
		if c.want == "" && m.Waits != "" || !strings.Contains(m.Waits, c.want) {
			t.Errorf("%q: Waits = %q, want %q", c.cfg, m.Waits, c.want)
		}
	}
}

func TestFallbackLoopsRegexp(t *testing.T) {
	m := one(t, `set timeout=0
set fallback="2 1"
set n=
while [ "$n" != "xxx" ]; do set n="${n}x"; done
until [ "$n" = "" ]; do regexp --set=n '^x(x*)$' "$n"; set m="${m}y"; done
regexp --set=1:v --set=2:w '^([a-z]+)-([0-9.]+)$' "linux-6.1"
menuentry a { linux /a n=$n m=$m v=$v w=$w }
menuentry b { linux /b }
submenu s { menuentry c { linux /c } }
menuentry d { linux /d }
`)
	if got := m.Entries[0].Cmdline; got != "BOOT_IMAGE=/a n= m=yyy v=linux w=6.1" {
		t.Errorf("cmdline %q", got)
	}
	// Item 2 is a submenu, so only item 1 is a fallback entry.
	if fmt.Sprint(m.Fallback) != "[1]" {
		t.Errorf("fallback %v", m.Fallback)
	}
	_, err := Parse(fstest.MapFS{"grub.cfg": {Data: []byte("while true; do true; done\nmenuentry a { linux /a }\n")}}, "grub.cfg")
	if err == nil || !strings.Contains(err.Error(), "commands executed") {
		t.Errorf("endless loop: %v", err)
	}
}

func hasWarn(m *entry.Menu, s string) bool {
	for _, w := range m.Warnings {
		if strings.Contains(w, s) {
			return true
		}
	}
	return false
}

func TestSavedEntryFromGrubenv(t *testing.T) {
	env := "# GRUB Environment Block\nsaved_entry=second\n" + strings.Repeat("#", 900)
	cfg := "load_env\nset default=\"${saved_entry}\"\nmenuentry first { linux /a }\nmenuentry second { linux /b x }\n"
	m := one(t, cfg, "grubenv", env)
	if m.Entries[m.Default].Title != "second" {
		t.Fatalf("default %d: %s", m.Default, m.DefaultReason)
	}
	// load_env -f with a whitelist
	m = one(t, "load_env -f /other/env nothing\nset default=\"${saved_entry}\"\nmenuentry first { linux /a }\nmenuentry second { linux /b }\n", "other/env", env)
	if m.Default != 0 {
		t.Fatalf("whitelist ignored: %s", m.DefaultReason)
	}
}

func TestBadInput(t *testing.T) {
	cases := []struct{ cfg, want string }{
		{"menuentry 'x {\n linux /a\n}\n", "grub.cfg:1: unterminated single quote"},
		{"menuentry x {\n linux \"/a\n}\n", "grub.cfg:2: unterminated double quote"},
		{"menuentry x {\n linux /a\n", "grub.cfg:1: menuentry: missing closing }"},
		{"if true; then\n menuentry x { linux /a }\n", "grub.cfg:1: if without matching \"fi\""},
		{"}\n", "grub.cfg:1: unexpected }"},
		{"\x00\x01\xff\xfe garbage\n", "no bootable menu entries"},
		{"", "grub.cfg: no bootable"},
		{"menuentry x { linux /a ${unterminated }\n", "grub.cfg"},
		{"source /grub.cfg\n", "nested deeper"},
		{"function f { f }\nf\nmenuentry x { linux /a }\n", "nested deeper"},
		{strings.Repeat("if true; then\n", 100), "nested deeper"},
	}
	for _, c := range cases {
		_, err := Parse(fstest.MapFS{"grub.cfg": {Data: []byte(c.cfg)}}, "grub.cfg")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want error containing %q", c.cfg, err, c.want)
		}
	}
	_, err := Parse(fstest.MapFS{"grub.cfg": {Data: []byte("menuentry 'x {\n")}}, "grub.cfg")
	var se *entry.SyntaxError
	if !errors.As(err, &se) || se.Line != 1 || se.File != "grub.cfg" {
		t.Errorf("want *entry.SyntaxError at grub.cfg:1, got %#v", err)
	}
}

func TestSelfReferentialVariables(t *testing.T) {
	// Doubling a variable in a loop must hit the size limit, not eat memory.
	cfg := "x=a\nfor i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do x=\"$x$x\"; done\nx=$x\nmenuentry t { linux /a $x }\n"
	_, err := Parse(fstest.MapFS{"grub.cfg": {Data: []byte(cfg)}}, "grub.cfg")
	if err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Fatalf("got %v", err)
	}
	m := one(t, "x=a\nx=\"$x $x\"\nmenuentry t { linux /a $x }\n")
	if m.Entries[0].Cmdline != "BOOT_IMAGE=/a a a" {
		t.Fatalf("got %q", m.Entries[0].Cmdline)
	}
}

func TestSubmenuContext(t *testing.T) {
	// Unexported variables are not visible inside a submenu, exported ones are.
	cfg := "a=1\nb=2\nexport b\nsubmenu s {\n menuentry t { linux /k a=$a b=$b }\n}\n"
	m := one(t, cfg)
	if got := m.Entries[0].Cmdline; got != "BOOT_IMAGE=/k a= b=2" {
		t.Fatalf("got %q", got)
	}
	if m.Entries[0].MenuPath != "0>0" {
		t.Fatalf("menu path %q", m.Entries[0].MenuPath)
	}
}
