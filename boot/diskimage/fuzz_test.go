package diskimage

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/vtpmboot/vtpmboot/internal/guestdisk"
	"github.com/vtpmboot/vtpmboot/internal/kernelxfs"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
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
		cr := &countingReader{r: bytes.NewReader(data)}
		img, err := New(cr, int64(len(data)), "fuzz.img")
		if err != nil {
			return
		}
		fuzzBudget(img, int64(len(data)))
		exercise(img)
		checkWork(t, img, cr, int64(len(data)))
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
		cr := &countingReader{r: decodeSparse(data, xfsSeedSize)}
		img, err := New(cr, xfsSeedSize, "fuzz.img")
		if err != nil {
			return
		}
		fuzzBudget(img, int64(len(data)))
		exercise(img)
		checkWork(t, img, cr, int64(len(data)))
	})
}

// countingReader counts what is read from the image underneath the
// package, independently of its budget.
type countingReader struct {
	r     io.ReaderAt
	bytes atomic.Int64
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	c.bytes.Add(int64(len(p)))
	return c.r.ReadAt(p, off)
}

// Fuzz inputs run with a budget proportional to their size, so an input
// that amplifies work (a small image that makes a lookup read far more
// than it holds) ends after fuzzMetaPerByte times its size in metadata,
// and the fuzzer keeps exploring instead of stalling on it.
const (
	fuzzMetaPerByte = 64
	fuzzMetaBase    = 1 << 20
	fuzzData        = 8 << 20 // exercise reads at most 4 MiB of file data
	// containerSlack is what New reads before the budget exists (the
	// container probe: the first 4 KiB and the last sector).
	containerSlack = 8 << 10
)

func fuzzBudget(img *Image, size int64) {
	img.b.metaLimit = fuzzMetaBase + fuzzMetaPerByte*size
	img.b.dataLimit = fuzzData
}

// checkWork is the fuzz targets' cost check, a count and not a clock:
// every byte read from the image went through the budget (else a read
// path escapes the accounting and could amplify unbounded), and the total
// stayed within the budget plus one read (so the budget stops work).
func checkWork(t *testing.T, img *Image, cr *countingReader, size int64) {
	t.Helper()
	meta, data := img.WorkUsed()
	read := cr.bytes.Load()
	if read > meta+data+containerSlack {
		t.Fatalf("%d bytes read from the image but only %d metadata + %d data charged to its budget: a read path escapes the budget", read, meta, data)
	}
	if bound := img.b.metaLimit + img.b.dataLimit + maxRead; read > bound {
		t.Fatalf("%d bytes read from a %d-byte input, more than its budget (%d): work is not bounded", read, size, bound)
	}
}

// maxRead is the largest single read the package makes: a 64 KiB XFS
// directory block, or a whole FAT directory (65536 entries of 32 bytes).
const maxRead = maxFATDir

// sparseExtSize is what FuzzSparseExt's images claim: a disk far larger
// than the input, as a sparse image file is.
const sparseExtSize = 64 << 20

// sparseExtSeed is a 64 MiB ext image made by mkfs (4 KiB blocks, so one
// block group and its metadata near the start), optionally tweaked,
// encoded as its non-zero sectors (kernelxfs.SparseSectors).
func sparseExtSeed(t testing.TB, tweak func(img string), opts ...string) []byte {
	t.Helper()
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "k"), randBytes(1, 3000))
	writeFile(t, filepath.Join(src, "d", "i"), []byte("x"))
	img := mkext(t, src, "64M", append([]string{"-b", "4096", "-N", "32", "-O", "^resize_inode"}, opts...)...)
	if tweak != nil {
		tweak(img)
	}
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	var sectors []uint32
	for s := 0; s*512 < len(b); s++ {
		if !bytes.Equal(b[s*512:s*512+512], make([]byte, 512)) {
			sectors = append(sectors, uint32(s))
		}
	}
	return kernelxfs.SparseSectors(b, sectors)
}

// aliasedSeed: the root directory of a 64 MiB ext2 image claims the whole
// filesystem and maps every block to one self-pointing block
// (guestdisk.AliasDir), so each lookup reads 64 MiB of a ~20 KB input.
func aliasedSeed(t testing.TB) []byte {
	t.Helper()
	testenv.NeedCommands(t, "mkfs.ext2", "debugfs")
	return sparseExtSeed(t, func(img string) {
		if _, err := guestdisk.AliasDir(img, "/", sparseExtSize); err != nil {
			t.Fatal(err)
		}
	}, "-t", "ext2")
}

// FuzzSparseExt feeds ext images that claim far more than the input
// holds, as a sparse image file does: the class of issue 18 item 2,
// where work grows with the claimed size, not with the bytes an
// attacker must supply. FuzzImage cannot see it (its image is the input,
// so a lookup reads at most the input). The cost check (checkWork)
// bounds each input's reads by its budget, 64 times its size.
func FuzzSparseExt(f *testing.F) {
	f.Add(aliasedSeed(f))
	f.Add(sparseExtSeed(f, nil, "-t", "ext2"))
	f.Fuzz(func(t *testing.T, data []byte) { fuzzSparseExt(t, data) })
}

func fuzzSparseExt(t *testing.T, data []byte) *Image {
	cr := &countingReader{r: decodeSparse(data, sparseExtSize)}
	img, err := New(cr, sparseExtSize, "fuzz.img")
	if err != nil {
		return nil
	}
	fuzzBudget(img, int64(len(data)))
	exercise(img)
	checkWork(t, img, cr, int64(len(data)))
	return img
}
