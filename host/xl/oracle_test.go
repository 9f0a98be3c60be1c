package xl

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vtpmboot/vtpmboot/internal/testenv"
)

// The oracle is Xen's own libxlutil (Debian libxen-dev) driven by a small C
// program, testdata/xl/oracle/xlu-oracle.c: our parser must agree with it on
// which configs are valid, on every setting's value, on numbers, and on
// every disk spec.

var (
	oracleOnce sync.Once
	oracleBin  string
	oracleErr  error
)

func oracle(t *testing.T) string {
	t.Helper()
	testenv.NeedCommands(t, "cc")
	testenv.NeedFile(t, "/usr/include/libxlutil.h", "apt-get install libxen-dev")
	oracleOnce.Do(func() {
		// libxlu aborts on some inputs (flex "scanner jammed"); a core
		// dump per abort would stall the differential fuzzer.
		syscall.Setrlimit(syscall.RLIMIT_CORE, &syscall.Rlimit{})
		dir, err := os.MkdirTemp("", "xlu-oracle")
		if err != nil {
			oracleErr = err
			return
		}
		oracleBin = filepath.Join(dir, "xlu-oracle")
		src := filepath.Join(testenv.RepoRoot(), "testdata", "xl", "oracle", "xlu-oracle.c")
		out, err := exec.Command("cc", "-O", "-Wall", "-o", oracleBin, src, "-lxlutil", "-lxenlight").CombinedOutput()
		if err != nil {
			oracleErr = fmt.Errorf("build oracle: %v\n%s", err, out)
		}
	})
	if oracleErr != nil {
		t.Fatal(oracleErr)
	}
	return oracleBin
}

func hexq(s string) string { return `"` + hex.EncodeToString([]byte(s)) + `"` }

