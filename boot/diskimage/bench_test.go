package diskimage

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkExtRead64MiB streams a 64 MiB file out of an ext4 image.
func BenchmarkExtRead64MiB(b *testing.B) {
	benchRead64MiB(b, func(src string) string { return mkext(b, src, "80M") })
}

// BenchmarkXFSRead64MiB streams a 64 MiB file out of an XFS image (V5
// defaults, mkfs.xfs -p: one extent, as a freshly installed kernel has).
func BenchmarkXFSRead64MiB(b *testing.B) {
	benchRead64MiB(b, func(src string) string { return mkxfs(b, src, "100M") })
}

// The image is opened again for each read: one Image is one guest's
// boot, and its work budget (4 GiB of file data) would otherwise run out
// after 64 reads. Opening reads a superblock and the root inode.
func benchRead64MiB(b *testing.B, mkfs func(src string) string) {
	src := b.TempDir()
	f, _ := os.Create(filepath.Join(src, "big"))
	chunk := randBytes(5, 1<<20)
	for range 64 {
		f.Write(chunk)
	}
	f.Close()
	img := mkfs(src)
	b.SetBytes(64 << 20)
	b.ResetTimer()
	for range b.N {
		im, err := Open(img)
		if err != nil {
			b.Fatal(err)
		}
		fh, err := im.Partitions()[0].FS.Open("big")
		if err != nil {
			b.Fatal(err)
		}
		if n, err := io.Copy(io.Discard, fh); err != nil || n != 64<<20 {
			b.Fatal(n, err)
		}
		im.Close()
	}
}

// BenchmarkExtStat is the metadata path the budget charges most often:
// a lookup three directories deep, the last one of 2000 entries (an
// htree read linearly), on ext4. Each iteration opens the image, as a
// boot does, and stats 100 names.
func BenchmarkExtStat(b *testing.B) {
	src := b.TempDir()
	for i := range 2000 {
		writeFile(b, filepath.Join(src, "usr", "lib", "many", fmt.Sprintf("entry-with-a-longish-name-%04d", i)), []byte("x"))
	}
	img := mkext(b, src, "32M")
	b.ResetTimer()
	for range b.N {
		im, err := Open(img)
		if err != nil {
			b.Fatal(err)
		}
		fsys := im.Partitions()[0].FS
		for i := range 100 {
			if _, err := fs.Stat(fsys, fmt.Sprintf("usr/lib/many/entry-with-a-longish-name-%04d", i*20)); err != nil {
				b.Fatal(err)
			}
		}
		im.Close()
	}
}

// BenchmarkBudgetCharge is the accounting's own cost, once per read or
// cached-block touch: compare it with a 4 KiB read from the page cache
// (BenchmarkPageCacheRead4KiB).
func BenchmarkBudgetCharge(b *testing.B) {
	bg := newBudget("bench")
	bg.metaLimit = 1 << 62
	for range b.N {
		if err := bg.charge(false, 4096); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPageCacheRead4KiB(b *testing.B) {
	p := filepath.Join(b.TempDir(), "f")
	writeFile(b, p, randBytes(1, 1<<20))
	f, err := os.Open(p)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for i := range b.N {
		if _, err := f.ReadAt(buf, int64(i%256)*4096); err != nil {
			b.Fatal(err)
		}
	}
}
