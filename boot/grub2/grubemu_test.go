package grub2

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/vtpmboot/vtpmboot/internal/testenv"
)

// TestGRUBTestSemantics evaluates testdata/grubemu/test-exprs.cfg, 92
// test and [ expressions, each adding a 1 or 0 to the command line. The
// expected line is GRUB 2.06's own, recorded from grub-emu
// (test-exprs.cmdline; internal/grubemu's differential test checks it
// against a live grub-emu on every run).
func TestGRUBTestSemantics(t *testing.T) {
	dir := filepath.Join(testenv.RepoRoot(), "testdata", "grubemu")
	cfg, err := os.ReadFile(filepath.Join(dir, "test-exprs.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(dir, "test-exprs.cmdline"))
	if err != nil {
		t.Fatal(err)
	}
	fsys := fstest.MapFS{
		"boot/grub/grub.cfg": {Data: cfg},
		"boot/vmlinuz":       {Data: []byte("k")},
		"boot":               {Mode: 0o755 | os.ModeDir},
	}
	m, err := Parse(fsys, "boot/grub/grub.cfg")
	if err != nil {
		t.Fatal(err)
	}
	got := m.Entries[m.Default].Cmdline
	if w := strings.TrimSuffix(string(want), "\n"); got != w {
		t.Errorf("command line\n got %q\nwant %q (GRUB 2.06)", got, w)
	}
}

// TestUnquotedRedirection: GRUB's lexer makes < > | & tokens no command
// takes; vtpmboot refuses rather than guess GRUB's error recovery.
func TestUnquotedRedirection(t *testing.T) {
	for _, s := range []string{"set default=0>0", "echo a|b", "echo a & b", "[ a < b ]"} {
		fsys := fstest.MapFS{"grub.cfg": {Data: []byte(s + "\nmenuentry a { linux /k }\n")}, "k": {Data: []byte("k")}}
		_, err := Parse(fsys, "grub.cfg")
		if err == nil || !strings.Contains(err.Error(), "unquoted") {
			t.Errorf("%q: err = %v, want an unquoted-token refusal", s, err)
		}
	}
}

// TestTestNesting: a deep "( ( ( ..." is refused with one line, not a
// stack of millions of frames.
func TestTestNesting(t *testing.T) {
	cfg := "if [ " + strings.Repeat("( ", 100000) + "x ] ; then set a=1 ; fi\nmenuentry a { linux /k }\n"
	fsys := fstest.MapFS{"grub.cfg": {Data: []byte(cfg)}, "k": {Data: []byte("k")}}
	_, err := Parse(fsys, "grub.cfg")
	if err == nil || !strings.Contains(err.Error(), "nested deeper") {
		t.Fatalf("err = %v, want a nesting refusal", err)
	}
}