func oracleValue(v Value) string {
	if !v.IsList {
		return hexq(v.Str)
	}
	parts := make([]string, len(v.List))
	for i, e := range v.List {
		parts[i] = oracleValue(e)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// ourOracleView renders our parse in the oracle's output format.
func ourOracleView(c *Config, keys []string) string {
	var b strings.Builder
	b.WriteString("ok\n")
	for _, k := range keys {
		v, ok := c.Value(k)
		if !ok {
			continue
		}
		fmt.Fprintf(&b, "val %s = %s\n", k, oracleValue(v))
		if !v.IsList {
			if n, _, err := c.Int(k); err == nil {
				fmt.Fprintf(&b, "long %s %d\n", k, n)
			} else {
				fmt.Fprintf(&b, "long %s err\n", k)
			}
			continue
		}
		if k != "disk" {
			continue
		}
		items, _ := c.List(k)
		for i, spec := range items {
			d, err := parseDiskSyntax(spec)
			if err != nil {
				fmt.Fprintf(&b, "disk %d err\n", i)
				continue
			}
			rw, cd := 0, 0
			if d.Access == "rw" {
				rw = 1
			}
			if d.CDROM() {
				cd = 1
			}
			spec := d.Specification
			if spec == "xen" {
				spec = "unknown" // libxl fills in the default later
			}
			target := d.Target
			fmt.Fprintf(&b, "disk %d ok target=%s format=%s vdev=%s rw=%d cdrom=%d script=%s backend=%s spec=%s\n",
				i, hexq(target), d.Format, hexq(d.Vdev), rw, cd, hexq(d.Script), hexq(d.Backend), spec)
		}
	}
	return b.String()
}

// runOracle parses path with libxlu; keys are the settings to print.
func runOracle(t *testing.T, bin, path string, keys []string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, append([]string{path}, keys...)...).Output()
	if ctx.Err() != nil {
		data, _ := os.ReadFile(path)
		t.Fatalf("oracle hung on %s: %q", path, data)
	}
	if ee, ok := err.(*exec.ExitError); ok && !ee.Exited() {
		// flex's "scanner jammed" abort (e.g. on a NUL byte): xl dies too.
		return "error " + ee.String()
	}
	if err != nil {
		t.Fatalf("oracle on %s: %v", path, err)
	}
	return string(out)
}

// vdevOK filters disks whose vdev libxl's parser accepts but our LinuxName
// does not model; libxlu itself does not look at vdev syntax.
func agree(t *testing.T, bin, path string, data []byte) {
	t.Helper()
	c, perr := Parse(path, data)
	keys := []string{"name", "type", "builder", "kernel", "ramdisk", "extra", "root", "cmdline", "disk", "vtpm", "memory"}
	if perr == nil {
		keys = append(keys, c.Keys()...)
		sort.Strings(keys)
		keys = dedup(keys)
	}
	want := runOracle(t, bin, path, keys)
	if strings.HasPrefix(want, "error") {
		if perr == nil {
			t.Errorf("%s: libxlu rejects it (%s) but we parsed it", path, strings.TrimSpace(want))
		}
		return
	}
	if perr != nil {
		t.Errorf("%s: libxlu accepts it but we say: %v", path, perr)
		return
	}
	got := ourOracleView(c, keys)
	if got != want {
		t.Errorf("%s: differs from libxlu\n--- ours\n%s--- libxlu\n%s", path, got, want)
	}
}

func dedup(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

func TestAgreesWithLibxlu(t *testing.T) {
	bin := oracle(t)
	files, _ := filepath.Glob(filepath.Join(testenv.RepoRoot(), "testdata", "xl", "*.cfg"))
	bad, _ := filepath.Glob(filepath.Join(testenv.RepoRoot(), "testdata", "xl", "bad", "*.cfg"))
	files = append(files, bad...)
	if len(files) < 10 {
		t.Fatalf("only %d test configs found", len(files))
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		agree(t, bin, f, data)
	}
}

// Small hand-written inputs that probe the lexer's corners against libxlu.
func TestAgreesWithLibxluCorners(t *testing.T) {
	bin := oracle(t)
	inputs := []string{
		"a = 1",
		"a = 1\n",
		"a = 1;;\n;b = 2",
		"a = [\n]\n",
		"a = [ 1, ]\n",
		"a = [ 1 ,\n\n 2\n ,\n ]\n",
		"a = [ [ ], [ [ 'x' ] ] ]\n",
		"a = 'x'\na += 'y'\na += 'z'\n",
		"a += 'y'\n",
		"a = [1]\na += [2]\na = [3]\na += [4]\n",
		"a = 1\na += 2\n",
		"a = 0x1f\nb = 017\nc = 09\nd = 0x\ne = 1abc\nf = 12x\n",
		"a = 12g\n",
		"a=\"\\\\ \\' \\\" \\a\\b\\f\\n\\r\\t\\v\"\n",
		"a = \"\\q\"\n",
		"a = 'it''s'\n",
		"a_b9 = 1\n",
		"a.b = 1\nd. = 2\n",
		"a-b = 1\n",
		".a = 1\n",
		"a = 1\nb",
		"a = 1\n#",
		"a = 1 +",
		"a = 1\n\"",
		"a = 1\r",
		"9a = 1\n",
		"a = -1\n",
		"a = \"\"\n",
		"a = [ , 1 ]\n",
		"a = [ 1 2 ]\n",
		"a\n= 1\n",
		"a =\n 1\n",
		"a = 1 # c\n#\n\n",
		"a = [ 1, # c\n 2 ]\n",
		"a = \"x\" ; b = \"y\" c = 1\n",
		"\n\n\na = 1\n\n",
		"a = [ 'x',\n 'y' ] ; b = 2\n",
		"a = 1\x00\n",
		"a = \"\x00\"\n",
		"a = \"\xff\xfe\"\n",
		"a = [ 'disk' ]\nb = 1\n]\n",
		"disk = [ 'phy:/dev/vg/lv,xvda,w', 'file:/x.img,xvdb,r', 'tap:aio:/y,xvdc,w', 'tap2:tapdisk:aio:/z,xvdd,w' ]\n",
		"disk = [ '/x,,hda', '/x,raw,hdb,rw', 'format=raw, vdev=hdc, access=rw, target=/a,b,c', 'raw:/x,hdd,w' ]\n",
		"disk = [ '/i.iso,,hdc,cdrom', '/i.iso,,hdc,,cdrom', '/i.iso,raw,hdc,devtype=cdrom', 'raw:/i.iso,hdc:cdrom,ro', ',hdc:cdrom,r' ]\n",
		"disk = [ '/x,xvda,w', 'foo:/x,xvda,w', 'qed:/x,xvda', '/x,raw,xvda,rw,extra', 'vdev=xvda', '/x,raw' ]\n",
		"disk = [ 'vdev=xvda,target=/x', 'target=/x,vdev=xvda', '/a=b,raw,xvda', 'bogus=1,/x,raw,xvda', 'vdev=xvda, format=qcow2, format=raw, target=/x' ]\n",
		"disk = [ 'iscsi:iqn.x:y,xvda,w', 'nbd:host:1234,xvda,w', 'drbd:res0,xvda,w', 'script=block-foo,/x,raw,xvda' ]\n",
		"disk = [ 'backendtype=qdisk,specification=virtio,/x,raw,xvda', 'backendtype=nope,/x,raw,xvda', 'discard,no-discard,direct-io-safe,/x,raw,xvda' ]\n",
		"disk = [ ',,xvda', '/x,,xvda,', '/x,,xvda,r,', ' /x , raw , xvda , rw ', '/x,raw,xvda:disk,w', '/x,raw,xvda:floppy,w' ]\n",
		"disk = [ 'cdrom,vdev=hdc', 'devtype=disk,/x,raw,xvda', 'devtype=tape,/x,raw,xvda', 'access=x,/x,raw,xvda', 'format=,vdev=xvda,target=/x' ]\n",
	}
	dir := t.TempDir()
	for i, in := range inputs {
		path := filepath.Join(dir, fmt.Sprintf("c%02d.cfg", i))
		if err := os.WriteFile(path, []byte(in), 0o644); err != nil {
			t.Fatal(err)
		}
		agree(t, bin, path, []byte(in))
	}
}
