package diskimage

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"math/rand"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/vtpmboot/vtpmboot/internal/testenv"
)

func sh(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func writeFile(t testing.TB, p string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func randBytes(seed int64, n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

// sourceTree builds the directory every filesystem test copies into an
// image. bigDir adds 2000 files (htree); links adds symlinks (ext only).
func sourceTree(t testing.TB, bigDir, links bool) string {
	t.Helper()
	d := t.TempDir()
	for i, n := range []int{0, 1, 59, 60, 61, 100, 1023, 1024, 1025, 4095, 4096, 4097, 65536, 300000} {
		writeFile(t, filepath.Join(d, "sizes", fmt.Sprintf("f%d.bin", n)), randBytes(int64(i), n))
	}
	writeFile(t, filepath.Join(d, "boot", "vmlinuz-6.1.0-test"), randBytes(99, 2<<20+123))
	writeFile(t, filepath.Join(d, "boot", "grub", "grub.cfg"), []byte("menuentry 'Debian' {\n linux /boot/vmlinuz root=/dev/xvda1\n}\n"))
	writeFile(t, filepath.Join(d, "README.TXT"), []byte("upper\n"))
	writeFile(t, filepath.Join(d, "a long file name with spaces.conf"), []byte("lfn\n"))
	writeFile(t, filepath.Join(d, "deep", "er", "and", "deeper", "x"), []byte("deep\n"))
	if bigDir {
		for i := 0; i < 2000; i++ {
			writeFile(t, filepath.Join(d, "many", fmt.Sprintf("entry-with-a-longish-name-%04d", i)), []byte(fmt.Sprint(i)))
		}
	}
	if links {
		// A 3 MiB sparse file: data at 0, 1 MiB+7 and the last byte.
		sp := filepath.Join(d, "sparse.img")
		f, err := os.Create(sp)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteAt([]byte("start"), 0)
		f.WriteAt([]byte("middle"), 1<<20+7)
		f.WriteAt([]byte("E"), 3<<20-1)
		f.Close()
		for name, target := range map[string]string{
			"rel-link":      "boot/grub/grub.cfg",
			"abs-link":      "/boot/grub/grub.cfg",
			"boot/up-link":  "../README.TXT",
			"escape-link":   "../../../../../README.TXT",
			"escape-none":   "../../../etc/shadow",
			"loop-a":        "loop-b",
			"loop-b":        "loop-a",
			"dir-link":      "boot/grub",
			"long-link":     strings.Repeat("./", 40) + "boot/grub/grub.cfg",
			"boot/vmlinuz":  "vmlinuz-6.1.0-test",
			"abs-dir/x":     "/deep/er",
			"self":          "self",
			"dangling-link": "no/such/file",
		} {
			os.MkdirAll(filepath.Dir(filepath.Join(d, name)), 0o755)
			if err := os.Symlink(target, filepath.Join(d, name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	return d
}

// mkext builds an ext image from src with mkfs.ext4 -d.
func mkext(t testing.TB, src, size string, opts ...string) string {
	t.Helper()
	testenv.NeedCommands(t, "mkfs.ext4")
	img := filepath.Join(t.TempDir(), "fs.img")
	args := append([]string{"-q", "-F", "-d", src}, opts...)
	args = append(args, img, size)
	sh(t, "mkfs.ext4", args...)
	return img
}

// mkfat builds a FAT image of sizeKiB with mkfs.vfat -F bits and mcopy.
func mkfat(t testing.TB, src string, bits, sizeKiB int) string {
	t.Helper()
	testenv.NeedCommands(t, "mkfs.vfat", "mcopy")
	img := filepath.Join(t.TempDir(), "fat.img")
	sh(t, "mkfs.vfat", "-C", "-F", fmt.Sprint(bits), img, fmt.Sprint(sizeKiB))
	ents, _ := os.ReadDir(src)
	args := []string{"-i", img, "-s"}
	for _, e := range ents {
		args = append(args, filepath.Join(src, e.Name()))
	}
	sh(t, "mcopy", append(args, "::/")...)
	return img
}

// compareTree checks every regular file, directory listing and symlink of
// src against fsys, byte for byte, through Open/Read, ReadDir and
// ReadLink, and returns how many files it compared. In directories of
// more than 100 entries only names ending in 7 are opened: each lookup is
// a linear scan.
func compareTree(t *testing.T, src string, fsys fs.FS, ignoreLostFound bool) int {
	t.Helper()
	n := 0
	big := map[string]bool{}
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		rel = filepath.ToSlash(rel)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			want, _ := os.Readlink(p)
			if got, err := fs.ReadLink(fsys, rel); err != nil || got != want {
				t.Errorf("ReadLink(%q) = %q, %v; want %q", rel, got, err, want)
			}
		case d.IsDir():
			want, _ := os.ReadDir(p)
			big[rel] = len(want) > 100
			if rel == "." && ignoreLostFound {
				want = append(want, fakeLostFound{})
				sort.Slice(want, func(i, j int) bool { return want[i].Name() < want[j].Name() })
			}
			got, err := fs.ReadDir(fsys, rel)
			if err != nil {
				t.Errorf("ReadDir(%q): %v", rel, err)
				return nil
			}
			if len(got) != len(want) {
				t.Errorf("ReadDir(%q): %d entries, want %d", rel, len(got), len(want))
			}
			for i := range min(len(got), len(want)) {
				if got[i].Name() != want[i].Name() || got[i].Type() != want[i].Type() {
					t.Errorf("ReadDir(%q)[%d] = %q %v, want %q %v", rel, i, got[i].Name(), got[i].Type(), want[i].Name(), want[i].Type())
					break
				}
			}
		default:
			if big[path.Dir(rel)] && !strings.HasSuffix(rel, "7") {
				return nil
			}
			want, _ := os.ReadFile(p)
			f, err := fsys.Open(rel)
			if err != nil {
				t.Errorf("Open(%q): %v", rel, err)
				return nil
			}
			defer f.Close()
			got, err := io.ReadAll(f)
			if err != nil {
				t.Errorf("read %q: %v", rel, err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%q: %d bytes (sha256 %x), want %d (sha256 %x)", rel, len(got), sha256.Sum256(got), len(want), sha256.Sum256(want))
			}
			st, err := f.Stat()
			if err != nil || st.Size() != int64(len(want)) {
				t.Errorf("Stat %q: %v size %d want %d", rel, err, st.Size(), len(want))
			}
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func openBare(t testing.TB, img string) (*Image, Partition) {
	t.Helper()
	im, err := Open(img)
	if err != nil {
		t.Fatalf("Open(%s): %v", img, err)
	}
	t.Cleanup(func() { im.Close() })
	ps := im.Partitions()
	if len(ps) != 1 || ps[0].Index != 0 || ps[0].Name != "whole disk" {
		t.Fatalf("partitions = %+v, want one whole-disk filesystem", ps)
	}
	if ps[0].Err != nil {
		t.Fatalf("whole disk: %v", ps[0].Err)
	}
	return im, ps[0]
}

type fakeLostFound struct{ fs.DirEntry }

func (fakeLostFound) Name() string      { return "lost+found" }
func (fakeLostFound) IsDir() bool       { return true }
func (fakeLostFound) Type() fs.FileMode { return fs.ModeDir }

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
