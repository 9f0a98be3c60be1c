package diskimage

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vtpmboot/vtpmboot/internal/guestdisk"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
)

// checkBudgetErr asserts err is the one budget error for disk, alone.
func checkBudgetErr(t *testing.T, err error, op, name, disk string) {
	t.Helper()
	want := fmt.Sprintf("%s %s: disk %s: work budget exhausted (%d MiB of filesystem metadata read): the filesystem is hostile or corrupt", op, name, disk, MetadataBudget>>20)
	if err == nil || err.Error() != want {
		t.Errorf("%s %s:\n got %v\nwant %s", op, name, err, want)
	}
	if !errors.Is(err, ErrBudget) || !errors.Is(err, ErrCorrupt) {
		t.Errorf("%v: want errors.Is ErrBudget and ErrCorrupt", err)
	}
}

// The finding of issue 18 item 2, built with the real tools: a sparse
// 16 GiB ext2 image, 5 MB on disk, whose root directory's direct, single,
// double and triple indirect pointers all name one self-pointing block
// (guestdisk.AliasDir, set with debugfs). Without a budget every lookup
// of a missing name reads the 16 GiB the directory claims (5.1 s per
// stat here, before the budget); with it the first such lookup stops
// at MetadataBudget, and so does everything after it.
func TestBudgetAliasedExtDir(t *testing.T) {
	testenv.NeedCommands(t, "mkfs.ext2", "debugfs")
	img := filepath.Join(t.TempDir(), "hostile.img")
	sh(t, "truncate", "-s", "16G", img)
	sh(t, "mkfs.ext2", "-q", "-F", "-b", "4096", img)
	p, err := guestdisk.AliasDir(img, "/", 16<<30)
	if err != nil {
		t.Fatal(err)
	}
	// debugfs, not our reader, says every pointer tier maps to P: logical
	// blocks 0 and 11 (direct), 12 (single), 1036 (double) and 1049612
	// (triple indirect, 12+1024+1024²).
	for _, lb := range []int{0, 11, 12, 1036, 1049612, 4194303} {
		out := strings.TrimSpace(sh(t, "debugfs", "-R", fmt.Sprintf("bmap / %d", lb), img))
		if !strings.HasSuffix(out, fmt.Sprint(p)) {
			t.Fatalf("debugfs bmap / %d = %q, want block %d", lb, out, p)
		}
	}
	if used := diskUsage(t, img); used > 16<<20 {
		t.Fatalf("image takes %d bytes on disk; the attack needs only a few MB", used)
	}

	im, err := Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	fsys := im.Partitions()[0].FS
	if fsys == nil {
		t.Fatal(im.Partitions()[0].Err)
	}
	start := time.Now()
	_, err = fs.Stat(fsys, "boot/grub/grub.cfg")
	t.Logf("first stat refused after %v: %v", time.Since(start), err)
	checkBudgetErr(t, err, "stat", "boot/grub/grub.cfg", img)
	meta, data := im.WorkUsed()
	if meta > MetadataBudget+64<<10 || data != 0 {
		t.Errorf("work used: %d bytes metadata, %d data; want the metadata budget (%d) and not much more", meta, data, MetadataBudget)
	}
	// Spent is spent: every later operation on the disk fails alike,
	// whatever it asks for, and reads nothing more.
	_, err = fs.ReadDir(fsys, ".")
	checkBudgetErr(t, err, "open", ".", img)
	_, err = fs.ReadFile(fsys, "grub/grub.cfg")
	checkBudgetErr(t, err, "open", "grub/grub.cfg", img)
	if m2, _ := im.WorkUsed(); m2 > meta+2*hitCost {
		t.Errorf("reads went on after the budget was spent: %d then %d bytes", meta, m2)
	}
}

// diskUsage is the bytes a sparse file occupies, as du counts them.
func diskUsage(t *testing.T, file string) int64 {
	t.Helper()
	out := strings.Fields(sh(t, "du", "-B1", file))
	var n int64
	fmt.Sscan(out[0], &n)
	return n
}

