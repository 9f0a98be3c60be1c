package diskimage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/vtpmboot/vtpmboot/internal/testenv"
)

// exercise reads everything reachable in every partition, bounding each
// file's read so a (legitimately) huge sparse file cannot stall the test.
// It fails only by panicking or hanging, which is the point.
func exercise(img *Image) {
	for _, p := range img.Partitions() {
		if p.FS == nil {
			continue
		}
		// Shared directories can make a tree exponentially large, and a
		// corrupt inode can claim a huge sparse file: bound entries and
		// bytes so one input costs milliseconds, not seconds, and the
		// fuzzer explores instead of reading zeros.
		budget, bytesLeft := 2000, int64(4<<20)
		fs.WalkDir(p.FS, ".", func(path string, d fs.DirEntry, err error) error {
			if budget--; budget < 0 || bytesLeft <= 0 {
				return fs.SkipAll
			}
			if err != nil || d.IsDir() {
				return nil
			}
			d.Info()
			fs.Stat(p.FS, path)
			fs.ReadLink(p.FS, path)
			if f, err := p.FS.Open(path); err == nil {
				n, _ := io.Copy(io.Discard, io.LimitReader(f, min(bytesLeft, 256<<10)))
				bytesLeft -= n + 1
				f.Close()
			}
			return nil
		})
	}
}

// imap asks debugfs where an inode lives: independent of our own reader.
func imap(t *testing.T, img, path string) int64 {
	t.Helper()
	out := sh(t, "debugfs", "-R", "imap "+path, img)
	m := regexp.MustCompile(`located at block (\d+), offset (0x[0-9a-f]+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("debugfs imap %s: %s", path, out)
	}
	blk, _ := strconv.ParseInt(m[1], 10, 64)
	off, _ := strconv.ParseInt(m[2], 0, 64)
	return blk*4096 + off
}

func patch(t *testing.T, img string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// checkTiBSparse: a file whose inode claims 1 TiB, more than its blocks
// map, is sparse, as in the kernel: Stat says 1 TiB and the tail reads as
// zeros, streamed, with nothing allocated for it. Size limits are the
// caller's (entry.MaxKernelSize).
func checkTiBSparse(t *testing.T, fsys fs.FS, name string) {
	t.Helper()
	st, err := fs.Stat(fsys, name)
	if err != nil || st.Size() != 1<<40 {
		t.Fatalf("Stat = %v, %v", st, err)
	}
	f, err := fsys.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 16)
	if _, err := f.(io.ReaderAt).ReadAt(b, 1<<40-16); err != nil || !bytes.Equal(b, make([]byte, 16)) {
		t.Errorf("ReadAt tail = %x, %v", b, err)
	}
}

func TestHostileExt(t *testing.T) {
	testenv.NeedCommands(t, "debugfs")
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "kernel"), randBytes(3, 200000))
	writeFile(t, filepath.Join(src, "dir", "a"), []byte("a"))
	base := mkext(t, src, "4M", "-b", "4096")
	fresh := func() string {
		p := filepath.Join(t.TempDir(), "h.img")
		b, _ := os.ReadFile(base)
		writeFile(t, p, b)
		return p
	}

	t.Run("1TiB-inode", func(t *testing.T) {
		img := fresh()
		sh(t, "debugfs", "-w", "-R", "sif kernel size 1099511627776", img)
		_, p := openBare(t, img)
		checkTiBSparse(t, p.FS, "kernel")
	})
	t.Run("huge-dir", func(t *testing.T) {
		img := fresh()
		sh(t, "debugfs", "-w", "-R", "sif dir size 1099511627776", img)
		_, p := openBare(t, img)
		_, err := fs.ReadDir(p.FS, "dir")
		wantErr(t, err, "directory inode", "larger than the filesystem")
	})
	t.Run("extent-depth-1000", func(t *testing.T) {
		img := fresh()
		patch(t, img, imap(t, img, "kernel")+0x28+6, binary.LittleEndian.AppendUint16(nil, 1000))
		_, p := openBare(t, img)
		_, err := fs.ReadFile(p.FS, "kernel")
		wantErr(t, err, "kernel", "extent tree depth 1000")
	})
	t.Run("rec_len-0", func(t *testing.T) {
		img := fresh()
		out := sh(t, "debugfs", "-R", "blocks dir", img)
		m := regexp.MustCompile(`(?m)^(\d+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatal(out)
		}
		blk, _ := strconv.ParseInt(m[1], 10, 64)
		patch(t, img, blk*4096+4, []byte{0, 0})
		_, p := openBare(t, img)
		_, err := fs.ReadDir(p.FS, "dir")
		wantErr(t, err, "whole disk", "rec_len 0")
		_, err = fs.ReadFile(p.FS, "dir/a")
		wantErr(t, err, "rec_len 0")
	})
	t.Run("superblock-blocks-count", func(t *testing.T) {
		img := fresh()
		patch(t, img, 1024+4, []byte{0xff, 0xff, 0xff, 0x7f})
		im, err := Open(img)
		if err != nil {
			t.Fatal(err)
		}
		defer im.Close()
		wantErr(t, im.Partitions()[0].Err, "whole disk", "truncated image")
	})
	t.Run("gdt-inode-table", func(t *testing.T) {
		img := fresh()
		patch(t, img, 4096+8, []byte{0xff, 0xff, 0xff, 0x0f})
		im, err := Open(img)
		if err != nil {
			t.Fatal(err)
		}
		defer im.Close()
		wantErr(t, im.Partitions()[0].Err, "root directory", "inode table")
	})
	t.Run("byte-flips", func(t *testing.T) {
		// Flip every byte of the superblock and the first group descriptors
		// in turn; any outcome but a panic or hang is acceptable.
		orig, _ := os.ReadFile(base)
		for off := 1024; off < 4096+256; off++ {
			b := append([]byte(nil), orig...)
			b[off] ^= 0xA5
			if im, err := New(bytes.NewReader(b), int64(len(b)), "flip"); err == nil {
				exercise(im)
			}
		}
	})
	t.Run("truncated", func(t *testing.T) {
		orig, _ := os.ReadFile(base)
		for _, n := range []int{0, 511, 512, 1500, 2048, 4096, 8192, 65536, len(orig) / 2, len(orig) - 1} {
			im, err := New(bytes.NewReader(orig[:n]), int64(n), "trunc.img")
			if err != nil {
				if !strings.Contains(err.Error(), "trunc.img") {
					t.Errorf("len %d: error does not name the image: %v", n, err)
				}
				continue
			}
			p := im.Partitions()[0]
			if p.Err == nil {
				t.Errorf("len %d: truncated filesystem accepted", n)
			} else if !strings.Contains(p.Err.Error(), "trunc.img") {
				t.Errorf("len %d: %v does not name the image", n, p.Err)
			}
		}
	})
}

