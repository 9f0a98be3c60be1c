package diskimage

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// FuzzImage feeds mutated images to New and reads everything reachable.
// Seeds are tiny real images built by mkfs/sfdisk at fuzz start, so the
// mutator starts from structures the real tools write.
func FuzzImage(f *testing.F) {
	src := f.TempDir()
	writeFile(f, filepath.Join(src, "k"), randBytes(1, 3000))
	writeFile(f, filepath.Join(src, "d", "i"), []byte("x"))
	os.Symlink("../k", filepath.Join(src, "d", "l"))
	for _, opts := range [][]string{
		{"-b", "1024", "-N", "16", "-O", "^has_journal,^resize_inode"},
		{"-t", "ext2", "-b", "1024", "-N", "16", "-O", "^resize_inode"},
		{"-b", "1024", "-N", "16", "-O", "^has_journal,^resize_inode,inline_data"},
	} {
		img := mkext(f, src, "128K", opts...)
		b, _ := os.ReadFile(img)
		f.Add(b)
	}
	ws := f.TempDir()
	plain := filepath.Join(ws, "plain")
	os.MkdirAll(plain, 0o755)
	writeFile(f, filepath.Join(plain, "k"), randBytes(1, 3000))
	b, _ := os.ReadFile(mkfat(f, plain, 12, 64))
	f.Add(b)
	// A partition table alone: GPT and MBR headers with empty partitions.
	for _, label := range []string{"gpt", "dos"} {
		img := filepath.Join(ws, label)
		sh(f, "truncate", "-s", "100K", img)
		sh(f, "sh", "-c", "printf 'label: "+label+"\\nstart=40, size=100, type=L\\n' | sfdisk -q "+img)
		b, _ := os.ReadFile(img)
		f.Add(b[:40*512])
	}
	// Bare superblocks as mkfs wrote them (testdata/superblocks/README).
	seeds, _ := filepath.Glob(filepath.Join("testdata", "superblocks", "*.img"))
	for _, s := range seeds {
		b, _ := os.ReadFile(s)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		img, err := New(bytes.NewReader(data), int64(len(data)), "fuzz.img")
		if err != nil {
			return
		}
		exercise(img)
		switch img.Table() {
		case "", "mbr", "gpt":
		default:
			t.Fatalf("table %q", img.Table())
		}
		for _, p := range img.Partitions() {
			checkIdent(t, p)
			if p.FS != nil {
				if f, err := p.FS.Open("k"); err == nil {
					io.Copy(io.Discard, io.LimitReader(f, 1<<20))
				}
			}
		}
	})
}