// The budget is per disk, across operations and partitions: a directory
// that costs 128 MiB per missing-name lookup (well under the budget, so
// no single operation is refused) is refused once the lookups add up,
// and then the disk's other, clean partition is refused too, while
// another disk is not.
func TestBudgetPerDisk(t *testing.T) {
	testenv.NeedCommands(t, "mkfs.ext2", "debugfs", "sfdisk")
	const dirSize = 128 << 20
	files := []guestdisk.File{
		{Path: "/boot/grub/grub.cfg", Data: []byte("menuentry x {\n}\n")},
		{Path: "/boot/vmlinuz", Data: randBytes(7, 100000)},
	}
	disk := guestdisk.Disk{Table: "gpt", Partitions: []guestdisk.Partition{
		{FS: "ext2", SizeMB: 136, MkfsArgs: []string{"-b", "4096"}, Files: files, Tweak: func(img string) error {
			_, err := guestdisk.AliasDir(img, "/boot/grub", dirSize)
			return err
		}},
		{FS: "ext2", SizeMB: 8, Files: files},
	}}
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := guestdisk.Build(disk, img); err != nil {
		t.Fatal(err)
	}
	clean := filepath.Join(t.TempDir(), "clean.img")
	if err := guestdisk.Build(guestdisk.Disk{Table: "gpt", Partitions: []guestdisk.Partition{{FS: "ext2", SizeMB: 8, Files: files}}}, clean); err != nil {
		t.Fatal(err)
	}
	im, err := Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	parts := im.Partitions()
	hostile, good := parts[0].FS, parts[1].FS
	if hostile == nil || good == nil {
		t.Fatalf("partitions: %v / %v", parts[0].Err, parts[1].Err)
	}
	if _, err := fs.ReadFile(good, "boot/vmlinuz"); err != nil {
		t.Fatal(err)
	}
	// Each lookup reads the whole claimed directory, dirSize bytes, and
	// touches the cached indirect blocks once or twice per directory
	// block (hitCost each): between MetadataBudget/(dirSize*1.25) and
	// MetadataBudget/dirSize of them fit, the next one does not.
	most, least := MetadataBudget/dirSize, MetadataBudget*4/(dirSize*5)
	for i := 0; ; i++ {
		_, err := fs.Stat(hostile, fmt.Sprintf("boot/grub/missing-%d", i))
		if errors.Is(err, fs.ErrNotExist) {
			if i >= most {
				t.Fatalf("lookup %d of a %d MiB directory not refused: the budget is not per disk", i+1, dirSize>>20)
			}
			continue
		}
		t.Logf("lookup %d refused", i+1)
		if i < least {
			t.Fatalf("lookup %d refused, want at least %d to fit: %v", i+1, least, err)
		}
		checkBudgetErr(t, err, "stat", fmt.Sprintf("boot/grub/missing-%d", i), img)
		break
	}
	_, err = fs.ReadFile(good, "boot/vmlinuz")
	checkBudgetErr(t, err, "open", "boot/vmlinuz", img)

	other, err := Open(clean)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := fs.ReadFile(other.Partitions()[0].FS, "boot/vmlinuz"); err != nil {
		t.Errorf("another disk: %v", err)
	}
}

// File data has its own, larger budget: reading a file costs its bytes,
// and a caller re-reading files in a loop stops at DataBudget. Run with
// a small data limit, since the real one is gigabytes.
func TestBudgetData(t *testing.T) {
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "k"), randBytes(3, 300000))
	im, p := openBare(t, mkext(t, src, "4M"))
	im.b.dataLimit = 1 << 20
	n := 0
	for ; n < 10; n++ {
		b, err := fs.ReadFile(p.FS, "k")
		if err != nil {
			want := fmt.Sprintf("read k: disk %s: work budget exhausted (1 MiB of file data read): the filesystem is hostile or corrupt", im.name)
			if !strings.Contains(err.Error(), want) || !errors.Is(err, ErrBudget) {
				t.Errorf("got %v\nwant %s", err, want)
			}
			break
		}
		if len(b) != 300000 {
			t.Fatalf("read %d bytes", len(b))
		}
	}
	// 3 reads of 300000 bytes fit in 1 MiB, the 4th does not.
	if n != 3 {
		t.Errorf("%d full reads before the refusal, want 3", n)
	}
	if _, err := fs.Stat(p.FS, "k"); !errors.Is(err, ErrBudget) {
		t.Errorf("stat after the data budget was spent: %v", err)
	}
}

