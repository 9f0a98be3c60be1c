package e2e

import (
	"math/rand"
	"strings"
	"testing"

	"github.com/vtpmboot/vtpmboot/internal/guestdisk"
	"github.com/vtpmboot/vtpmboot/internal/qemutest"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// TestFaults boots the stub into each failure it must stop at, one boot
// each: exactly one FATAL line saying what and why, power-off, and no
// second kernel. The one allowed unmeasured boot (no TPM at all with
// vtpmboot.tpm=optional) must boot and say so. Disks are checked
// unchanged here too.
func TestFaults(t *testing.T) {
	t.Parallel()
	p := needParts(t)
	file := func(path, src string) guestdisk.File { return guestdisk.File{Path: path, Source: src} }
	text := func(path, s string) guestdisk.File { return guestdisk.File{Path: path, Data: []byte(s)} }
	simple := func(files ...guestdisk.File) guestdisk.Disk {
		return guestdisk.Disk{Table: "mbr", Partitions: []guestdisk.Partition{{FS: "ext4", SizeMB: 48, Files: files}}}
	}
	goodCfg := "set timeout=5\nmenuentry 'vtpmboot e2e fault' {\n\tlinux /boot/vmlinuz console=ttyS0 panic=-1 quiet e2e.case=fault\n\tinitrd /boot/target.img\n}\n"
	good := simple(text("/boot/grub/grub.cfg", goodCfg), file("/boot/vmlinuz", p.Kernel), file("/boot/target.img", p.Target))
	// Not a bzImage: 4 MiB of (reproducible) random bytes.
	junk := make([]byte, 4<<20)
	rand.New(rand.NewSource(4)).Read(junk)

	for _, c := range []struct {
		name string
		tpm  pcrbank.Version
		disk guestdisk.Disk
		opts []string
		kill string
		mem  int // guest MiB; 0 is the harness default
		// fatal lists what the one FATAL line must say; nil means the
		// target must boot (unmeasured).
		fatal []string
		// unmeasured: the refusal comes before any extend.
		unmeasured bool
	}{
		{
			name: "no-tpm-required", disk: good, opts: []string{"vtpmboot.timeout=3"},
			fatal: []string{"FATAL: no TPM:", "vtpmboot.tpm=required", "-tpmdev", "vtpmboot.tpm=optional"},
		},
		{
			name: "no-tpm-optional", disk: good, opts: []string{"vtpmboot.timeout=3", "vtpmboot.tpm=optional"},
		},
		{
			// Killed right after the stub opened the TPM and listed its
			// banks; the next TPM command is the measure phase's, a
			// second or more later (mount, choose, load, hashing), so a
			// slow host cannot let it through before the kill.
			name: "tpm12-killed-after-open", tpm: pcrbank.Version12, disk: good, kill: "vtpmboot: phase tpm ",
			fatal: []string{"FATAL: TPM extend 1 of 3", "PCR 4"},
		},
		{
			name: "tpm20-no-config", tpm: pcrbank.Version20,
			disk:  simple(file("/boot/vmlinuz", p.Kernel), file("/boot/target.img", p.Target), text("/etc/fstab", "# no boot loader config on this disk\n")),
			fatal: []string{"FATAL: choose boot entry: no boot configuration found: looked for /boot/grub/grub.cfg", "/loader/entries", "/boot/extlinux/extlinux.conf", "/boot/grub/menu.lst"},
		},
		{
			name: "tpm12-missing-kernel", tpm: pcrbank.Version12,
			disk: simple(text("/boot/grub/grub.cfg", "set default=0\nset timeout=5\nmenuentry 'Debian GNU/Linux, with Linux 6.1.0-99-amd64' {\n\tlinux /boot/vmlinuz-6.1.0-99-amd64 root=/dev/vda1 ro\n\tinitrd /boot/target.img\n}\n"),
				file("/boot/vmlinuz", p.Kernel), file("/boot/target.img", p.Target)),
			fatal: []string{"FATAL: choose boot entry:", `"Debian GNU/Linux, with Linux 6.1.0-99-amd64"`, "/boot/grub/grub.cfg", "vmlinuz-6.1.0-99-amd64"},
		},
		{
			name: "tpm20-kernel-not-bzimage", tpm: pcrbank.Version20,
			disk: simple(text("/boot/grub/grub.cfg", goodCfg), guestdisk.File{Path: "/boot/vmlinuz", Data: junk}, file("/boot/target.img", p.Target)),
			// Refused before anything is measured: kexec_file_load
			// would refuse it (kexec.CheckKernel), so PCRs describing it
			// would describe a boot that never happens.
			fatal:      []string{"FATAL: choose boot entry:", "kernel /boot/vmlinuz: not bootable by kexec: not a bzImage"},
			unmeasured: true,
		},
		{
			// One byte over what Debian's kernel takes through kexec
			// (cmdline_size 2047, less the NUL and 30 bytes for
			// elfcorehdr=): refused before measuring. The 2016-byte
			// line boots in TestMatrix.
			name: "tpm20-cmdline-2017", tpm: pcrbank.Version20,
			disk:       simple(text("/boot/grub/grub.cfg", cmdlineOfLength(2017)), file("/boot/vmlinuz", p.Kernel), file("/boot/target.img", p.Target)),
			fatal:      []string{"FATAL: choose boot entry:", "the command line is 2017 bytes; this kernel takes at most 2016"},
			unmeasured: true,
		},
		{
			// 160 MiB of initrd in a 256 MiB guest: loading and kexec
			// would need about twice the files, and running out as PID 1
			// is a kernel panic with no message, so the stub must refuse
			// before reading.
			name: "tpm20-initrd-too-large", tpm: pcrbank.Version20, mem: 256,
			disk: guestdisk.Disk{Table: "mbr", Partitions: []guestdisk.Partition{{FS: "ext4", SizeMB: 200, Files: []guestdisk.File{
				text("/boot/grub/grub.cfg", goodCfg), file("/boot/vmlinuz", p.Kernel), {Path: "/boot/target.img", Data: make([]byte, 160<<20)},
			}}}},
			fatal: []string{"FATAL: load kernel and initrds:", "give the guest more memory (xl: memory=)"},
		},
	} {
		c := c
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			disk, sum := buildDisk(t, c.disk)
			res := boot(t, qemutest.Options{
				Kernel: p.Kernel, Initrd: p.Stub, Append: StubAppend(append([]string{"quiet"}, c.opts...)...),
				Disks: []qemutest.Disk{{Path: disk}}, TPM: c.tpm, KillTPMAfter: c.kill, Memory: c.mem,
			})
			checkDiskUnchanged(t, disk, sum)
			if c.kill != "" && !res.TPMKilled {
				t.Fatalf("swtpm was not killed: %q never appeared\n%s", c.kill, res.Tail(4000))
			}
			if c.fatal != nil {
				neverRan(t, res, c.fatal...)
				if c.unmeasured && strings.Contains(res.Console, "extend PCR") {
					t.Errorf("the stub extended a PCR before refusing\n%s", res.Tail(4000))
				}
				return
			}
			// The unmeasured boot: no FATAL, the warning, and the target ran.
			if f := FatalLines(res.Console); len(f) > 0 || res.ExitErr != nil {
				t.Fatalf("stub failed (QEMU exit %v): %q\n%s", res.ExitErr, f, res.Tail(4000))
			}
			if !strings.Contains(res.Console, "NOTHING WAS MEASURED") {
				t.Errorf("no NOTHING WAS MEASURED warning\n%s", res.Tail(4000))
			}
			r, err := qemutest.ParseTarget(res.Console)
			if err != nil {
				t.Fatalf("the target did not run: %v\n%s", err, res.Tail(4000))
			}
			if r.Version != pcrbank.VersionSoftware {
				t.Errorf("target found a TPM %v", r.Version)
			}
			if want := "BOOT_IMAGE=/boot/vmlinuz console=ttyS0 panic=-1 quiet e2e.case=fault\n"; r.Cmdline != want {
				t.Errorf("target /proc/cmdline %q, want %q", r.Cmdline, want)
			}
		})
	}
}

// cmdlineOfLength is a grub.cfg whose one entry's command line, with
// BOOT_IMAGE=/boot/vmlinuz, is exactly n bytes.
func cmdlineOfLength(n int) string {
	const head = "BOOT_IMAGE=/boot/vmlinuz console=ttyS0 panic=-1 quiet e2e.pad="
	pad := strings.Repeat("x", n-len(head))
	return "set timeout=5\nmenuentry 'vtpmboot e2e: long command line' {\n\tlinux /boot/vmlinuz console=ttyS0 panic=-1 quiet e2e.pad=" + pad + "\n\tinitrd /boot/target.img\n}\n"
}
