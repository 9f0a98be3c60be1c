package loader_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vtpmboot/vtpmboot/internal/fakekernel"
	"github.com/vtpmboot/vtpmboot/internal/guestdisk"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
)

// Pygrub is Debian's xen-utils-4.17 pygrub, the bootloader= an admin
// would otherwise use.
const Pygrub = "/usr/lib/xen-4.17/bin/pygrub"

// runPygrub runs pygrub as libxl runs a bootloader (unrestricted) and
// returns its parsed answer, or its exit error and output.
func runPygrub(t *testing.T, extra, disk string) (map[string]string, string, error) {
	t.Helper()
	x := newXL(t, 5)
	os.Chmod(x.outdir, 0o700)
	// -q: without a terminal pygrub's curses menu fails; quiet mode boots
	// the default, what the menu does when its timeout passes on libxl's
	// pty.
	argv := x.argv(extra, 0, []string{"-q"}, disk)
	cmd := exec.Command(Pygrub, argv...)
	cmd.Env = append(os.Environ(), "TERM=dumb")
	b, err := cmd.CombinedOutput()
	if err != nil {
		return nil, string(b), err
	}
	out, _ := os.ReadFile(x.out)
	// pygrub ends its answer with an empty item; libxl skips it.
	return parseSimple0(t, append(bytes.TrimRight(out, "\x00"), 0)), string(b), nil
}

// TestAgainstPygrub boots the same disks with pygrub and the loader and
// compares kernel bytes, initrd bytes and command line. Where they differ
// the loader follows the real boot loader (the stub's rules), and the
// test states the difference so that a change on either side shows:
//   - GRUB 2: GRUB's linux command puts "BOOT_IMAGE=<path>" first
//     (grub-core/loader/i386/linux.c, grub_cmd_linux); pygrub's
//     Grub2ConfigFile does not.
//   - GRUB 2 with several files on one initrd line: GRUB loads them all
//     as one image; pygrub opens "a b" as one file name and fails.
func TestAgainstPygrub(t *testing.T) {
	testenv.NeedFile(t, Pygrub, "apt-get install xen-utils-4.17")
	k := fakekernel.Image(rnd(1<<20 + 3))
	i1 := rnd(300007)
	one := guestdisk.Disk{Table: "mbr", Partitions: []guestdisk.Partition{{FS: "ext4", SizeMB: 16, Files: []guestdisk.File{
		{Path: "/boot/grub/grub.cfg", Data: []byte("set default=0\nset timeout=5\nmenuentry 'Debian GNU/Linux' {\n\tlinux /boot/vmlinuz root=/dev/xvda1 ro quiet\n\tinitrd /boot/initrd.img\n}\n")},
		{Path: "/boot/vmlinuz", Data: k}, {Path: "/boot/initrd.img", Data: i1},
	}}}}
	gs := guests()
	// GRUB legacy's "root (hd0,0)" names the first partition: on a disk
	// with a partition table, as pygrub (and GRUB legacy) need it.
	legacy := gs[1].disk
	legacy.Table = "mbr"
	for _, c := range []struct {
		name, extra string
		disk        guestdisk.Disk
		bootImage   string // what GRUB 2 adds before the entry's arguments
		pygrubFails string
	}{
		{name: "legacy", disk: legacy},
		{name: "legacy+extra", extra: "console=hvc0 earlyprintk=xen", disk: legacy},
		{name: "grub2", disk: one, bootImage: "BOOT_IMAGE=/boot/vmlinuz "},
		{name: "grub2+extra", extra: "console=hvc0", disk: one, bootImage: "BOOT_IMAGE=/boot/vmlinuz "},
		{name: "grub2 two initrds", disk: gs[0].disk, pygrubFails: "Error opening /boot/initrd.img /boot/extra.img"},
	} {
		t.Run(c.name, func(t *testing.T) {
			img := buildDisk(t, c.disk)
			x := newXL(t, 6)
			r := x.run(t, x.argv(c.extra, 0, []string{"vtpmboot.tpm=optional"}, img))
			if r.code != 0 {
				t.Fatalf("loader: exit %d: %s", r.code, r.stderr)
			}
			ours := parseSimple0(t, r.output)
			theirs, log, err := runPygrub(t, c.extra, img)
			if c.pygrubFails != "" {
				if err == nil || !strings.Contains(log, c.pygrubFails) {
					t.Fatalf("pygrub: %v, %q; want it to fail with %q", err, log, c.pygrubFails)
				}
				return
			}
			if err != nil {
				t.Fatalf("pygrub: %v: %s", err, log)
			}
			for _, f := range []string{"kernel", "ramdisk"} {
				a, err1 := os.ReadFile(ours[f])
				b, err2 := os.ReadFile(theirs[f])
				if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
					t.Errorf("%s: loader %s (%d bytes, %v), pygrub %s (%d bytes, %v)", f, ours[f], len(a), err1, theirs[f], len(b), err2)
				}
				if filepath.Dir(ours[f]) != x.outdir {
					t.Errorf("%s not in the output directory", ours[f])
				}
			}
			if ours["args"] != c.bootImage+theirs["args"] {
				t.Errorf("args: loader %q, pygrub %q (GRUB adds %q)", ours["args"], theirs["args"], c.bootImage)
			}
		})
	}
}
