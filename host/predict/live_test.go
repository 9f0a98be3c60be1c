package predict

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestReadMountInfo(t *testing.T) {
	p := filepath.Join(t.TempDir(), "mountinfo")
	os.WriteFile(p, []byte(`22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
23 22 254:2 / /boot rw,relatime shared:2 - ext4 /dev/vda2 rw
24 22 254:2 /grub /mnt/bind rw - ext4 /dev/vda2 rw
25 22 254:3 / /mnt/with\040blank rw - ext4 /dev/vda3 rw
26 22 0:5 / /proc rw - proc proc rw
`), 0o644)
	m, err := readMountInfo(p)
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint64]string{mkdev(254, 1): "/", mkdev(254, 2): "/boot", mkdev(254, 3): "/mnt/with blank", mkdev(0, 5): "/proc"}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("dev %d: %q, want %q (a bind mount of a subdirectory is not the filesystem)", k, m[k], v)
		}
	}
	if len(m) != len(want) {
		t.Errorf("got %v", m)
	}
}

// TestOneFSStopsAtMounts uses this machine's own mounts: /proc is another
// filesystem than /, so through "/" it must read as an empty directory,
// as a mount point does on the disk below it.
func TestOneFSStopsAtMounts(t *testing.T) {
	if _, err := os.Stat("/proc/self"); err != nil {
		t.Skip("no /proc")
	}
	fsys, c, err := openMountedFS("/")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ents, err := fs.ReadDir(fsys, "proc")
	if err != nil || len(ents) != 0 {
		t.Errorf("/proc through /: %d entries, %v; want an empty directory", len(ents), err)
	}
	if _, err := fs.Stat(fsys, "proc/self/status"); err == nil {
		t.Error("a file on /proc is visible through /")
	}
	// Something on / itself stays readable.
	if _, err := fs.ReadDir(fsys, "."); err != nil {
		t.Error(err)
	}
}
