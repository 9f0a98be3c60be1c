package diskimage

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/vtpmboot/vtpmboot/internal/guestdisk"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
)

// protofile writes guestdisk's mkfs.xfs prototype file for src, so
// mkfs.xfs -p copies the tree into the new filesystem itself.
func protofile(t testing.TB, src string) string {
	t.Helper()
	proto, err := guestdisk.Protofile(src)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "proto")
	writeFile(t, p, []byte(proto))
	return p
}

// mkxfs builds an XFS image of size from src with mkfs.xfs -p. Images
// below mkfs's 300 MB floor need --unsupported, which changes nothing in
// the format (it only lifts the size check).
func mkxfs(t testing.TB, src, size string, opts ...string) string {
	t.Helper()
	testenv.NeedCommands(t, "mkfs.xfs", "xfs_db")
	img := filepath.Join(t.TempDir(), "xfs.img")
	sh(t, "truncate", "-s", size, img)
	args := append([]string{"-q", "-f", "--unsupported"}, opts...)
	if src != "" {
		args = append(args, "-p", protofile(t, src))
	}
	sh(t, "mkfs.xfs", append(args, img)...)
	return img
}

// xfsDB runs read-only xfs_db commands: the independent view of on-disk facts.
func xfsDB(t testing.TB, img string, cmds ...string) string {
	t.Helper()
	args := []string{"-r"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	return sh(t, "xfs_db", append(args, img)...)
}

// xfsField reads "name = value" from xfs_db print output.
func xfsField(t testing.TB, out, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` = (.*)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("xfs_db output has no %s:\n%s", name, out)
	}
	return strings.TrimSpace(m[1])
}

// xfsDirFormat classifies a directory the way xfs_dir2_format's callers
// do, from xfs_db alone: local (shortform), block (one XDB3/XD2B block),
// leaf (a LEAF1 block at the leaf offset), node (a da node there), and
// btree when the data fork itself is a B+tree.
func xfsDirFormat(t testing.TB, img, path string) string {
	t.Helper()
	out := xfsDB(t, img, "path "+path, "p core.format core.size")
	format := xfsField(t, out, "core.format")
	switch {
	case strings.HasPrefix(format, "1 "):
		return "shortform"
	case strings.HasPrefix(format, "3 "):
		return "btree"
	}
	sb := xfsDB(t, img, "sb 0", "p blocksize dirblklog")
	bs, _ := strconv.Atoi(xfsField(t, sb, "blocksize"))
	dlog, _ := strconv.Atoi(xfsField(t, sb, "dirblklog"))
	// xfs_db's dblock counts filesystem blocks, not directory blocks.
	leafFSB := (int64(1) << 35) / int64(bs)
	size, _ := strconv.ParseInt(xfsField(t, out, "core.size"), 10, 64)
	if size == int64(bs)<<dlog {
		return "block"
	}
	leaf := xfsDB(t, img, "path "+path, fmt.Sprintf("dblock %d", leafFSB), "p")
	switch {
	case strings.Contains(leaf, "0x3df1"), strings.Contains(leaf, "0xd2f1"):
		return "leaf"
	case strings.Contains(leaf, "0x3ebe"), strings.Contains(leaf, "0xfebe"):
		return "node"
	}
	t.Fatalf("%s: cannot classify directory:\n%s", path, leaf)
	return ""
}

// xfsDir is a directory of the protofile tree: n files with names of
// about nameLen bytes, each holding a few bytes or empty. Files with data
// get a block each, allocated between the directory's own blocks, which
// fragments the directory into many extents (the btree format); empty
// files only get inodes.
type xfsDir struct {
	n, nameLen int
	data       bool
}

// xfsDirs land in each directory format on a 4 KiB-block V5 filesystem
// (xfs_db decides, in TestXFSProtofile).
var xfsDirs = map[string]xfsDir{
	"few":      {5, 30, true},
	"blockdir": {40, 30, true},
	"leafdir":  {200, 30, true},
	"nodedir":  {600, 200, false},
	"bigdir":   {1500, 30, true},
}

// xfsTree is the source tree of the protofile images: files of many sizes
// around inode-fork, block and extent boundaries, a kernel-sized file,
// symlinks, and the directories of dirs.
func xfsTree(t testing.TB, dirs map[string]xfsDir) string {
	t.Helper()
	d := t.TempDir()
	for i, n := range []int{0, 1, 59, 60, 335, 336, 337, 511, 512, 1023, 1024, 1025, 4095, 4096, 4097, 65535, 65536, 300000, 1 << 20} {
		writeFile(t, filepath.Join(d, "sizes", fmt.Sprintf("f%d.bin", n)), randBytes(int64(i), n))
	}
	writeFile(t, filepath.Join(d, "boot", "vmlinuz-6.1.0-test"), randBytes(99, 5<<20+123))
	writeFile(t, filepath.Join(d, "boot", "grub2", "grub.cfg"), []byte("set default=0\nblscfg\n"))
	writeFile(t, filepath.Join(d, "boot", "loader", "entries", "abc-6.1.0.conf"), []byte("title Test\nlinux /vmlinuz-6.1.0-test\noptions $kernelopts\n"))
	writeFile(t, filepath.Join(d, "deep", "er", "and", "deeper", "x"), []byte("deep\n"))
	for name, spec := range dirs {
		dir := filepath.Join(d, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i := range spec.n {
			fn := fmt.Sprintf("%s-%05d", strings.Repeat("n", max(spec.nameLen-6, 1)), i)
			var data []byte
			if spec.data {
				data = []byte(fmt.Sprint(i, "\n"))
			}
			if err := os.WriteFile(filepath.Join(dir, fn), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name, target := range map[string]string{
		"rel-link":     "boot/grub2/grub.cfg",
		"abs-link":     "/boot/grub2/grub.cfg",
		"boot/up-link": "../deep/er/and/deeper/x",
		"loop-a":       "loop-b",
		"loop-b":       "loop-a",
		"dir-link":     "boot/grub2",
		"boot/vmlinuz": "vmlinuz-6.1.0-test",
	} {
		if err := os.Symlink(target, filepath.Join(d, name)); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// xfsLs lists a directory with xfs_db ls: names only, without . and ..
func xfsLs(t testing.TB, img, path string) []string {
	t.Helper()
	out := xfsDB(t, img, "ls "+path)
	var names []string
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 5 {
			continue
		}
		name := f[5]
		if name == "." || name == ".." {
			continue
		}
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

func TestXFSProtofile(t *testing.T) {
	src := xfsTree(t, xfsDirs)
	for _, tc := range []struct {
		name string
		opts []string
		// features must all appear in xfs_db's version line.
		features string
		// formats are the directory formats xfs_db must find, so each
		// variant proves the formats it claims.
		formats map[string]string
	}{
		{"v5-default", nil, "V5,CRC,FTYPE,FINOBT,SPARSE_INODES,REFLINK,INOBTCNT,BIGTIME", map[string]string{"few": "shortform", "blockdir": "block", "leafdir": "leaf", "nodedir": "node", "bigdir": "btree"}},
		{"v5-nrext64", []string{"-i", "nrext64=1"}, "V5,CRC,REFLINK,BIGTIME,NREXT64", nil},
		{"v5-1k", []string{"-b", "size=1024"}, "V5,CRC", map[string]string{"leafdir": "leaf", "nodedir": "node", "bigdir": "btree"}},
		{"v5-64k-dirblocks", []string{"-n", "size=65536"}, "V5,CRC", map[string]string{"leafdir": "block", "bigdir": "leaf"}},
		{"v5-inode2048-nofeatures", []string{"-i", "size=2048", "-m", "finobt=0,reflink=0,bigtime=0,inobtcount=0", "-i", "sparse=0"}, "V5,CRC,FTYPE", map[string]string{"blockdir": "shortform", "bigdir": "node"}},
		{"v5-rmapbt", []string{"-m", "rmapbt=1"}, "V5,CRC,RMAPBT,REFLINK", nil},
		// 4 KiB sectors: the superblock CRC covers 4 KiB and the AG
		// headers four blocks.
		{"v5-4k-sectors", []string{"-s", "size=4096"}, "V5,CRC,SECTOR", nil},
		{"v4", []string{"-m", "crc=0", "-i", "size=256"}, "V4,FTYPE", map[string]string{"few": "block", "nodedir": "btree"}},
		{"v4-noftype-512", []string{"-m", "crc=0", "-n", "ftype=0", "-b", "size=512", "-i", "size=256"}, "V4", map[string]string{"leafdir": "leaf", "bigdir": "btree"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := mkxfs(t, src, "256M", tc.opts...)
			_, p := openBare(t, img)
			if p.Type != "xfs" {
				t.Fatalf("Type = %q", p.Type)
			}
			version := xfsDB(t, img, "version")
			for _, f := range strings.Split(tc.features, ",") {
				if !regexp.MustCompile(`[=,]\s*` + f + `(,|$|\n)`).MatchString(version) {
					t.Errorf("xfs_db version lacks %s: %s", f, version)
				}
			}
			if strings.Contains(tc.features, "V4") == strings.Contains(version, "CRC") {
				t.Errorf("xfs_db version: %s", version)
			}
			if strings.Contains(tc.features, "NREXT64") {
				// The inodes themselves use the 64-bit extent counter at
				// offset 24 (the field go-xfs-filesystem misread).
				if out := xfsDB(t, img, "path /boot/vmlinuz-6.1.0-test", "p v3.nrext64"); !strings.Contains(out, "v3.nrext64 = 1") {
					t.Errorf("kernel inode does not use nrext64: %s", out)
				}
			}
			if n := compareTree(t, src, p.FS, false); n < 30 {
				t.Errorf("compared %d files", n)
			}
			var names []string
			for d := range xfsDirs {
				names = append(names, d)
			}
			sort.Strings(names)
			for _, d := range names {
				got, err := fs.ReadDir(p.FS, d)
				if err != nil {
					t.Fatal(err)
				}
				var names []string
				for _, e := range got {
					names = append(names, e.Name())
				}
				if want := xfsLs(t, img, "/"+d); strings.Join(names, "\n") != strings.Join(want, "\n") {
					t.Errorf("%s: %d names, xfs_db ls has %d", d, len(names), len(want))
				}
				f := xfsDirFormat(t, img, "/"+d)
				t.Logf("%s: %s", d, f)
				if want, ok := tc.formats[d]; ok && f != want {
					t.Errorf("%s is a %s directory, want %s", d, f, want)
				}
			}
			f, err := p.FS.Open("boot/vmlinuz")
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			b := make([]byte, 16)
			if _, err := f.(io.ReaderAt).ReadAt(b, 5<<20+123-16); err != nil {
				t.Fatal(err)
			}
			if err := fstest.TestFS(mustSub(t, p.FS, "boot/loader"), "entries/abc-6.1.0.conf"); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestXFSFuzzSeeds checks FuzzXFS's seeds are what they claim: expanded
// to a full image, the reader sees what xfs_db sees.
func TestXFSFuzzSeeds(t *testing.T) {
	testenv.NeedCommands(t, "xfs_db")
	for _, s := range []string{"fuzz-v5-1k", "fuzz-v4"} {
		b := xfsSeed(t, s)
		sp := decodeSparse(b, xfsSeedSize)
		img := filepath.Join(t.TempDir(), s+".img")
		f, err := os.Create(img)
		if err != nil {
			t.Fatal(err)
		}
		for sec, data := range sp.sectors {
			f.WriteAt(data, sec*512)
		}
		if err := f.Truncate(xfsSeedSize); err != nil || f.Close() != nil {
			t.Fatal(err)
		}
		im, err := New(sp, xfsSeedSize, s)
		if err != nil {
			t.Fatal(err)
		}
		p := im.Partitions()[0]
		if p.Err != nil {
			t.Fatal(p.Err)
		}
		if got, err := fs.ReadFile(p.FS, "l"); err != nil || string(got) != "blscfg\n" {
			t.Errorf("%s: l -> %q, %v", s, got, err)
		}
		if got, err := fs.ReadFile(p.FS, "k"); err != nil || !bytes.Equal(got, bytes.Repeat([]byte("kernel-"), 430)) {
			t.Errorf("%s: k: %d bytes, %v", s, len(got), err)
		}
		ents, err := fs.ReadDir(p.FS, "b")
		if err != nil {
			t.Fatal(err)
		}
		if want := xfsLs(t, img, "/b"); len(ents) != len(want) || len(want) != 30 {
			t.Errorf("%s: b has %d entries, xfs_db %d", s, len(ents), len(want))
		}
		t.Logf("%s: %d-byte seed (%d sectors), b is a %s directory", s, len(b), len(sp.sectors), xfsDirFormat(t, img, "/b"))
	}
}

// TestXFSASCIICI: on mkfs.xfs -n version=ci names match ignoring ASCII
// case only, as xfs_ascii_ci_compname compares them; elsewhere exactly.
func TestXFSASCIICI(t *testing.T) {
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "Grub.CFG"), []byte("ci\n"))
	writeFile(t, filepath.Join(src, "\u00c9t\u00e9"), []byte("accent\n"))
	ci := mkxfs(t, src, "32M", "-n", "version=ci")
	if !strings.Contains(xfsDB(t, ci, "version"), "ASCII_CI") {
		t.Fatal("xfs_db does not report ASCII_CI")
	}
	_, p := openBare(t, ci)
	if b, err := fs.ReadFile(p.FS, "grub.cfg"); err != nil || string(b) != "ci\n" {
		t.Errorf("grub.cfg on ASCII-CI = %q, %v", b, err)
	}
	if _, err := fs.ReadFile(p.FS, "\u00e9t\u00e9"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("non-ASCII letters folded: %v", err)
	}
	_, p = openBare(t, mkxfs(t, src, "32M"))
	if _, err := fs.ReadFile(p.FS, "grub.cfg"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("case folded without version=ci: %v", err)
	}
}
