package xl

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vtpmboot/vtpmboot/internal/golden"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
)

func testdata(parts ...string) string {
	return filepath.Join(append([]string{testenv.RepoRoot(), "testdata", "xl"}, parts...)...)
}

// summary renders what pcrsim uses from a config. Paths are shown relative
// to testdata/xl so goldens do not depend on the checkout location.
func summary(c *Config) string {
	var b strings.Builder
	rel := func(p string) string {
		if r, err := filepath.Rel(testdata(), p); err == nil && !strings.HasPrefix(r, "..") {
			return "<testdata>/" + r
		}
		return p
	}
	b.WriteString(c.Dump())
	b.WriteString("--\n")
	t, err := c.Type()
	fmt.Fprintf(&b, "type: %s %v\n", t, err)
	k, err := c.Kernel()
	fmt.Fprintf(&b, "kernel: %q %v\n", rel(k), err)
	r, err := c.Ramdisk()
	fmt.Fprintf(&b, "ramdisk: %q %v\n", rel(r), err)
	bl, err := c.Bootloader()
	fmt.Fprintf(&b, "bootloader: %q %v\n", bl, err)
	e, err := c.Extra()
	fmt.Fprintf(&b, "extra: %q %v\n", e, err)
	cl, ok, err := c.Cmdline()
	fmt.Fprintf(&b, "cmdline: %q set=%v %v\n", cl, ok, err)
	vt, err := c.VTPMs()
	fmt.Fprintf(&b, "vtpms: %+v %v\n", vt, err)
	ds, err := c.Disks()
	if err != nil {
		fmt.Fprintf(&b, "disks: %v\n", err)
	}
	for _, d := range ds {
		fmt.Fprintf(&b, "disk %s -> %s: target=%q path=%q format=%s access=%s devtype=%s script=%q backend=%q backendtype=%q spec=%s check=%v\n",
			d.Vdev, d.Linux, d.Target, rel(d.Path), d.Format, d.Access, d.Devtype, d.Script, d.Backend, d.BackendType, d.Specification, d.Check())
	}
	order, err := c.DisksInBootOrder()
	var names []string
	for _, d := range order {
		names = append(names, d.Linux)
	}
	fmt.Fprintf(&b, "boot order: %s %v\n", strings.Join(names, " "), err)
	bd, err := c.BootDisk()
	fmt.Fprintf(&b, "boot disk: %s %q %v\n", bd.Linux, rel(bd.Path), err)
	return strings.ReplaceAll(b.String(), testdata()+"/", "<testdata>/")
}

func TestGolden(t *testing.T) {
	files, _ := filepath.Glob(testdata("*.cfg"))
	if len(files) < 5 {
		t.Fatalf("only %d configs in testdata/xl", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			c, err := ParseFile(f)
			if err != nil {
				t.Fatal(err)
			}
			got := summary(c)
			golden.Bytes(t, strings.TrimSuffix(f, ".cfg")+".golden", []byte(got))
		})
	}
}

func TestBadConfigs(t *testing.T) {
	// Line numbers are where xl reports the problem too.
	want := map[string]struct {
		line int
		msg  string
	}{
		"python.cfg":         {2, "Python"},
		"unterminated.cfg":   {2, "unterminated"},
		"missing-comma.cfg":  {3, "expected `,' or `]'"},
		"add-mismatch.cfg":   {3, "can't add [list]"},
		"uppercase.cfg":      {2, "lower case"},
		"two-on-a-line.cfg":  {1, "newline or `;'"},
		"crlf.cfg":           {1, "CRLF"},
		"hex-escape.cfg":     {2, "numeric escape"},
		"no-value.cfg":       {2, "expected a string"},
		"empty-element.cfg":  {2, "expected a string"},
		"comment-at-eof.cfg": {2, "comment at end of file"},
	}
	files, _ := filepath.Glob(testdata("bad", "*.cfg"))
	if len(files) != len(want) {
		t.Errorf("%d bad configs, %d expectations", len(files), len(want))
	}
	for _, f := range files {
		_, err := ParseFile(f)
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("%s: want *SyntaxError, got %v", f, err)
			continue
		}
		w := want[filepath.Base(f)]
		if se.File != f || se.Line != w.line || !strings.Contains(se.Msg, w.msg) {
			t.Errorf("%s: got %q (line %d), want line %d containing %q", f, err, se.Line, w.line, w.msg)
		}
		if !strings.HasPrefix(err.Error(), f+":") {
			t.Errorf("%s: error %q does not start with the file name", f, err)
		}
	}
}

