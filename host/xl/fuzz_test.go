package xl

import (
	"os"
	"path/filepath"
	"testing"
)

func seedConfigs(f *testing.F) {
	files, _ := filepath.Glob(testdata("*.cfg"))
	bad, _ := filepath.Glob(testdata("bad", "*.cfg"))
	for _, p := range append(files, bad...) {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
}

// exercise calls everything pcrsim calls; none of it may panic.
func exercise(c *Config) {
	c.Type()
	c.Kernel()
	c.Ramdisk()
	c.Bootloader()
	c.Cmdline()
	c.VTPMs()
	c.Dump()
	for _, k := range c.Keys() {
		c.Int(k)
		c.List(k)
		c.String(k)
	}
	if ds, err := c.Disks(); err == nil {
		for _, d := range ds {
			d.Check()
		}
	}
	c.DisksInBootOrder()
	c.BootDisk()
}

func FuzzParse(f *testing.F) {
	seedConfigs(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("/etc/xen/fuzz.cfg", data)
		if err != nil {
			if _, ok := err.(*SyntaxError); !ok {
				t.Fatalf("non-SyntaxError %T: %v", err, err)
			}
			return
		}
		exercise(c)
	})
}

func FuzzDiskSpec(f *testing.F) {
	for _, s := range []string{
		"/srv/x.img,raw,xvda,rw", "phy:/dev/vg/lv,xvda,w", "tap:aio:/x,xvdb,r",
		"format=qcow2, vdev=xvda, target=/a,b", ",hdc:cdrom,r", "iscsi:iqn:x,xvda,w",
		"/i.iso,,hdc,,cdrom", "vdev=d3p2,backend=dd,target=/dev/sdb",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		d, err := ParseDiskSpec(spec)
		if err != nil {
			return
		}
		if d.Vdev == "" || d.Linux == "" {
			t.Fatalf("%q: accepted without vdev/linux name: %+v", spec, d)
		}
		d.Check()
	})
}

// FuzzAgainstLibxlu is the differential fuzzer: every input must be judged
// (and, if valid, read) the same by us and by Xen's libxlutil.
func FuzzAgainstLibxlu(f *testing.F) {
	seedConfigs(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		bin := oracle(t)
		path := filepath.Join(t.TempDir(), "f.cfg")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		agree(t, bin, path, data)
	})
}
