package diskimage

import (
	"bytes"
	"encoding/binary"
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

// sparseImage is a fuzz input decoded as kernelxfs.SparseSectors
// encodes it: listed 512-byte sectors of a size-byte image, the rest
// zeros. The mutator changes the list as well as the bytes.
type sparseImage struct {
	sectors map[int64][]byte
	size    int64
}

func decodeSparse(data []byte, size int64) sparseImage {
	im := sparseImage{sectors: map[int64][]byte{}, size: size}
	if len(data) < 2 {
		return im
	}
	n := int(binary.BigEndian.Uint16(data))
	if 2+4*n > len(data) {
		n = (len(data) - 2) / 4
	}
	body := data[2+4*n:]
	for i := 0; i < n && 512*i < len(body); i++ {
		s := int64(binary.BigEndian.Uint32(data[2+4*i:]))
		if s*512 < size {
			im.sectors[s] = body[512*i : min(512*i+512, len(body))]
		}
	}
	return im
}

func (im sparseImage) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= im.size {
		return 0, io.EOF
	}
	n := len(p)
	if int64(n) > im.size-off {
		n = int(im.size - off)
	}
	clear(p[:n])
	for done := 0; done < n; {
		s, in := (off+int64(done))/512, int((off+int64(done))%512)
		c := min(512-in, n-done)
		if b, ok := im.sectors[s]; ok && in < len(b) {
			copy(p[done:done+c], b[in:])
		}
		done += c
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// xfsSeedSize is what the seeds' superblocks claim.
const xfsSeedSize = 32 << 20

func xfsSeed(t testing.TB, name string) []byte { return gunzipTestdata(t, name+".gz") }

// FuzzXFS feeds mutated XFS images to New and reads everything reachable.
// The seeds are real mkfs.xfs -p images (V5 with 1 KiB blocks, V4 with
// 512-byte blocks: testdata/xfs/fuzz-*.gz, written by
// internal/kernelxfs.FuzzSeeds) reduced to their non-zero sectors, so
// every mutation lands in a superblock, inode, directory or file block
// rather than in 32 MiB of zeros.
func FuzzXFS(f *testing.F) {
	for _, s := range []string{"fuzz-v5-1k", "fuzz-v4"} {
		f.Add(xfsSeed(f, s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		img, err := New(decodeSparse(data, xfsSeedSize), xfsSeedSize, "fuzz.img")
		if err != nil {
			return
		}
		exercise(img)
	})
}
