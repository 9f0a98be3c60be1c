package grub2

import (
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"

	"github.com/vtpmboot/vtpmboot/boot/grub2/grubenv"
	"github.com/vtpmboot/vtpmboot/internal/loadercase"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
)

// FuzzParse runs arbitrary grub.cfg text next to the real grubenv and BLS
// entries of the Fedora tree: it must return a menu or an error, never
// panic or hang.
func FuzzParse(f *testing.F) {
	root := filepath.Join(testenv.RepoRoot(), "testdata", "grub2")
	for _, c := range goldenCases {
		if b, err := os.ReadFile(filepath.Join(root, c.dir, c.config)); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("menuentry x { linux /a \"b c\" 'd' $x ${y} }"))
	// The real-loader corpus (e2e/loader): configs real GRUB 2.06 booted.
	cases, err := loadercase.LoadCorpus(testenv.RepoRoot(), loadercase.GRUB2)
	if err != nil {
		f.Fatal(err)
	}
	for _, c := range cases {
		if _, b := c.MainConfig(); b != nil {
			f.Add(b)
		}
	}
	base := fstest.MapFS{}
	fed := filepath.Join(root, "fedora")
	filepath.Walk(fed, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			rel, _ := filepath.Rel(fed, p)
			b, _ := os.ReadFile(p)
			base[filepath.ToSlash(rel)] = &fstest.MapFile{Data: b}
		}
		return nil
	})
	f.Fuzz(func(t *testing.T, cfg []byte) {
		fsys := fstest.MapFS{}
		for k, v := range base {
			fsys[k] = v
		}
		fsys["boot/grub2/grub.cfg"] = &fstest.MapFile{Data: cfg}
		m, err := Parse(fsys, "boot/grub2/grub.cfg")
		if err == nil && (m.Default < 0 || m.Default >= len(m.Entries)) {
			t.Fatalf("default %d out of range", m.Default)
		}
	})
}

func FuzzGrubenv(f *testing.F) {
	root := filepath.Join(testenv.RepoRoot(), "testdata", "grub2")
	for _, p := range []string{"debian12/boot/grub/grubenv", "fedora/boot/grub2/grubenv"} {
		if b, err := os.ReadFile(filepath.Join(root, p)); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		grubenv.Parse(b)
	})
}
