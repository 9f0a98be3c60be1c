package diskimage

import (
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/vtpmboot/vtpmboot/internal/kernelxfs"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
)

// gunzipTestdata returns testdata/xfs/<name>, gunzipped.
func gunzipTestdata(t testing.TB, name string) []byte {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "xfs", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gunzip %s: %v", name, err)
	}
	return b
}

// kernelImage writes testdata/xfs/<name>.img.gz (written by the kernel's
// XFS driver, see internal/kernelxfs) to a temporary file.
func kernelImage(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name+".img")
	writeFile(t, p, gunzipTestdata(t, name+".img.gz"))
	return p
}

func kernelManifests(t testing.TB) []kernelxfs.Manifest {
	t.Helper()
	var ms []kernelxfs.Manifest
	if err := json.Unmarshal(gunzipTestdata(t, "manifests.json.gz"), &ms); err != nil {
		t.Fatal(err)
	}
	return ms
}

func fileSHA256(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// matchManifest compares everything the kernel read with what the reader
// reads: every listing, every file's size and SHA-256, every symlink.
func matchManifest(t *testing.T, fsys fs.FS, m kernelxfs.Manifest) {
	t.Helper()
	for _, e := range m.Entries {
		switch e.Type {
		case "dir":
			ents, err := fs.ReadDir(fsys, e.Path)
			if err != nil {
				t.Errorf("%s: ReadDir(%q): %v", m.View, e.Path, err)
				continue
			}
			var names []string
			for _, d := range ents {
				names = append(names, d.Name())
			}
			if strings.Join(names, "/") != strings.Join(e.Names, "/") {
				t.Errorf("%s: ReadDir(%q): %d names, the kernel saw %d", m.View, e.Path, len(names), len(e.Names))
			}
		case "file":
			f, err := fsys.Open(e.Path)
			if err != nil {
				t.Errorf("%s: Open(%q): %v", m.View, e.Path, err)
				continue
			}
			if len(e.Windows) > 0 {
				matchWindows(t, f, e)
				f.Close()
				continue
			}
			h := sha256.New()
			n, err := io.Copy(h, f)
			f.Close()
			if err != nil || n != e.Size || hex.EncodeToString(h.Sum(nil)) != e.SHA256 {
				t.Errorf("%s: %q: %d bytes (%v), sha256 %x; the kernel read %d bytes, sha256 %s", m.View, e.Path, n, err, h.Sum(nil), e.Size, e.SHA256)
			}
		case "symlink":
			got, err := fs.ReadLink(fsys, e.Path)
			if err != nil || got != e.Target {
				t.Errorf("%s: ReadLink(%q) = %q, %v; the kernel read %q", m.View, e.Path, got, err, e.Target)
			}
		}
	}
}

func matchWindows(t *testing.T, f fs.File, e kernelxfs.Entry) {
	t.Helper()
	if st, err := f.Stat(); err != nil || st.Size() != e.Size {
		t.Errorf("%q: Stat = %v, %v; the kernel saw %d bytes", e.Path, st, err, e.Size)
		return
	}
	for _, w := range e.Windows {
		b := make([]byte, w.Len)
		n, err := f.(io.ReaderAt).ReadAt(b, w.Off)
		s := sha256.Sum256(b[:n])
		if (err != nil && err != io.EOF) || int64(n) != w.Len || hex.EncodeToString(s[:]) != w.SHA256 {
			t.Errorf("%q: %d bytes at %d (%v) differ from what the kernel read", e.Path, n, w.Off, err)
		}
	}
}

// dbInt reads an integer field from xfs_db output.
func dbInt(t testing.TB, out, field string) int64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + field + ` = (\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no %s in xfs_db output:\n%s", field, out)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return n
}

// TestXFSKernelImages reads the images the kernel's XFS driver wrote and
// compares every file with what that same driver read back. xfs_db (and
// xfs_logprint) confirm independently that the images hold the structures
// the test is about.
func TestXFSKernelImages(t *testing.T) {
	testenv.NeedCommands(t, "xfs_db", "xfs_logprint")
	ms := kernelManifests(t)
	byImage := map[string][]kernelxfs.Manifest{}
	for _, m := range ms {
		if !strings.HasPrefix(m.Kernel, "6.1.") {
			t.Errorf("%s written by kernel %s, want Debian 12's 6.1", m.Image, m.Kernel)
		}
		byImage[m.Image] = append(byImage[m.Image], m)
	}
	for _, name := range []string{"v5-1k", "v4", "dirty"} {
		t.Run(name, func(t *testing.T) {
			img := kernelImage(t, name)
			before := fileSHA256(t, img)
			_, p := openBare(t, img)
			var views []string
			for _, m := range byImage[name] {
				views = append(views, m.View)
				if m.View != "live" {
					matchManifest(t, p.FS, m)
				}
			}
			if len(views) == 0 {
				t.Fatal("no manifest")
			}
			db := func(cmds ...string) string { return xfsDB(t, img, cmds...) }
			switch name {
			case "v5-1k":
				out := db("path /frag/fragmented", "p core.format core.nextents u3.bmbt.level v3.nrext64")
				if !strings.Contains(out, "core.format = 3") || dbInt(t, out, "u3.bmbt.level") != 2 || dbInt(t, out, "core.nextents") < 1500 || dbInt(t, out, "v3.nrext64") != 1 {
					t.Errorf("frag/fragmented is not a 2-level bmbt with nrext64:\n%s", out)
				}
				// An attribute fork shrinks the data fork: the bmbt root
				// and the extent list sit in di_forkoff*8 bytes.
				if out := db("path /frag/xattr", "p core.format core.forkoff"); !strings.Contains(out, "core.format = 3") || dbInt(t, out, "core.forkoff") == 0 {
					t.Errorf("frag/xattr is not a bmbt next to an attribute fork:\n%s", out)
				}
				if out := db("path /frag/xattr-extents", "p core.format core.forkoff core.nextents"); !strings.Contains(out, "core.format = 2") || dbInt(t, out, "core.forkoff") == 0 || dbInt(t, out, "core.nextents") < 2 {
					t.Errorf("frag/xattr-extents is not an extent list next to an attribute fork:\n%s", out)
				}
				if out := db("path /holes/huge", "bmap"); !strings.Contains(out, "data offset 3221225472 ") {
					t.Errorf("holes/huge has no extent at 3 TiB:\n%s", out)
				}
				if out := db("path /holes/punched", "p core.format"); !strings.Contains(out, "core.format = 3") {
					t.Errorf("holes/punched is not a btree: %s", out)
				}
				if out := db("path /unwritten/prealloc", "bmap"); !strings.Contains(out, "flag 1") || !strings.Contains(out, "flag 0") {
					t.Errorf("unwritten/prealloc lacks written or unwritten extents:\n%s", out)
				}
				if out := db("path /reflink/clone", "p v3.reflink"); !strings.Contains(out, "v3.reflink = 1") {
					t.Errorf("reflink/clone: %s", out)
				}
				for _, l := range []string{"400", "968", "969", "1023"} {
					if out := db("path /links/remote-"+l, "p core.format"); !strings.Contains(out, "core.format = 2") {
						t.Errorf("links/remote-%s is not a remote symlink: %s", l, out)
					}
				}
				if got := xfsDirFormat(t, img, "/dirs/big"); got != "node" {
					t.Errorf("dirs/big is %s, want node", got)
				}
				if out := db("path /dirs/big", "bmap"); !hasDirHole(out) {
					t.Errorf("dirs/big has no freed data block:\n%s", out)
				}
			case "v4":
				out := db("path /frag/fragmented", "p core.format u.bmbt.level")
				if !strings.Contains(out, "core.format = 3") || dbInt(t, out, "u.bmbt.level") != 1 {
					t.Errorf("frag/fragmented is not a bmbt:\n%s", out)
				}
				if got := xfsDirFormat(t, img, "/dirs/big"); got != "btree" {
					t.Errorf("dirs/big is %s, want btree", got)
				}
				if out := db("path /dirs/big", "bmap"); !hasDirHole(out) {
					t.Errorf("dirs/big has no freed data block:\n%s", out)
				}
				if out := db("path /links/remote-1023", "p core.format"); !strings.Contains(out, "core.format = 2") {
					t.Errorf("links/remote-1023: %s", out)
				}
			case "dirty":
				// The log holds committed changes that are not in place, and
				// they matter: the live view differs from what ro,norecovery
				// reads. The reader matched the norecovery view above.
				if out := sh(t, "xfs_logprint", "-t", img); !strings.Contains(out, "<DIRTY>") {
					t.Errorf("xfs_logprint does not call the log dirty:\n%s", out)
				}
				live, nr := kernelxfs.Views(byImage[name])
				if len(live.Entries) == 0 || len(nr.Entries) == 0 {
					t.Fatalf("views %v", views)
				}
				lj, _ := json.Marshal(live.Entries)
				nj, _ := json.Marshal(nr.Entries)
				if string(lj) == string(nj) {
					t.Error("the dirty log changes nothing: the test proves nothing")
				}
				if _, err := fs.Stat(p.FS, "loader/entries/abc-6.2.0.conf"); err == nil {
					t.Error("a file created only in the log is visible")
				}
			}
			if after := fileSHA256(t, img); after != before {
				t.Errorf("image changed while read: sha256 %s, was %s", after, before)
			}
		})
	}
}

// hasDirHole says whether xfs_db bmap output shows a gap between the
// extents of a directory's data space (file offsets below the leaf space).
func hasDirHole(bmap string) bool {
	re := regexp.MustCompile(`data offset (\d+) startblock \d+ \([^)]*\) count (\d+)`)
	var next int64 = -1
	for _, m := range re.FindAllStringSubmatch(bmap, -1) {
		off, _ := strconv.ParseInt(m[1], 10, 64)
		cnt, _ := strconv.ParseInt(m[2], 10, 64)
		if off >= 1<<23 { // the leaf space (2^35 bytes) in blocks of 4 KiB or less
			break
		}
		if next >= 0 && off > next {
			return true
		}
		next = off + cnt
	}
	return false
}