// What a real guest costs. The tree is a Debian kernel's /lib/modules
// (4036 files, 396 MiB, from .cache/kernel) plus a /boot with that
// kernel, a 64 MiB initrd and a grub.cfg, in ext4 and XFS images made
// by mkfs. Three measures: what a boot reads (the config, the kernel,
// the initrd), one lookup of the deepest module, and a walk that lists
// every directory, stats every name and reads every file once, far
// more than any boot. The test fails if the walk's metadata is not
// well inside the budget.
func TestBudgetRealTree(t *testing.T) {
	mods := filepath.Join(testenv.RepoRoot(), ".cache", "kernel", "modules")
	kernel := filepath.Join(testenv.RepoRoot(), ".cache", "kernel", "vmlinuz")
	if _, err := os.Stat(mods); err != nil {
		t.Fatalf("the Debian kernel's modules (make kernel): %v", err)
	}
	testenv.NeedCommands(t, "cp", "mkfs.ext4", "mkfs.xfs")
	src := t.TempDir()
	sh(t, "cp", "-a", mods, filepath.Join(src, "lib"))
	writeFile(t, filepath.Join(src, "boot", "initrd.img-6.1.0-test"), randBytes(8, 64<<20))
	sh(t, "cp", kernel, filepath.Join(src, "boot", "vmlinuz-6.1.0-test"))
	writeFile(t, filepath.Join(src, "boot", "grub", "grub.cfg"), []byte(debianGrubCfg))
	deepest := ""
	filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if rel, _ := filepath.Rel(src, p); strings.Count(rel, "/") > strings.Count(deepest, "/") && !d.IsDir() {
			deepest = rel
		}
		return nil
	})
	for _, tc := range []struct {
		name string
		mk   func() string
	}{
		{"ext4", func() string { return mkext(t, src, "700M") }},
		{"xfs", func() string { return mkxfs(t, src, "800M") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := tc.mk()
			im, p := openBare(t, img)
			m0, _ := im.WorkUsed()
			for _, f := range []string{"boot/grub/grub.cfg", "boot/vmlinuz-6.1.0-test", "boot/initrd.img-6.1.0-test"} {
				if _, err := fs.ReadFile(p.FS, f); err != nil {
					t.Fatal(err)
				}
			}
			m1, d1 := im.WorkUsed()
			if _, err := fs.Stat(p.FS, deepest); err != nil {
				t.Fatal(err)
			}
			m2, _ := im.WorkUsed()
			files := 0
			err := fs.WalkDir(p.FS, ".", func(path string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				if _, err := fs.Stat(p.FS, path); err != nil {
					return err
				}
				if d.Type().IsRegular() {
					files++
					f, err := p.FS.Open(path)
					if err != nil {
						return err
					}
					defer f.Close()
					if _, err := io.Copy(io.Discard, f); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			m3, d3 := im.WorkUsed()
			walk := m3 - m2
			t.Logf("%s: open %d KiB metadata; boot (grub.cfg, kernel, initrd) %d KiB metadata, %.1f MiB data; one lookup of %s %d KiB; walk of %d files %.1f MiB metadata (budget %d MiB: margin %.0fx), %.1f MiB data",
				tc.name, m0>>10, (m1-m0)>>10, float64(d1)/(1<<20), deepest, (m2-m1)>>10, files, float64(walk)/(1<<20), MetadataBudget>>20, float64(MetadataBudget)/float64(walk), float64(d3-d1)/(1<<20))
			if files < 4000 {
				t.Errorf("walked %d files, want the whole tree", files)
			}
			if walk*3 > MetadataBudget {
				t.Errorf("a full walk of a real tree takes %d bytes of metadata, more than a third of the budget", walk)
			}
		})
	}
}

// Debian 12's update-grub output, trimmed to what a guest's grub.cfg holds.
const debianGrubCfg = `if [ -s $prefix/grubenv ]; then
  load_env
fi
set default="0"
if [ x"${feature_menuentry_id}" = xy ]; then
  menuentry_id_option="--id"
else
  menuentry_id_option=""
fi
set timeout=5
menuentry 'Debian GNU/Linux' --class debian --class gnu-linux --class gnu --class os $menuentry_id_option 'gnulinux-simple' {
	load_video
	insmod gzio
	insmod part_gpt
	insmod ext2
	echo	'Loading Linux 6.1.0-test ...'
	linux	/boot/vmlinuz-6.1.0-test root=/dev/xvda1 ro quiet
	echo	'Loading initial ramdisk ...'
	initrd	/boot/initrd.img-6.1.0-test
}
`

// The fuzz harness sees the amplification class: the aliased seed, run
// through FuzzSparseExt's body, is stopped by its budget (64 times the
// input's size) with the budget error, and every byte it read was charged.
// Without the budget its reads exceed that bound and checkWork fails the
// input (checked by making budget.charge return nil).
func TestFuzzBudgetSeesAliasing(t *testing.T) {
	seed := aliasedSeed(t)
	img := fuzzSparseExt(t, seed)
	if img == nil {
		t.Fatal("the aliased seed did not open")
	}
	meta, _ := img.WorkUsed()
	if meta < img.b.metaLimit {
		t.Errorf("the aliased seed cost %d bytes of metadata, under its fuzz budget %d: the seed does not exercise the class", meta, img.b.metaLimit)
	}
	_, err := fs.Stat(img.Partitions()[0].FS, "k")
	if !errors.Is(err, ErrBudget) {
		t.Errorf("stat after the fuzz budget: %v", err)
	}
	t.Logf("seed of %d bytes, image of %d MiB: budget %d KiB spent", len(seed), sparseExtSize>>20, img.b.metaLimit>>10)
}

// The same pattern on XFS, made with xfs_db on a real mkfs.xfs image: a
// leaf directory of 64 KiB directory blocks whose data fork is rewritten
// to 117 extents (all its 2048-byte inode holds) that all map one
// directory block. Every block passes the V5 checks (its header names the
// block it is read from, and the owner), so each lookup of a missing
// name reads 117 x 64 KiB; no single lookup is over any bound, and the
// disk's budget stops them after about MetadataBudget / 7.3 MiB. A B+tree
// fork repeats this 251 times per 4 KiB bmbt block.
func TestBudgetAliasedXFSDir(t *testing.T) {
	testenv.NeedCommands(t, "mkfs.xfs", "xfs_db")
	src := t.TempDir()
	for i := range 2000 {
		writeFile(t, filepath.Join(src, "d", fmt.Sprintf("entry-with-a-long-name-to-fill-blocks-%d", i)), nil)
	}
	img := mkxfs(t, src, "2G", "-n", "size=65536", "-i", "size=2048")
	// xfs_db, not our reader, says where the first data block is.
	first := regexp.MustCompile(`data offset 0 startblock (\d+) `).FindStringSubmatch(xfsDB(t, img, "path /d", "bmap -d"))
	if first == nil {
		t.Fatal("xfs_db bmap: no first data block")
	}
	const n = 117
	cmds := []string{"path /d", fmt.Sprintf("write -d core.nextents %d", n), fmt.Sprintf("write -d core.size %d", n*65536)}
	for i := range n {
		cmds = append(cmds, fmt.Sprintf("write -d u3.bmx[%d].startoff %d", i, 16*i), "write -d u3.bmx["+fmt.Sprint(i)+"].startblock "+first[1],
			fmt.Sprintf("write -d u3.bmx[%d].blockcount 16", i), fmt.Sprintf("write -d u3.bmx[%d].extentflag 0", i))
	}
	xfsPatch(t, img, cmds...)
	// xfs_db's inode verifier objects to the aliasing (its exit status
	// says so) but still prints the map.
	out, _ := exec.Command("xfs_db", "-r", "-c", "path /d", "-c", "bmap -d", img).CombinedOutput()
	if got := strings.Count(string(out), "startblock "+first[1]+" "); got != n {
		t.Fatalf("xfs_db bmap: %d extents at block %s, want %d", got, first[1], n)
	}

	im, p := openBare(t, img)
	perLookup := int64(n * 65536)
	most := MetadataBudget / perLookup
	for i := int64(0); ; i++ {
		_, err := fs.Stat(p.FS, fmt.Sprintf("d/missing-%d", i))
		if errors.Is(err, fs.ErrNotExist) {
			if i > most {
				t.Fatalf("lookup %d not refused", i+1)
			}
			continue
		}
		t.Logf("lookup %d refused (each reads %d KiB)", i+1, perLookup>>10)
		if i < most*4/5 {
			t.Fatalf("lookup %d refused, want about %d to fit: %v", i+1, most, err)
		}
		checkBudgetErr(t, err, "stat", fmt.Sprintf("d/missing-%d", i), img)
		break
	}
	if meta, _ := im.WorkUsed(); meta > MetadataBudget+perLookup {
		t.Errorf("%d bytes of metadata read", meta)
	}
}

// FAT chains: every link is checked and a chain cannot revisit a cluster,
// but a chain that alternates between two distant halves of the FAT makes
// each link a fresh 4 KiB read of the FAT window: 1.2 million links (a
// 600 MiB FAT32 volume of 512-byte clusters, its file claiming them all)
// read 4.9 GiB of FAT to open one file. The disk's budget stops the first
// open. mkfs.vfat makes the volume; the chain is written into the first
// FAT as the spec lays it out, and mshowfat (mtools, not our reader)
// confirms it.
func TestBudgetFATChain(t *testing.T) {
	testenv.NeedCommands(t, "mkfs.vfat", "mcopy", "mshowfat")
	dir := t.TempDir()
	img := filepath.Join(dir, "fat.img")
	writeFile(t, filepath.Join(dir, "k"), []byte("hi\n"))
	sh(t, "mkfs.vfat", "-C", "-F", "32", "-s", "1", img, "614400")
	sh(t, "mcopy", "-i", img, filepath.Join(dir, "k"), "::/")
	raw, err := guestdisk.ReadAt(img, 0, 512)
	if err != nil {
		t.Fatal(err)
	}
	le := func(off, n int) int64 {
		var v int64
		for i := n - 1; i >= 0; i-- {
			v = v<<8 | int64(raw[off+i])
		}
		return v
	}
	bps, res, nfats, fatSz, tot := le(11, 2), le(14, 2), le(16, 1), le(36, 4), le(32, 4)
	if raw[13] != 1 || le(44, 4) != 2 {
		t.Fatalf("mkfs.vfat: %d sectors per cluster, root cluster %d", raw[13], le(44, 4))
	}
	dataOff := (res + nfats*fatSz) * bps
	clusters := tot - res - nfats*fatSz
	half := (clusters - 4) / 2
	fat := make([]byte, 4*(clusters+2))
	put := func(c, v int64) {
		fat[4*c], fat[4*c+1], fat[4*c+2], fat[4*c+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
	}
	existing, err := guestdisk.ReadAt(img, res*bps, 16)
	if err != nil {
		t.Fatal(err)
	}
	copy(fat, existing) // the media entries, and the root directory's EOC at cluster 2
	// 3, 3+half, 4, 4+half, ...: consecutive links half the FAT apart.
	links := 2 * half
	prev := int64(-1)
	for i := range half {
		for _, c := range []int64{3 + i, 3 + half + i} {
			if prev >= 0 {
				put(prev, c)
			}
			prev = c
		}
	}
	put(prev, 0x0FFFFFFF)
	guestdisk.Patch(img, res*bps, fat)
	// The root directory entry of K: first cluster 3, size covering every link.
	root, err := guestdisk.ReadAt(img, dataOff, 512)
	if err != nil {
		t.Fatal(err)
	}
	ent := strings.Index(string(root), "K          ")
	if ent < 0 || ent%32 != 0 {
		t.Fatalf("no directory entry for K in the root directory")
	}
	size := links * bps
	guestdisk.Patch(img, dataOff+int64(ent)+20, []byte{0, 0})
	guestdisk.Patch(img, dataOff+int64(ent)+26, []byte{3, 0, byte(size), byte(size >> 8), byte(size >> 16), byte(size >> 24)})
	show := sh(t, "sh", "-c", "mshowfat -i "+img+" ::k | head -c 60")
	if want := fmt.Sprintf("::/k <3> <%d> <4> <%d>", 3+half, 4+half); !strings.HasPrefix(show, want) {
		t.Fatalf("mshowfat: %q, want it to start %q", show, want)
	}

	im, p := openBare(t, img)
	start := time.Now()
	_, err = p.FS.Open("k")
	t.Logf("open of a %d-link alternating chain refused after %v", links, time.Since(start))
	checkBudgetErr(t, err, "open", "k", img)
	if meta, _ := im.WorkUsed(); meta > MetadataBudget+8192 {
		t.Errorf("%d bytes of metadata read", meta)
	}
}
