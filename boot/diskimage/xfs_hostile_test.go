package diskimage

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	osexec "os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/vtpmboot/vtpmboot/internal/testenv"
)

// xfsPatch edits an image with xfs_db in expert mode. "write -d" writes
// invalid values and then recomputes the CRCs, which is what an attacker
// can do too: the structural checks, not the CRCs, must refuse these.
// "write -c" leaves the CRC stale.
func xfsPatch(t testing.TB, img string, cmds ...string) {
	t.Helper()
	args := []string{"-x"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out := sh(t, "xfs_db", append(args, img)...)
	if regexp.MustCompile(`not found|bad option|invalid option|unknown|no current|cannot`).MatchString(out) {
		t.Fatalf("xfs_db %v: %s", cmds, out)
	}
}

// xfsIno is a path's inode number according to xfs_db.
func xfsIno(t testing.TB, img, path string) uint64 {
	t.Helper()
	out := xfsDB(t, img, "path "+path, "p v3.inumber")
	n, err := strconv.ParseUint(xfsField(t, out, "v3.inumber"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// gptDisks returns a function that puts a filesystem image (at most
// 60 MiB) into partition 1 of a GPT disk, so errors must name the
// partition. sfdisk makes the table once; each disk is a sparse copy with
// only the image's non-zero 64 KiB chunks written, which takes
// milliseconds where dd bs=512 took half a second.
func gptDisks(t *testing.T) func(t *testing.T, fsImg string) string {
	t.Helper()
	testenv.NeedCommands(t, "sfdisk")
	tmpl := filepath.Join(t.TempDir(), "gpt.img")
	sh(t, "truncate", "-s", "64M", tmpl)
	sh(t, "sh", "-c", "printf 'label: gpt\\nstart=2048, size=122880, type=L\\n' | sfdisk -q "+tmpl)
	var layout sfdiskJSON
	if err := json.Unmarshal([]byte(sh(t, "sfdisk", "--json", tmpl)), &layout); err != nil {
		t.Fatal(err)
	}
	if ps := layout.PartitionTable.Partitions; len(ps) != 1 || ps[0].Start != 2048 {
		t.Fatalf("sfdisk layout %+v", layout)
	}
	return func(t *testing.T, fsImg string) string {
		t.Helper()
		disk := filepath.Join(t.TempDir(), "disk.img")
		sh(t, "cp", "--sparse=always", tmpl, disk)
		src, err := os.Open(fsImg)
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		dst, err := os.OpenFile(disk, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer dst.Close()
		buf := make([]byte, 64<<10)
		zero := make([]byte, len(buf))
		for off := int64(0); ; off += int64(len(buf)) {
			n, err := src.ReadAt(buf, off)
			if n > 0 && !bytes.Equal(buf[:n], zero[:n]) {
				if _, err := dst.WriteAt(buf[:n], 2048*512+off); err != nil {
					t.Fatal(err)
				}
			}
			if err == io.EOF {
				return disk
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
}

// openPart1 opens a disk image and returns its partition 1.
func openPart1(t *testing.T, img string) Partition {
	t.Helper()
	im, err := Open(img)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { im.Close() })
	for _, p := range im.Partitions() {
		if p.Index == 1 {
			return p
		}
	}
	t.Fatalf("no partition 1 in %+v", im.Partitions())
	return Partition{}
}

// copyFile copies an image keeping its holes (most of it is holes).
func copyFile(t *testing.T, src string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), filepath.Base(src))
	sh(t, "cp", "--sparse=always", src, p)
	return p
}

// wantCorrupt checks the one error: it names the image's partition and
// the problem, and wraps ErrCorrupt.
func wantCorrupt(t *testing.T, err error, parts ...string) {
	t.Helper()
	wantErr(t, err, append([]string{"disk.img partition 1"}, parts...)...)
	if err != nil && !errors.Is(err, ErrCorrupt) {
		t.Errorf("%v does not wrap ErrCorrupt", err)
	}
}

func TestHostileXFS(t *testing.T) {
	testenv.NeedCommands(t, "xfs_db", "sfdisk")
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "kernel"), randBytes(3, 20000))
	writeFile(t, filepath.Join(src, "d", "e", "f", "x"), []byte("x\n"))
	for i := range 40 {
		writeFile(t, filepath.Join(src, "blockdir", "entry-with-a-longish-name-"+strconv.Itoa(i)), []byte("y"))
	}
	os.Symlink("kernel", filepath.Join(src, "lnk"))
	// Two AGs of 6144 blocks: 2^13 AG block numbers, so there are
	// numbers past each AG's end.
	base := mkxfs(t, src, "48M", "-d", "agcount=2")
	fresh := func(t *testing.T) string { return copyFile(t, base) }
	inGPT := gptDisks(t)
	ino := func(t *testing.T, img, p string) string { return strconv.FormatUint(xfsIno(t, img, p), 10) }

	t.Run("directory-loop", func(t *testing.T) {
		img := fresh(t)
		// d's entry "e" names d itself: d/e/e/e/... forever.
		xfsPatch(t, img, "path /d", "write -d u3.sfdir3.list[0].inumber.i4 "+ino(t, img, "/d"))
		p := openPart1(t, inGPT(t, img))
		_, err := fs.ReadFile(p.FS, "d/e/f/x")
		wantCorrupt(t, err, `directory cycle at "e"`)
		walked := 0
		err = fs.WalkDir(p.FS, ".", func(_ string, _ fs.DirEntry, err error) error {
			walked++
			return err
		})
		wantCorrupt(t, err, "directory cycle")
		if walked > 100 {
			t.Errorf("walk visited %d entries before stopping", walked)
		}
	})
	sb := xfsDB(t, base, "sb 0", "p agblocks agblklog")
	agb, _ := strconv.Atoi(xfsField(t, sb, "agblocks"))
	agblklog, _ := strconv.Atoi(xfsField(t, sb, "agblklog"))
	// AG 0, block agblocks+10: inside AG 0's block number space
	// (2^agblklog) but past its end.
	if agb+10 >= 1<<agblklog {
		t.Fatalf("%d blocks per AG leave no gap below 2^%d", agb, agblklog)
	}
	// Extent btrees come from the kernel-written image: mkfs never makes one.
	v51k := kernelImage(t, "v5-1k")
	fragRoot := xfsField(t, xfsDB(t, v51k, "path /frag/fragmented", "p u3.bmbt.ptrs[1]"), "u3.bmbt.ptrs[1]")
	const frag, node = "path /frag/fragmented", "addr u3.bmbt.ptrs[1]" // the level-1 node under the root
	kernelIno := ino(t, base, "/kernel")
	for _, tc := range []struct {
		name  string
		img   string   // base (mkfs.xfs -p) or v51k (kernel)
		patch []string // xfs_db -x commands
		op    string   // "read", "readdir", "stat", "readlink" of path, or "open" (the partition's own error)
		path  string
		want  []string
		// unsupported: the error wraps ErrUnsupported, not ErrCorrupt.
		unsupported bool
	}{
		{"extent-outside-ag", base, []string{"path /kernel", "write -d u3.bmx[0].startblock " + strconv.Itoa(agb+10)}, "read", "kernel", []string{"kernel", "outside the filesystem or its AG"}, false},
		{"extent-outside-filesystem", base, []string{"path /kernel", "write -d u3.bmx[0].startblock 4503599627370000"}, "read", "kernel", []string{"kernel", "outside the filesystem or its AG"}, false},
		{"extent-on-ag-headers", base, []string{"path /kernel", "write -d u3.bmx[0].startblock 0"}, "read", "kernel", []string{"outside the filesystem or its AG"}, false},
		{"negative-size", base, []string{"path /kernel", "write -d core.size -- -5"}, "stat", "kernel", []string{"kernel", "inode " + kernelIno, "size"}, false},
		{"huge-directory", base, []string{"path /blockdir", "write -d core.size 1099511627776"}, "readdir", "blockdir", []string{"blockdir", "beyond the directory data space"}, false},
		{"shortform-size-past-fork", base, []string{"path /d", "write -d core.size 5000"}, "readdir", "d", []string{"local format with size 5000"}, false},
		{"symlink-size", base, []string{"path /lnk", "write -d core.size 400"}, "read", "lnk", []string{"lnk", "local format with size 400"}, false},
		// Still inside the fork: the target now ends in NULs.
		{"symlink-nul", base, []string{"path /lnk", "write -d core.size 300"}, "readlink", "lnk", []string{"lnk", "target contains NUL"}, false},
		{"absurd-extent-count", base, []string{"path /kernel", "write -d core.nextents 1000000"}, "read", "kernel", []string{"1000000 extents but the data fork holds at most 21"}, false},
		{"absurd-shortform-count", base, []string{"path /d", "write -d u3.sfdir3.hdr.count 200"}, "readdir", "d", []string{"shortform entry 1 runs past"}, false},
		{"absurd-block-directory-count", base, []string{"path /blockdir", "dblock 0", "write -d btail.count 4000000000"}, "readdir", "blockdir", []string{"claims 4000000000 leaf entries"}, false},
		{"absurd-agcount", base, []string{"sb 0", "write -d agcount 1000000"}, "open", "", []string{"xfs superblock", "in 1000000 AGs"}, false},
		// Consistent geometry, just far larger than the partition.
		{"dblocks-past-partition", base, []string{"sb 0", "write -d dblocks 1000000000", "write -d agcount " + strconv.Itoa((1000000000+agb-1)/agb)}, "open", "", []string{"truncated image?"}, false},
		{"unknown-incompat-feature", base, []string{"sb 0", "write -d features_incompat 0x1000b"}, "open", "", []string{"incompatible features 0x10000", "guestmount --ro", "ro,norecovery"}, true},
		{"misdirected-inode", base, []string{"path /kernel", "write -d v3.inumber 999"}, "read", "kernel", []string{"records inode number 999"}, false},
		{"crc-inode", base, []string{"path /kernel", "write -c core.uid 5"}, "read", "kernel", []string{"inode " + kernelIno + ": CRC mismatch"}, false},
		{"crc-superblock", base, []string{"sb 0", "write -c imax_pct 50"}, "open", "", []string{"xfs superblock", "CRC mismatch"}, false},
		{"crc-directory-block", base, []string{"path /blockdir", "dblock 0", "write -c bhdr.bestfree[0].length 8"}, "readdir", "blockdir", []string{"directory block CRC mismatch"}, false},
		{"realtime-file", base, []string{"path /kernel", "write -d core.realtime 1"}, "read", "kernel", []string{"realtime device"}, true},
		{"bmbt-root-level", v51k, []string{frag, "write -d u3.bmbt.level 1000"}, "read", "frag/fragmented", []string{"frag/fragmented", "extent btree root level 1000"}, false},
		{"bmbt-root-numrecs", v51k, []string{frag, "write -d u3.bmbt.numrecs 60000"}, "read", "frag/fragmented", []string{"extent btree root holds 60000 keys"}, false},
		// The level-1 node's second pointer names the node itself.
		{"bmbt-loop", v51k, []string{frag, node, "write -d ptrs[2] " + fragRoot}, "read", "frag/fragmented", []string{"frag/fragmented", "is at level 1, its parent expects 0 (loop?)"}, false},
		{"bmbt-key-order", v51k, []string{frag, node, "write -d keys[3].startoff 5"}, "read", "frag/fragmented", []string{"extent btree level 1", "out of order"}, false},
		// The first leaf's first record moves past the key its parent
		// gave the next leaf.
		{"bmbt-child-outside-range", v51k, []string{frag, node, "addr ptrs[1]", "write -d recs[1].startoff 100000"}, "read", "frag/fragmented", []string{"out of order or beyond its range"}, false},
		{"bmbt-crc", v51k, []string{frag, node, "write -c leftsib 7"}, "read", "frag/fragmented", []string{"extent btree block", "CRC mismatch"}, false},
		{"bmbt-foreign-owner", v51k, []string{frag, node, "write -d owner 131"}, "read", "frag/fragmented", []string{"belongs to inode 131"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := copyFile(t, tc.img)
			xfsPatch(t, img, tc.patch...)
			p := openPart1(t, inGPT(t, img))
			var err error
			switch tc.op {
			case "read":
				_, err = fs.ReadFile(p.FS, tc.path)
			case "readdir":
				_, err = fs.ReadDir(p.FS, tc.path)
			case "stat":
				_, err = fs.Stat(p.FS, tc.path)
			case "readlink":
				_, err = fs.ReadLink(p.FS, tc.path)
			case "open":
				err = p.Err
			}
			if tc.unsupported {
				wantErr(t, err, append([]string{"disk.img partition 1"}, tc.want...)...)
				if !errors.Is(err, ErrUnsupported) {
					t.Errorf("%v is not ErrUnsupported", err)
				}
				return
			}
			wantCorrupt(t, err, tc.want...)
		})
	}
	t.Run("huge-file", func(t *testing.T) {
		img := fresh(t)
		xfsPatch(t, img, "path /kernel", "write -d core.size 1099511627776")
		checkTiBSparse(t, openPart1(t, inGPT(t, img)).FS, "kernel")
	})
	t.Run("byte-flips", func(t *testing.T) {
		// Flip every byte of the superblock's fields and of the root
		// inode (whose literal area holds the shortform root directory)
		// in turn, and recompute the CRC as an attacker would, so every
		// flip reaches the structural checks; any outcome but a panic or
		// a hang is acceptable. One copy of the image, restored after
		// each flip.
		b, _ := os.ReadFile(base)
		root := int64(xfsIno(t, base, "/")) * 512 // AG 0, 4 KiB blocks, 512-byte inodes: byte = ino * 512
		for _, r := range []struct{ start, end, crc, span int64 }{{0, 264, 224, 512}, {root, root + 512, root + 100, 512}} {
			// fixCRC must reproduce mkfs's own CRC, or every flip below
			// would only test the CRC check.
			orig := append([]byte(nil), b[r.start:r.start+r.span]...)
			if fixCRC(orig, int(r.crc-r.start)); !bytes.Equal(orig, b[r.start:r.start+r.span]) {
				t.Fatalf("fixCRC at %d disagrees with mkfs.xfs", r.crc)
			}
			for off := r.start; off < r.end; off++ {
				if off >= r.crc && off < r.crc+4 {
					continue
				}
				var saved [4]byte
				copy(saved[:], b[r.crc:])
				b[off] ^= 0xA5
				fixCRC(b[r.start:r.start+r.span], int(r.crc-r.start))
				if im, err := New(bytes.NewReader(b), int64(len(b)), "flip"); err == nil {
					exercise(im)
				}
				b[off] ^= 0xA5
				copy(b[r.crc:], saved[:])
			}
		}
	})
	t.Run("truncated", func(t *testing.T) {
		orig, _ := os.ReadFile(base)
		for _, n := range []int{512, 4096, 65536, len(orig) / 2, len(orig) - 1} {
			im, err := New(bytes.NewReader(orig[:n]), int64(n), "trunc.img")
			if err != nil {
				continue
			}
			if p := im.Partitions()[0]; p.Err == nil || !strings.Contains(p.Err.Error(), "trunc.img") {
				t.Errorf("len %d: %v", n, p.Err)
			}
		}
	})
}

// fixCRC recomputes the V5 CRC at off of a metadata buffer.
func fixCRC(b []byte, off int) {
	clear(b[off : off+4])
	binary.LittleEndian.PutUint32(b[off:], crc32.Checksum(b, castagnoli))
}

// TestXFSProtofileRemoteSymlinkV5 documents a bug of mkfs.xfs 6.1: its
// protofile path writes a V5 remote symlink's target without the XSLM
// header (mkfs/proto.c newfile() copies the bare bytes), which
// xfs_repair reports and the kernel refuses; the reader refuses it too,
// and reads the same link on V4, where remote symlinks have no header.
func TestXFSProtofileRemoteSymlinkV5(t *testing.T) {
	testenv.NeedCommands(t, "xfs_repair")
	src := t.TempDir()
	target := strings.Repeat("abcdefgh/", 60) + "end"
	os.Symlink(target, filepath.Join(src, "long"))
	v5 := mkxfs(t, src, "32M")
	// xfs_repair -n exits 1 when it finds a problem.
	out, _ := osexec.Command("xfs_repair", "-n", v5).CombinedOutput()
	if !strings.Contains(string(out), "bad symlink header") {
		t.Fatalf("xfs_repair -n no longer reports the mkfs bug:\n%s", out)
	}
	_, p := openBare(t, v5)
	_, err := fs.ReadLink(p.FS, "long")
	wantErr(t, err, "symlink inode", "bad magic")
	if !errors.Is(err, ErrCorrupt) {
		t.Errorf("%v is not ErrCorrupt", err)
	}
	_, p = openBare(t, mkxfs(t, src, "32M", "-m", "crc=0"))
	if got, err := fs.ReadLink(p.FS, "long"); err != nil || got != target {
		t.Errorf("V4 ReadLink = %q, %v", got, err)
	}
}
