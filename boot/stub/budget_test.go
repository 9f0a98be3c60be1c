package stub

import (
	"bytes"
	"testing"
	"time"

	"github.com/vtpmboot/vtpmboot/internal/guestdisk"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
)

// A disk that makes the reader work without end (issue 18 item 2) is
// refused with one FATAL line naming the spent budget, and nothing boots.
// vda1's root directory claims 200 MiB, every block of it one
// self-pointing block (guestdisk.AliasDir), so each config lookup reads
// 200 MiB; the disk's budget runs out a few lookups in. The budget error
// is a refusal, not "not there": discovery must not pass over vda1 to the
// good grub.cfg on vda2.
func TestHostileDiskOverBudget(t *testing.T) {
	testenv.NeedCommands(t, "mkfs.ext2", "debugfs")
	var files []guestdisk.File
	for p, b := range guestFS() {
		files = append(files, guestdisk.File{Path: "/" + p, Data: b})
	}
	f := newFake(t, "")
	f.disk = &guestdisk.Disk{Table: "mbr", Partitions: []guestdisk.Partition{
		{FS: "ext2", SizeMB: 200, MkfsArgs: []string{"-b", "4096"}, Tweak: func(img string) error {
			_, err := guestdisk.AliasDir(img, "/", 200<<20)
			return err
		}},
		{FS: "ext4", SizeMB: 8, Label: "root", Files: files},
	}}
	var out bytes.Buffer
	start := time.Now()
	Run(f, &out)
	t.Logf("refused in %v:\n%s", time.Since(start), out.String())
	checkFatal(t, f, out.String(), "FATAL: choose boot entry", "disk /dev/vda: work budget exhausted (1024 MiB of filesystem metadata read): the filesystem is hostile or corrupt")
}
