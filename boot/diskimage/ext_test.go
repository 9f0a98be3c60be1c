package diskimage

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/vtpmboot/vtpmboot/internal/testenv"
)

func TestExtVariants(t *testing.T) {
	src := sourceTree(t, true, true)
	for _, tc := range []struct {
		name, typ string
		opts      []string
	}{
		{"ext4-default", "ext4", nil},
		{"ext4-1k", "ext4", []string{"-b", "1024"}},
		{"ext4-32bit", "ext4", []string{"-O", "^64bit"}},
		{"ext4-inline", "ext4", []string{"-O", "inline_data"}},
		{"ext4-inode128", "ext4", []string{"-I", "128"}},
		{"ext4-depth", "ext4", []string{"-b", "1024", "-O", "^flex_bg"}},
		{"ext3", "ext3", []string{"-t", "ext3"}},
		{"ext2", "ext2", []string{"-t", "ext2"}},
		{"ext2-1k", "ext2", []string{"-t", "ext2", "-b", "1024"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := mkext(t, src, "48M", tc.opts...)
			// e2fsck -D rebuilds large directories as htree indexes, which
			// mkfs -d does not do itself.
			testenv.NeedCommands(t, "e2fsck", "debugfs")
			sh(t, "sh", "-c", "e2fsck -fyD "+img+" >/dev/null 2>&1; test $? -le 1")
			if tc.typ != "ext2" || true {
				st := sh(t, "debugfs", "-R", "stat /many", img)
				if !strings.Contains(st, "Flags: 0x") || !hasIndexFlag(st) {
					t.Fatalf("/many is not an htree directory:\n%s", st)
				}
			}
			_, p := openBare(t, img)
			if p.Type != tc.typ {
				t.Errorf("Type = %q, want %q", p.Type, tc.typ)
			}
			if n := compareTree(t, src, p.FS, true); n < 200 {
				t.Errorf("compared %d files", n)
			}
			checkLinks(t, p.FS)
			checkSparse(t, p.FS)
			if err := fstest.TestFS(mustSub(t, p.FS, "sizes"), "f4097.bin", "f0.bin"); err != nil {
				t.Error(err)
			}
		})
	}
}

func hasIndexFlag(debugfsStat string) bool {
	i := strings.Index(debugfsStat, "Flags: 0x")
	var flags uint32
	for _, c := range debugfsStat[i+9:] {
		switch {
		case c >= '0' && c <= '9':
			flags = flags<<4 | uint32(c-'0')
		case c >= 'a' && c <= 'f':
			flags = flags<<4 | uint32(c-'a'+10)
		default:
			return flags&0x1000 != 0
		}
	}
	return false
}

func checkLinks(t *testing.T, fsys fs.FS) {
	t.Helper()
	cfg, _ := fs.ReadFile(fsys, "boot/grub/grub.cfg")
	readme, _ := fs.ReadFile(fsys, "README.TXT")
	for name, want := range map[string][]byte{
		"rel-link": cfg, "abs-link": cfg, "boot/up-link": readme, "escape-link": readme,
		"dir-link/grub.cfg": cfg, "long-link": cfg, "abs-dir/x/and/deeper/x": []byte("deep\n"),
	} {
		got, err := fs.ReadFile(fsys, name)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("ReadFile(%q) = %q, %v; want %q", name, got, err, want)
		}
	}
	for _, name := range []string{"escape-none", "dangling-link"} {
		if _, err := fs.ReadFile(fsys, name); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("ReadFile(%q) err = %v, want ErrNotExist", name, err)
		}
	}
	for _, name := range []string{"loop-a", "self"} {
		_, err := fs.ReadFile(fsys, name)
		if err == nil || !strings.Contains(err.Error(), "symlinks") {
			t.Errorf("ReadFile(%q) err = %v, want a symlink-loop error", name, err)
		}
	}
	if tgt, err := fs.ReadLink(fsys, "long-link"); err != nil || !strings.HasSuffix(tgt, "boot/grub/grub.cfg") || len(tgt) < 60 {
		t.Errorf("ReadLink(long-link) = %q, %v", tgt, err)
	}
	if st, err := fs.Lstat(fsys, "abs-link"); err != nil || st.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("Lstat(abs-link) = %v, %v", st, err)
	}
	if st, err := fs.Stat(fsys, "dir-link"); err != nil || !st.IsDir() {
		t.Errorf("Stat(dir-link) = %v, %v", st, err)
	}
}

