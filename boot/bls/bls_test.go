package bls

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/vtpmboot/vtpmboot/internal/golden"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
)

var goldenCases = []struct{ dir, entries string }{
	{"systemd-boot", "loader/entries"},
	{"fedora", "boot/loader/entries"},
}

func TestGolden(t *testing.T) {
	root := filepath.Join(testenv.RepoRoot(), "testdata", "bls")
	for _, c := range goldenCases {
		t.Run(c.dir, func(t *testing.T) {
			m, err := Parse(os.DirFS(filepath.Join(root, c.dir)), c.entries)
			if err != nil {
				t.Fatal(err)
			}
			golden.JSON(t, filepath.Join(root, c.dir+".golden"), m)
		})
	}
}

// Expected orders are rpm's documented vercmp results.
func TestVerCmp(t *testing.T) {
	cases := []struct {
		a, b string
		want int
	}{
		{"1.0", "1.0", 0}, {"1.0", "2.0", -1}, {"2.0", "1.0", 1},
		{"5.14.0-362.24.1", "5.14.0-362.8.1", 1}, {"1.0a", "1.0", 1},
		{"1.0~rc1", "1.0", -1}, {"1.0^", "1.0", 0} /* blscfg's copy predates rpm's caret */, {"1.0+1", "1.0", 1},
		{"010", "10", 0}, {"1.a", "1.1", -1}, {"fc40", "fc39", 1}, {"", "0", -1},
	}
	for _, c := range cases {
		if got := VerCmp(c.a, c.b); got != c.want {
			t.Errorf("VerCmp(%q,%q)=%d want %d", c.a, c.b, got, c.want)
		}
	}
}

func TestGRUBQuirks(t *testing.T) {
	fsys := fstest.MapFS{
		"loader/entries/a-1.0-1.conf":  {Data: []byte("title A\nlinux /a\n\noptions never-read\n")},
		"loader/entries/a-2.0-1.conf":  {Data: []byte("linux /b\noptions one\noptions two\ninitrd /i1\ninitrd /i2 /i3\n")},
		"loader/entries/a-02.0-1.conf": {Data: []byte("linux /dup\n")},
		"loader/entries/noLinux.conf":  {Data: []byte("title x\n")},
		"loader/entries/.hidden.conf":  {Data: []byte("linux /h\n")},
	}
	ents, warns, err := LoadGRUB(fsys, "loader/entries")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range ents {
		ids = append(ids, e.ID)
	}
	// a-02.0-1 sorts before a-2.0-1 by name and so is kept; a-2.0-1 then
	// compares equal and is dropped, as bls_add_entry does.
	if strings.Join(ids, ",") != "a-02.0-1,a-1.0-1" {
		t.Fatalf("order %v warnings %q", ids, warns)
	}
	if ents[1].HasOptions {
		t.Errorf("options after an empty line must not be read: %+v", ents[1])
	}
	if ents[0].Title != "/dup" {
		t.Errorf("title fallback to linux path: %q", ents[0].Title)
	}
}

func TestExpandGRUB(t *testing.T) {
	env := map[string]string{"kernelopts": "root=/x ro", "a_1": "A"}
	look := func(n string) (string, bool) { v, ok := env[n]; return v, ok }
	cases := map[string]string{
		"$kernelopts $tuned_params": "root=/x ro ",
		"x$a_1.y":                   "xA.y",
		"$":                         "",
		"plain":                     "plain",
	}
	for in, want := range cases {
		if got := ExpandGRUB(in, look); got != want {
			t.Errorf("%q: got %q want %q", in, got, want)
		}
	}
}

func TestBadInput(t *testing.T) {
	for name, fsys := range map[string]fstest.MapFS{
		"empty dir":   {"loader/entries/x.txt": {Data: []byte("linux /a")}},
		"garbage":     {"loader/entries/x.conf": {Data: []byte("\x00\xff\x01linux")}},
		"no linux":    {"loader/entries/x.conf": {Data: []byte("title only\n")}},
		"nul in path": {"loader/entries/x.conf": {Data: []byte("linux /a\x00b\n")}},
	} {
		_, err := Parse(fsys, "loader/entries")
		if err == nil || !strings.Contains(err.Error(), "loader/entries") {
			t.Errorf("%s: got %v", name, err)
		}
	}
	_, err := Parse(fstest.MapFS{}, "loader/entries")
	if err == nil || !strings.Contains(err.Error(), "loader/entries") {
		t.Errorf("missing dir: %v", err)
	}
}