func TestHostileFAT(t *testing.T) {
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "kernel"), randBytes(4, 20000))
	img := mkfat(t, src, 16, 16384)
	orig, _ := os.ReadFile(img)
	_, p := openBare(t, img)
	f := p.FS.(*vfs).b.(*fatFS)
	// Point the kernel's first cluster at itself: a one-cluster cycle.
	dir, _ := f.dirData(&fatNode{dir: true, root: true})
	var first uint16
	for off := 0; off+32 <= len(dir); off += 32 {
		if string(dir[off:off+6]) == "KERNEL" {
			first = binary.LittleEndian.Uint16(dir[off+26:])
		}
	}
	b := append([]byte(nil), orig...)
	binary.LittleEndian.PutUint16(b[f.fatOff+2*int64(first):], first)
	im, err := New(bytes.NewReader(b), int64(len(b)), "cycle.img")
	if err != nil {
		t.Fatal(err)
	}
	_, err = fs.ReadFile(im.Partitions()[0].FS, "kernel")
	wantErr(t, err, "cycle.img whole disk", "cycle")
	for off := 0; off < 512; off++ {
		b := append([]byte(nil), orig...)
		b[off] ^= 0x5A
		if im, err := New(bytes.NewReader(b), int64(len(b)), "flip"); err == nil {
			exercise(im)
		}
	}
}

func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one mentioning %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not mention %q", err, p)
		}
	}
	var pe *fs.PathError
	_ = errors.As(err, &pe)
	_ = fmt.Sprint(pe)
}