func TestParseFileErrors(t *testing.T) {
	if _, err := ParseFile(testdata("does-not-exist.cfg")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	big := filepath.Join(t.TempDir(), "big.cfg")
	if err := os.WriteFile(big, []byte(strings.Repeat("#\n", MaxConfigSize)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ParseFile(big); err == nil || !strings.Contains(err.Error(), big) {
		t.Errorf("oversized file: %v", err)
	}
}

func mustParse(t *testing.T, src string) *Config {
	t.Helper()
	c, err := Parse("/etc/xen/t.cfg", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The rules of xl's parse_cmdline (tools/xl/xl_parse.c).
func TestCmdline(t *testing.T) {
	for _, tc := range []struct {
		src, want string
		set       bool
	}{
		{``, "", false},
		{`extra = "vtpmboot.entry=1 console=hvc0"`, "vtpmboot.entry=1 console=hvc0", true},
		{`root = "/dev/xvda1"`, "root=/dev/xvda1", true},
		{"root = \"/dev/xvda1 ro\"\nextra = \"quiet\"", "root=/dev/xvda1 ro quiet", true},
		{"root = \"/dev/xvda1\"\nextra = \"\"", "root=/dev/xvda1 ", true},
		{"cmdline = \"a b\"\nroot = \"/dev/xvda1\"\nextra = \"quiet\"", "a b", true},
		{"cmdline = \"\"\nextra = \"quiet\"", "", true},
		{"extra = \"a\"\nextra += \" b\"", "a b", true},
	} {
		got, set, err := mustParse(t, tc.src).Cmdline()
		if err != nil || got != tc.want || set != tc.set {
			t.Errorf("%q: got %q set=%v err=%v, want %q set=%v", tc.src, got, set, err, tc.want, tc.set)
		}
	}
	if _, _, err := mustParse(t, "extra = [ 'a' ]\n").Cmdline(); err == nil || !strings.Contains(err.Error(), "/etc/xen/t.cfg:1:") {
		t.Errorf("list extra: %v", err)
	}
}

// xl matches type= and builder= with strncmp(value, name, strlen(value)).
func TestType(t *testing.T) {
	for _, tc := range []struct{ src, want, err string }{
		{``, "pv", ""},
		{`type = "pvh"`, "pvh", ""},
		{`type = "hvm"`, "hvm", ""},
		{`type = "pv"`, "pv", ""},
		{`type = "p"`, "pv", ""},
		{`type = "h"`, "hvm", ""},
		{`type = ""`, "hvm", ""},
		{`type = "pvhx"`, "", "invalid domain type"},
		{`type = "HVM"`, "", "invalid domain type"},
		{`builder = "hvm"`, "hvm", ""},
		{`builder = "generic"`, "pv", ""},
		{"type = \"hvm\"\nbuilder = \"hvm\"", "hvm", ""},
		{"type = \"pvh\"\nbuilder = \"hvm\"", "", "contradicting"},
		{`builder = "linux"`, "", "invalid builder"},
		{`type = [ "pvh" ]`, "", "is a list"},
	} {
		got, err := mustParse(t, tc.src).Type()
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: got %q, %v; want error %q", tc.src, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: got %q, %v; want %q", tc.src, got, err, tc.want)
		}
	}
}

func TestKernelPaths(t *testing.T) {
	c := mustParse(t, "kernel = \"stub/vmlinuz\"\nramdisk = \"/abs/initrd\"\n")
	if k, _ := c.Kernel(); k != "/etc/xen/stub/vmlinuz" {
		t.Errorf("relative kernel resolved to %q", k)
	}
	if r, _ := c.Ramdisk(); r != "/abs/initrd" {
		t.Errorf("ramdisk %q", r)
	}
	c = mustParse(t, "type = \"hvm\"\nkernel = \"/usr/lib/xen/boot/hvmloader\"\n")
	if k, _ := c.Kernel(); k != "" {
		t.Errorf("hvmloader kernel kept: %q", k)
	}
}

func TestInt(t *testing.T) {
	c := mustParse(t, "a = 0x10\nb = 010\nc = \"  -42\"\nd = 09\ne = [1]\nf = 1\nf += 2\ng = 99999999999999999999\n")
	for _, tc := range []struct {
		key  string
		want int64
		err  bool
	}{{"a", 16, false}, {"b", 8, false}, {"c", -42, false}, {"d", 0, true}, {"e", 0, true}, {"f", 0, true}, {"g", 0, true}} {
		n, ok, err := c.Int(tc.key)
		if !ok || (err != nil) != tc.err || n != tc.want {
			t.Errorf("Int(%s) = %d, %v, %v", tc.key, n, ok, err)
		}
	}
	if _, ok, err := c.Int("nope"); ok || err != nil {
		t.Errorf("unset key: %v %v", ok, err)
	}
}

func TestVTPMs(t *testing.T) {
	c := mustParse(t, `vtpm = [ "backend=vtpm1,uuid=ac0a5b9e-cb83-4e05-a10f-0c1a2b3c4d5e", " backend=vtpm2", "backend=v3,junk" ]`)
	v, err := c.VTPMs()
	if err != nil || len(v) != 3 || v[0].Backend != "vtpm1" || v[0].UUID != "ac0a5b9e-cb83-4e05-a10f-0c1a2b3c4d5e" || v[1].Backend != "vtpm2" || v[2].Backend != "v3" {
		t.Errorf("got %+v, %v", v, err)
	}
	for _, bad := range []string{`vtpm = [ "uuid=ac0a5b9e-cb83-4e05-a10f-0c1a2b3c4d5e" ]`, `vtpm = [ "backend=a,uuid=xyz" ]`, `vtpm = [ "backend=a,color=red" ]`, `vtpm = "backend=a"`} {
		if _, err := mustParse(t, bad).VTPMs(); err == nil || !strings.Contains(err.Error(), "/etc/xen/t.cfg:1:") {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

func TestLinuxName(t *testing.T) {
	for _, tc := range []struct {
		vdev, want  string
		index, part int
	}{
		{"xvda", "xvda", 0, 0}, {"xvdz", "xvdz", 25, 0}, {"xvdaa", "xvdaa", 26, 0},
		{"xvdba", "xvdba", 52, 0}, {"xvda1", "xvda1", 0, 1}, {"hda", "xvda", 0, 0},
		{"hdd", "xvdd", 3, 0}, {"sda", "xvda", 0, 0}, {"sdp", "xvdp", 15, 0},
		{"sdb2", "xvdb2", 1, 2}, {"d0", "xvda", 0, 0}, {"d26p3", "xvdaa3", 26, 3},
	} {
		n, i, p, err := LinuxName(tc.vdev)
		if err != nil || n != tc.want || i != tc.index || p != tc.part {
			t.Errorf("%s: got %s %d %d %v", tc.vdev, n, i, p, err)
		}
	}
	for _, bad := range []string{"", "xvd", "hde", "sdq", "vda", "xvda0", "xvda01", "xvdA", "d", "d0p0", "xvdaa ", "xvdzzzzzz"} {
		if n, _, _, err := LinuxName(bad); err == nil {
			t.Errorf("%q accepted as %s", bad, n)
		}
	}
}

func TestBootOrder(t *testing.T) {
	c := mustParse(t, `disk = [ '/c.img,raw,xvdc', '/i.iso,,hda,cdrom', '/aa.img,raw,xvdaa', '/b.img,raw,sdb', '/a1.img,raw,xvda1', '/z.img,raw,xvdz' ]`)
	ds, err := c.DisksInBootOrder()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range ds {
		got = append(got, d.Linux)
	}
	if s := strings.Join(got, " "); s != "xvda1 xvdb xvdc xvdz xvdaa" {
		t.Errorf("order %s", s)
	}
	bd, err := c.BootDisk()
	if err != nil || bd.Path != "/a1.img" {
		t.Errorf("boot disk %+v %v", bd, err)
	}

	if _, err := mustParse(t, `disk = [ '/a,raw,hda', '/b,raw,xvda' ]`).DisksInBootOrder(); err == nil || !strings.Contains(err.Error(), "both become xvda") {
		t.Errorf("duplicate: %v", err)
	}
	if _, err := mustParse(t, `disk = [ '/i.iso,,hdc,cdrom' ]`).BootDisk(); !errors.Is(err, ErrNoDisk) {
		t.Errorf("cdrom only: %v", err)
	}
	if _, err := mustParse(t, `name = "x"`).BootDisk(); !errors.Is(err, ErrNoDisk) {
		t.Errorf("no disks: %v", err)
	}
	// An unreadable first disk is an error, not skipped.
	_, err = mustParse(t, `disk = [ '/b.img,raw,xvdb', 'format=qcow2,vdev=xvda,target=/a.qcow2' ]`).BootDisk()
	if err == nil || !strings.Contains(err.Error(), "disk xvda: format qcow2 is not supported; convert it with `qemu-img convert -O raw /a.qcow2 /a.qcow2.raw`, point the config at the copy, or give --disk") {
		t.Errorf("qcow2 first: %v", err)
	}
	if _, err := mustParse(t, "\n\ndisk = [ '/a,raw,xvdq!' ]").Disks(); err == nil || !strings.HasPrefix(err.Error(), "/etc/xen/t.cfg:3: disk 0:") {
		t.Errorf("bad vdev: %v", err)
	}
}

func TestDiskCheck(t *testing.T) {
	for spec, want := range map[string]string{
		"/x,raw,xvda":                                      "",
		"phy:/dev/vg/lv,xvda,w":                            "",
		"format=vhd,vdev=xvda,target=/x.vhd":               "", // boot/diskimage reads fixed VHDs, refuses dynamic ones
		"format=qcow2,vdev=xvda,target=/x.qcow2":           "qemu-img convert -O raw /x.qcow2 /x.qcow2.raw",
		"format=vhd,vdev=xvda,script=block-drbd,target=r0": "script block-drbd",
		"iscsi:iqn.x:y,xvda,w":                             "script block-iscsi",
		"script=block-drbd,vdev=xvda,target=r0":            "script block-drbd",
		"vdev=xvda,backend=dd,target=/dev/sdb":             "backend domain dd",
		"format=raw,vdev=xvda,target=rbd:pool/img":         "QEMU rbd: URL",
		"specification=virtio,vdev=xvda,target=/x":         "virtio",
		",,xvda":                    "no target",
		"vdev=xvda,target=/a,b:c=d": "",
	} {
		d, err := ParseDiskSpec(spec)
		if err != nil {
			t.Errorf("%s: %v", spec, err)
			continue
		}
		err = d.Check()
		if (want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), want)) {
			t.Errorf("%s: Check() = %v, want %q", spec, err, want)
		}
	}
}