func checkSparse(t *testing.T, fsys fs.FS) {
	t.Helper()
	want := make([]byte, 3<<20)
	copy(want, "start")
	copy(want[1<<20+7:], "middle")
	want[len(want)-1] = 'E'
	got, err := fs.ReadFile(fsys, "sparse.img")
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("sparse.img: %d bytes, %v; mismatch", len(got), err)
	}
	f, _ := fsys.Open("sparse.img")
	defer f.Close()
	ra := f.(io.ReaderAt)
	b := make([]byte, 10)
	if _, err := ra.ReadAt(b, 1<<20+5); err != nil || string(b) != "\x00\x00middle\x00\x00" {
		t.Errorf("ReadAt in sparse file = %q, %v", b, err)
	}
	sk := f.(io.Seeker)
	if pos, err := sk.Seek(-1, io.SeekEnd); err != nil || pos != 3<<20-1 {
		t.Errorf("Seek = %d, %v", pos, err)
	}
}

func TestExtLargeFileSHA256(t *testing.T) {
	src := t.TempDir()
	data := randBytes(7, 24<<20+17)
	writeFile(t, filepath.Join(src, "big"), data)
	for _, opts := range [][]string{nil, {"-t", "ext2", "-b", "1024"}} {
		// 1 KiB ext2 blocks push a 24 MiB file into double-indirect blocks.
		img := mkext(t, src, "40M", opts...)
		_, p := openBare(t, img)
		f, err := p.FS.Open("big")
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			t.Fatal(err)
		}
		if got, want := h.Sum(nil), sha256.Sum256(data); !bytes.Equal(got, want[:]) {
			t.Errorf("%v: sha256 %x, want %x", opts, got, want)
		}
	}
}

// TestExtTripleIndirect makes a sparse ext2 file whose last block sits in
// the triple-indirect range (1 KiB blocks: beyond 12+256+65536 blocks).
func TestExtTripleIndirect(t *testing.T) {
	src := t.TempDir()
	p := filepath.Join(src, "tri")
	f, _ := os.Create(p)
	off := int64(12+256+65536+300) * 1024
	f.WriteAt([]byte("triple"), off)
	f.WriteAt([]byte("double"), (12+256+1000)*1024)
	f.Close()
	img := mkext(t, src, "8M", "-t", "ext2", "-b", "1024")
	_, part := openBare(t, img)
	fh, err := part.FS.Open("tri")
	if err != nil {
		t.Fatal(err)
	}
	ra := fh.(io.ReaderAt)
	for o, w := range map[int64]string{off: "triple", (12 + 256 + 1000) * 1024: "double", 5000: "\x00\x00\x00\x00\x00\x00"} {
		b := make([]byte, 6)
		if _, err := ra.ReadAt(b, o); err != nil && err != io.EOF || string(b) != w {
			t.Errorf("ReadAt(%d) = %q, %v; want %q", o, b, err, w)
		}
	}
}

// TestExtUninitExtent: fallocate makes unwritten extents, which must read as zeros.
func TestExtUninitExtent(t *testing.T) {
	testenv.NeedCommands(t, "debugfs", "fallocate")
	src := t.TempDir()
	img := mkext(t, src, "8M")
	// debugfs's fallocate marks the extents unwritten while their blocks
	// keep whatever was there; fill them first so zeros are proven, not luck.
	junk := filepath.Join(t.TempDir(), "junk")
	writeFile(t, junk, bytes.Repeat([]byte{0xAA}, 1<<20))
	sh(t, "debugfs", "-w", "-R", "write "+junk+" junk", img)
	sh(t, "debugfs", "-w", "-R", "rm junk", img)
	cmds := filepath.Join(t.TempDir(), "cmds")
	writeFile(t, cmds, []byte("write /dev/null pre\nfallocate pre 0 255\nsif pre size 1048576\n"))
	sh(t, "debugfs", "-w", "-f", cmds, img)
	st := sh(t, "debugfs", "-R", "stat pre", img)
	if !strings.Contains(st, "[u]") && !strings.Contains(st, "Uninit") {
		t.Logf("debugfs stat:\n%s", st)
	}
	_, p := openBare(t, img)
	got, err := fs.ReadFile(p.FS, "pre")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1<<20 || !bytes.Equal(got, make([]byte, 1<<20)) {
		t.Errorf("unwritten extent: %d bytes, non-zero content", len(got))
	}
}

func mustSub(t *testing.T, fsys fs.FS, dir string) fs.FS {
	t.Helper()
	s, err := fs.Sub(fsys, dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