func TestSavedEntryNamingNothing(t *testing.T) {
	fsys := fstest.MapFS{
		"loader/entries/a.conf": {Data: []byte("linux /a\n")},
		"grub2/grubenv":         {Data: []byte("# GRUB Environment Block\nsaved_entry=gone\n")},
	}
	m, err := Parse(fsys, "loader/entries")
	if err != nil {
		t.Fatal(err)
	}
	if m.Default != 0 || len(m.Warnings) == 0 {
		t.Fatalf("%+v", m)
	}
}

func FuzzParse(f *testing.F) {
	root := filepath.Join(testenv.RepoRoot(), "testdata", "bls")
	for _, c := range goldenCases {
		ms, _ := filepath.Glob(filepath.Join(root, c.dir, c.entries, "*.conf"))
		for _, p := range ms {
			b, _ := os.ReadFile(p)
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fsys := fstest.MapFS{
			"loader/entries/a-1.conf": {Data: b},
			"loader/entries/a-2.conf": {Data: b},
			"grub2/grubenv":           {Data: []byte("# GRUB Environment Block\nkernelopts=root=/x\n")},
		}
		if m, err := Parse(fsys, "loader/entries"); err == nil && (m.Default < 0 || m.Default >= len(m.Entries)) {
			t.Fatal("default out of range")
		}
		LoadGRUB(fsys, "loader/entries")
	})
}

// TestLoaderConfAndBootCounting: systemd-boot's loader.conf "default"
// glob and "timeout menu-force", and boot counters in file names
// (loader.conf(5), the Boot Loader Spec's boot counting section). No
// oracle runs here (Debian has no systemd-boot for BIOS guests); the
// expected values follow the documents.
func TestLoaderConfAndBootCounting(t *testing.T) {
	ent := func(v string) *fstest.MapFile {
		return &fstest.MapFile{Data: []byte("title " + v + "\nversion " + v + "\nlinux /vmlinuz-" + v + "\n")}
	}
	fsys := fstest.MapFS{
		"loader/entries/debian-6.1.0-13.conf":     ent("6.1.0-13"),
		"loader/entries/debian-6.1.0-18+0-3.conf": ent("6.1.0-18"), // no tries left: bad
		"loader/entries/debian-6.1.0-15+2.conf":   ent("6.1.0-15"),
		"loader/entries/other-1.conf":             ent("1"),
	}
	m, err := Parse(fsys, "loader/entries")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range m.Entries {
		ids = append(ids, e.ID)
	}
	if got := strings.Join(ids, " "); got != "other-1 debian-6.1.0-15 debian-6.1.0-13 debian-6.1.0-18" {
		t.Errorf("order %q (the bad entry last, counters not in ids)", got)
	}
	if m.Default != 0 || m.Waits != "" {
		t.Errorf("default %d waits %q", m.Default, m.Waits)
	}
	fsys["loader/loader.conf"] = &fstest.MapFile{Data: []byte("# systemd-boot\ntimeout 3\ndefault debian-*\n")}
	if m, err = Parse(fsys, "loader/entries"); err != nil {
		t.Fatal(err)
	}
	if e := m.Entries[m.Default]; e.ID != "debian-6.1.0-15" || !strings.Contains(m.DefaultReason, "loader/loader.conf") {
		t.Errorf("default %q (%s)", e.ID, m.DefaultReason)
	}
	fsys["loader/loader.conf"] = &fstest.MapFile{Data: []byte("timeout menu-force\ndefault other-1.conf\n")}
	if m, err = Parse(fsys, "loader/entries"); err != nil {
		t.Fatal(err)
	}
	if m.Entries[m.Default].ID != "other-1" || !strings.Contains(m.Waits, "menu-force") {
		t.Errorf("default %q waits %q", m.Entries[m.Default].ID, m.Waits)
	}
}
