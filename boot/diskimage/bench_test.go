package diskimage

import (
	"io"
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

func benchRead64MiB(b *testing.B, mkfs func(src string) string) {
	src := b.TempDir()
	f, _ := os.Create(filepath.Join(src, "big"))
	chunk := randBytes(5, 1<<20)
	for range 64 {
		f.Write(chunk)
	}
	f.Close()
	img := mkfs(src)
	im, err := Open(img)
	if err != nil {
		b.Fatal(err)
	}
	defer im.Close()
	fsys := im.Partitions()[0].FS
	b.SetBytes(64 << 20)
	b.ResetTimer()
	for range b.N {
		fh, err := fsys.Open("big")
		if err != nil {
			b.Fatal(err)
		}
		if n, err := io.Copy(io.Discard, fh); err != nil || n != 64<<20 {
			b.Fatal(n, err)
		}
	}
}
