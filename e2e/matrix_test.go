package e2e

import (
	"bytes"
	"strings"
	"sync"
	"testing"

	"github.com/vtpmboot/vtpmboot/internal/guestdisk"
	"github.com/vtpmboot/vtpmboot/internal/qemutest"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// matrixCase is one boot of the matrix: a guest disk in one configuration
// format, booted by the stub under one TPM version.
type matrixCase struct {
	name string
	tpm  pcrbank.Version
	disk guestdisk.Disk
	// kernel and initrds are the host files the chosen entry names, in
	// order; cmdline is the command line the entry must produce, written
	// here by hand from the format's rule (docs/config-*.md).
	kernel  string
	initrds []string
	cmdline string
	// prepare, if set, changes the built disk before the boot (the disk
	// hash of check (e) is taken after it).
	prepare func(t *testing.T, disk string)
}

// The disks' files. The kernel is always Debian's; entries the stub must
// NOT pick name files that do not exist, so a wrong choice fails loudly.
func matrixCases(p *Parts) []matrixCase {
	file := func(path, src string) guestdisk.File { return guestdisk.File{Path: path, Source: src} }
	text := func(path, s string) guestdisk.File { return guestdisk.File{Path: path, Data: []byte(s)} }
	return []matrixCase{
		{
			// GRUB 2: --id default, a variable, ($root) in the path (so
			// BOOT_IMAGE carries GRUB's name for partition 2 of a GPT
			// disk), an argument with a space and one with quotes (GRUB
			// re-quotes both); two initrds, the second needed for /init.
			// The partition's ext4 journal is dirty.
			name: "tpm20-grub2-gpt-2initrds", tpm: pcrbank.Version20,
			disk: guestdisk.Disk{Table: "gpt", Partitions: []guestdisk.Partition{
				{FS: "ext4", SizeMB: 16, Label: "data", Files: []guestdisk.File{text("/README", "no boot config here\n")}},
				{FS: "ext4", SizeMB: 64, Label: "boot", DirtyJournal: true, Files: []guestdisk.File{
					text("/boot/grub/grub.cfg", `# e2e: GRUB 2
set default=e2e
set timeout=5
set e2e_opts="console=ttyS0 panic=-1 quiet"
menuentry 'Wrong: the first entry' --id wrong {
	linux /boot/vmlinuz-missing
}
menuentry 'vtpmboot e2e: GRUB 2, two initrds' --class debian --id e2e {
	insmod ext2
	linux ($root)/boot/vmlinuz $e2e_opts `+ExtraRdinit+` "e2e.title=GRUB 2 two" 'e2e.q="x"'
	initrd /boot/target.img /boot/extra.cpio
}
`),
					file("/boot/vmlinuz", p.Kernel), file("/boot/target.img", p.Target), file("/boot/extra.cpio", p.Extra),
				}},
			}},
			kernel: p.Kernel, initrds: []string{p.Target, p.Extra},
			cmdline: `BOOT_IMAGE=(hd0,gpt2)/boot/vmlinuz console=ttyS0 panic=-1 quiet ` + ExtraRdinit + ` "e2e.title=GRUB 2 two" e2e.q=\"x\"`,
		},
		{
			// GRUB 2 as grub-mkconfig writes it: a function, a submenu
			// and default "1>0"; one initrd. Dirty journal.
			name: "tpm12-grub2-mbr-1initrd", tpm: pcrbank.Version12,
			disk: guestdisk.Disk{Table: "mbr", Partitions: []guestdisk.Partition{
				{FS: "ext4", SizeMB: 64, Label: "root", DirtyJournal: true, Files: []guestdisk.File{
					text("/boot/grub/grub.cfg", `set timeout=5
function load_video {
  insmod all_video
}
set default="1>0"
menuentry 'Debian GNU/Linux' --class debian --id 'gnulinux-simple-6f1d' {
	load_video
	insmod ext2
	set root='hd0,msdos1'
	linux	/boot/vmlinuz-6.1.0-9-amd64 root=UUID=6f1d2a4e-8b9c-4d3e-9f10-112233445566 ro quiet
	initrd	/boot/initrd.img-6.1.0-9-amd64
}
submenu 'Advanced options for Debian GNU/Linux' --id 'gnulinux-advanced-6f1d' {
	menuentry 'vtpmboot e2e: GRUB 2 under TPM 1.2' --class debian --id 'e2e-12' {
		load_video
		insmod ext2
		set root='hd0,msdos1'
		echo	'Loading Linux ...'
		linux	/boot/vmlinuz root=UUID=6f1d2a4e-8b9c-4d3e-9f10-112233445566 ro console=ttyS0 panic=-1 quiet e2e.case=grub2-12
		echo	'Loading initial ramdisk ...'
		initrd	/boot/target.img
	}
}
`),
					file("/boot/vmlinuz", p.Kernel), file("/boot/target.img", p.Target),
				}},
			}},
			kernel: p.Kernel, initrds: []string{p.Target},
			cmdline: "BOOT_IMAGE=/boot/vmlinuz root=UUID=6f1d2a4e-8b9c-4d3e-9f10-112233445566 ro console=ttyS0 panic=-1 quiet e2e.case=grub2-12",
		},
		{
			// GRUB legacy as pv-grub read it: TABs become one space, runs
			// of blanks and the trailing blank are kept, the file name
			// (with its device) and the blanks after it are dropped, no
			// BOOT_IMAGE.
			name: "tpm20-legacy-mbr-1initrd", tpm: pcrbank.Version20,
			disk: guestdisk.Disk{Table: "mbr", Partitions: []guestdisk.Partition{
				{FS: "ext4", SizeMB: 64, Files: []guestdisk.File{
					text("/boot/grub/menu.lst", "# menu.lst - e2e\ndefault\t\t1\ntimeout\t\t5\nhiddenmenu\n\n"+
						"title\t\tDebian GNU/Linux, kernel 6.1.0-9-amd64\nroot\t\t(hd0,0)\nkernel\t\t/boot/vmlinuz-6.1.0-9-amd64 root=/dev/xvda1 ro\ninitrd\t\t/boot/initrd.img-6.1.0-9-amd64\n\n"+
						"title\t\tvtpmboot e2e: GRUB legacy\nroot\t\t(hd0,0)\nkernel\t\t(hd0,0)/boot/vmlinuz   console=ttyS0  panic=-1\tquiet e2e.case=legacy-20 \ninitrd\t\t/boot/target.img\nsavedefault\n"),
					file("/boot/vmlinuz", p.Kernel), file("/boot/target.img", p.Target),
				}},
			}},
			kernel: p.Kernel, initrds: []string{p.Target},
			cmdline: "console=ttyS0  panic=-1 quiet e2e.case=legacy-20 ",
		},
		{
			// GRUB legacy on partition 2 of a GPT disk whose partition 1
			// is FAT; "default saved" read from boot/grub/default in the
			// grub-set-default --once format "prev:once".
			name: "tpm12-legacy-gpt-vfat-1initrd", tpm: pcrbank.Version12,
			disk: guestdisk.Disk{Table: "gpt", Partitions: []guestdisk.Partition{
				{FS: "vfat", SizeMB: 16, Label: "EFI", Files: []guestdisk.File{text("/EFI/README.TXT", "not a boot config\n")}},
				{FS: "ext4", SizeMB: 64, Files: []guestdisk.File{
					text("/boot/grub/menu.lst", "default saved\ntimeout 3\n\ntitle second (never booted)\n\tkernel /boot/vmlinuz-missing\n\n"+
						"title vtpmboot e2e: GRUB legacy under TPM 1.2\n\tkernel /boot/vmlinuz console=ttyS0 panic=-1 quiet e2e.case=legacy-12\n\tinitrd /boot/target.img\n"),
					text("/boot/grub/default", "0:1\n"),
					file("/boot/vmlinuz", p.Kernel), file("/boot/target.img", p.Target),
				}},
			}},
			kernel: p.Kernel, initrds: []string{p.Target},
			cmdline: "console=ttyS0 panic=-1 quiet e2e.case=legacy-12",
		},
		{
			// Standalone Boot Loader Spec entries (systemd-boot rules) on a
			// disk with no partition table: the newest version is the
			// default (rpm vercmp: 56 > 9, where a string sort says
			// otherwise), all options lines joined with one space, inner
			// blanks kept, no BOOT_IMAGE; two initrd lines.
			name: "tpm20-bls-bare-2initrds", tpm: pcrbank.Version20,
			disk: guestdisk.Disk{Partitions: []guestdisk.Partition{
				{FS: "ext4", SizeMB: 64, Files: []guestdisk.File{
					text("/loader/entries/vtpmboot-6.1.0-9-amd64.conf", "title vtpmboot old\nversion 6.1.0-9-amd64\nlinux /vmlinuz-6.1.0-9-amd64\noptions console=ttyS0\n"),
					text("/loader/entries/vtpmboot-6.1.0-56-amd64.conf", "# e2e\ntitle      vtpmboot e2e: BLS under TPM 2.0\nversion    6.1.0-56-amd64\nmachine-id 0123456789abcdef0123456789abcdef\n"+
						"linux      /vmlinuz-6.1.0-56-amd64\ninitrd     /target.img\ninitrd     /extra.cpio\noptions    console=ttyS0 panic=-1\noptions    quiet   "+ExtraRdinit+" e2e.case=bls-20  \n"),
					file("/vmlinuz-6.1.0-56-amd64", p.Kernel), file("/target.img", p.Target), file("/extra.cpio", p.Extra),
				}},
			}},
			kernel: p.Kernel, initrds: []string{p.Target, p.Extra},
			cmdline: "console=ttyS0 panic=-1 quiet   " + ExtraRdinit + " e2e.case=bls-20",
		},
		{
			// BLS entries through grub.cfg's blscfg (Fedora): BOOT_IMAGE
			// with ($root), $kernelopts expanded from the GRUB
			// environment, newest entry first, both initrd lines.
			name: "tpm12-blscfg-mbr-2initrds", tpm: pcrbank.Version12,
			disk: guestdisk.Disk{Table: "mbr", Partitions: []guestdisk.Partition{
				{FS: "ext4", SizeMB: 64, Files: []guestdisk.File{
					text("/boot/grub/grub.cfg", "set timeout=5\nset kernelopts=\"console=ttyS0 panic=-1 quiet\"\ninsmod blscfg\nblscfg\n"),
					text("/boot/loader/entries/e2e-6.1.0-9-amd64.conf", "title old\nversion 6.1.0-9-amd64\nlinux /boot/vmlinuz-6.1.0-9-amd64\noptions $kernelopts\n"),
					text("/boot/loader/entries/e2e-6.1.0-56-amd64.conf", "title vtpmboot e2e: blscfg under TPM 1.2\nversion 6.1.0-56-amd64\nlinux /boot/vmlinuz\n"+
						"initrd /boot/target.img\ninitrd /boot/extra.cpio\noptions $kernelopts "+ExtraRdinit+" e2e.case=blscfg-12\n"),
					file("/boot/vmlinuz", p.Kernel), file("/boot/target.img", p.Target), file("/boot/extra.cpio", p.Extra),
				}},
			}},
			kernel: p.Kernel, initrds: []string{p.Target, p.Extra},
			cmdline: "BOOT_IMAGE=(hd0,msdos1)/boot/vmlinuz console=ttyS0 panic=-1 quiet " + ExtraRdinit + " e2e.case=blscfg-12",
		},
		{
			// The longest command line Debian's kernel takes through
			// kexec, 2016 bytes (kexec.CheckCmdline; one more is refused
			// in TestFaults), measured and booted whole.
			name: "tpm20-grub2-cmdline-2016", tpm: pcrbank.Version20,
			disk: guestdisk.Disk{Table: "mbr", Partitions: []guestdisk.Partition{
				{FS: "ext4", SizeMB: 64, Files: []guestdisk.File{
					text("/boot/grub/grub.cfg", cmdlineOfLength(2016)),
					file("/boot/vmlinuz", p.Kernel), file("/boot/target.img", p.Target),
				}},
			}},
			kernel: p.Kernel, initrds: []string{p.Target},
			cmdline: "BOOT_IMAGE=/boot/vmlinuz console=ttyS0 panic=-1 quiet e2e.pad=" + strings.Repeat("x", 2016-len("BOOT_IMAGE=/boot/vmlinuz console=ttyS0 panic=-1 quiet e2e.pad=")),
		},
		{
			// RHEL 9 on XFS: a BIOS boot partition, /boot on XFS (GPT
			// partition 2), grub2/grub.cfg as RHEL writes it (grubenv
			// through ${config_directory}, default="${saved_entry}",
			// blscfg), options "$kernelopts" from grubenv, which names no
			// saved_entry, so blscfg's first entry, the newest version,
			// boots. The kernel then leaves the log dirty holding a newer
			// entry (kernelxfs.BLSLogOnly, a missing kernel): replayed, it
			// would become the default; read as ro,norecovery reads it,
			// it does not exist.
			name: "tpm20-rhel-xfs-gpt-dirtylog", tpm: pcrbank.Version20,
			disk: guestdisk.Disk{Table: "gpt", Partitions: []guestdisk.Partition{
				{FS: "raw", SizeMB: 1},
				{FS: "xfs", SizeMB: 300, Label: "boot", Files: []guestdisk.File{
					text("/grub2/grub.cfg", rhelGrubCfg("hd0,gpt2")),
					text("/grub2/grubenv", grubenv("kernelopts=console=ttyS0 panic=-1 quiet e2e.case=rhel-20\nboot_success=0\n")),
					text("/loader/entries/0123456789abcdef0123456789abcdef-6.1.0-9.el9.x86_64.conf", "title Old (never booted)\nversion 6.1.0-9.el9.x86_64\nlinux /vmlinuz-6.1.0-9.el9.x86_64\noptions $kernelopts\n"),
					text("/loader/entries/0123456789abcdef0123456789abcdef-6.1.0-56.el9.x86_64.conf", "title vtpmboot e2e: RHEL-style XFS /boot under TPM 2.0\nversion 6.1.0-56.el9.x86_64\nlinux /vmlinuz-6.1.0-56.el9.x86_64\n"+
						"initrd /initramfs-6.1.0-56.el9.x86_64.img\noptions $kernelopts\ngrub_users $grub_users\ngrub_arg --unrestricted\ngrub_class rhel\n"),
					file("/vmlinuz-6.1.0-56.el9.x86_64", p.Kernel), file("/initramfs-6.1.0-56.el9.x86_64.img", p.Target),
				}},
				{FS: "ext4", SizeMB: 16, Label: "root", Files: []guestdisk.File{text("/etc/fstab", "LABEL=boot /boot xfs defaults 0 0\n")}},
			}},
			kernel: p.Kernel, initrds: []string{p.Target},
			cmdline: "BOOT_IMAGE=(hd0,gpt2)/vmlinuz-6.1.0-56.el9.x86_64 console=ttyS0 panic=-1 quiet e2e.case=rhel-20",
			prepare: dirtyXFSLog(p, 2),
		},
		{
			// RHEL 8 on XFS under TPM 1.2: /boot is MBR partition 1,
			// grubenv's saved_entry names the older of two entries, whose
			// options are grubenv's $kernelopts; the log is dirty.
			name: "tpm12-rhel-xfs-mbr-dirtylog", tpm: pcrbank.Version12,
			disk: guestdisk.Disk{Table: "mbr", Partitions: []guestdisk.Partition{
				{FS: "xfs", SizeMB: 300, Label: "boot", Files: []guestdisk.File{
					text("/grub2/grub.cfg", rhelGrubCfg("hd0,msdos1")),
					text("/grub2/grubenv", grubenv("saved_entry=0123456789abcdef0123456789abcdef-4.18.0-80.el8.x86_64\nkernelopts=root=/dev/mapper/rhel-root ro console=ttyS0 panic=-1 quiet e2e.case=rhel-12\n")),
					text("/loader/entries/0123456789abcdef0123456789abcdef-4.18.0-80.el8.x86_64.conf", "title vtpmboot e2e: RHEL-style XFS /boot under TPM 1.2\nversion 4.18.0-80.el8.x86_64\nlinux /vmlinuz-4.18.0-80.el8.x86_64\n"+
						"initrd /initramfs-4.18.0-80.el8.x86_64.img\noptions $kernelopts\nid rhel-20190313-4.18.0-80.el8.x86_64\ngrub_users $grub_users\ngrub_arg --unrestricted\ngrub_class kernel\n"),
					text("/loader/entries/0123456789abcdef0123456789abcdef-4.18.0-305.el8.x86_64.conf", "title Newer (not the saved entry)\nversion 4.18.0-305.el8.x86_64\nlinux /vmlinuz-4.18.0-305.el8.x86_64\noptions $kernelopts\n"),
					file("/vmlinuz-4.18.0-80.el8.x86_64", p.Kernel), file("/initramfs-4.18.0-80.el8.x86_64.img", p.Target),
				}},
				{FS: "ext4", SizeMB: 16, Label: "root", Files: []guestdisk.File{text("/etc/fstab", "LABEL=boot /boot xfs defaults 0 0\n")}},
			}},
			kernel: p.Kernel, initrds: []string{p.Target},
			cmdline: "BOOT_IMAGE=(hd0,msdos1)/vmlinuz-4.18.0-80.el8.x86_64 root=/dev/mapper/rhel-root ro console=ttyS0 panic=-1 quiet e2e.case=rhel-12",
			prepare: dirtyXFSLog(p, 1),
		},
		{
			// extlinux.conf with no initrd: BOOT_IMAGE= as written, APPEND
			// verbatim (the double blank stays). With no initrd the target
			// kernel has no userspace (Debian's has no built-in block or
			// filesystem driver): it proves itself by its own "Kernel
			// command line:" and root-mount panic, and the PCRs come from
			// the stub's TPM read-back (see docs/e2e.md).
			name: "tpm20-syslinux-mbr-noinitrd", tpm: pcrbank.Version20,
			disk: guestdisk.Disk{Table: "mbr", Partitions: []guestdisk.Partition{
				{FS: "ext4", SizeMB: 64, Files: []guestdisk.File{
					text("/boot/extlinux/extlinux.conf", "DEFAULT e2e\nPROMPT 0\nTIMEOUT 50\n\nLABEL other\n  KERNEL /boot/vmlinuz-missing\n\n"+
						"LABEL e2e\n  MENU LABEL vtpmboot e2e: syslinux, no initrd\n  LINUX /boot/vmlinuz\n  APPEND console=ttyS0 panic=-1  e2e.case=syslinux-noinitrd\n"),
					file("/boot/vmlinuz", p.Kernel),
				}},
			}},
			kernel:  p.Kernel,
			cmdline: "BOOT_IMAGE=/boot/vmlinuz console=ttyS0 panic=-1  e2e.case=syslinux-noinitrd",
		},
	}
}

// baseline collects the firmware's PCR 4/5 values replayed in the boots
// that have a target, per TPM version, for the boot that has none.
type baseline struct {
	wg  sync.WaitGroup
	mu  sync.Mutex
	got []*Replay
}

// TestMatrix boots every case and checks (docs/e2e.md):
// (a) the target booted with exactly the hand-written command line;
// (b) the firmware's starting values, replayed from the log the target
// read with go-eventlog and tpm2_eventlog;
// (c) pcrsim's prediction from the disk image and the test's own
// crypto/sha* computation agree, and (d) both equal what the target read
// from the TPM, in every bank; the stub's printed event log replays
// (go-eventlog) onto the same values;
// (e) the disk image is unchanged.
func TestMatrix(t *testing.T) {
	t.Parallel()
	p := needParts(t)
	bases := map[pcrbank.Version]*baseline{pcrbank.Version12: {}, pcrbank.Version20: {}}
	for _, c := range matrixCases(p) {
		c := c
		hasTarget := len(c.initrds) > 0
		t.Run(c.name, func(t *testing.T) {
			// Before t.Parallel, so every boot with a target has
			// registered (in order, synchronously) by the time the
			// boot without one waits for their baselines; a subtest
			// filtered out by -run never registers.
			if hasTarget {
				bases[c.tpm].wg.Add(1)
				defer bases[c.tpm].wg.Done()
			}
			t.Parallel()
			disk, sum := buildDisk(t, c.disk)
			if c.prepare != nil {
				c.prepare(t, disk)
				sum = fileSum(t, disk)
			}
			res := boot(t, qemutest.Options{
				Kernel: p.Kernel, Initrd: p.Stub, Append: StubAppend("quiet"),
				Disks: []qemutest.Disk{{Path: disk}}, TPM: c.tpm,
			})
			checkDiskUnchanged(t, disk, sum)
			if f := FatalLines(res.Console); len(f) > 0 || res.ExitErr != nil {
				t.Fatalf("stub failed (QEMU exit %v): %q\n%s", res.ExitErr, f, res.Tail(6000))
			}
			for _, ph := range Phases(res.Console) {
				t.Logf("phase %-8s %6d ms", ph.Name, ph.Ms)
			}
			if hasTarget {
				checkTarget(t, p, c, disk, res, bases[c.tpm])
			} else {
				checkNoInitrd(t, p, c, disk, res, bases[c.tpm])
			}
		})
	}
}

func checkTarget(t *testing.T, p *Parts, c matrixCase, disk string, res *qemutest.Result, base *baseline) {
	r, err := qemutest.ParseTarget(res.Console)
	if err != nil {
		t.Fatalf("no target report (did kexec work?): %v\n%s", err, res.Tail(6000))
	}
	if len(r.Errors) > 0 {
		t.Errorf("target reported errors: %q", r.Errors)
	}
	// (a) The kernel adds only the newline to what the stub passed.
	if r.Cmdline != c.cmdline+"\n" {
		t.Errorf("target /proc/cmdline\n  got  %q\n  want %q", r.Cmdline, c.cmdline+"\n")
	}
	if r.Version != c.tpm {
		t.Fatalf("target sees TPM %v, booted with %v", r.Version, c.tpm)
	}
	banks := PCRs(r.PCRs).Banks()
	if c.tpm == pcrbank.Version12 && (len(banks) != 1 || banks[0] != pcrbank.SHA1) {
		t.Errorf("TPM 1.2 target reports banks %v", banks)
	}
	// (b) The booted kernel's event log is the firmware's followed by the
	// stub's events, appended to the ACPI log area before kexec
	// (boot/acpilog): replayed whole by third-party code it must give
	// every PCR 0-9 exactly as the TPM reports them, PCR 4 and 5 included.
	stubLog, err := StubEventLog(res.Console)
	if err != nil {
		t.Fatal(err)
	}
	if !containsLine(res.Console, "vtpmboot: event log appended to the firmware's log: ") {
		t.Errorf("the stub did not append its events to the firmware's log:\n%s", strings.Join(StubLines(res.Console), "\n"))
	}
	fwLog, err := SplitAppended(r.EventLog, stubLog, c.tpm)
	if err != nil {
		t.Fatal(err)
	}
	whole, err := ReplayFirmware(r.EventLog)
	if err != nil {
		t.Fatalf("replaying the event log the target read: %v", err)
	}
	for _, a := range banks {
		for i, v := range r.PCRs[a] {
			if !bytes.Equal(v, whole.Value(a, i)) {
				t.Errorf("%v PCR %d: TPM %x, binary_bios_measurements replays (%s) to %x", a, i, v, whole.By[a], whole.Value(a, i))
			}
		}
	}
	// Its firmware part, replayed alone, gives the starting values: what
	// SeaBIOS left in PCR 4 and 5 for the stub.
	rp, err := ReplayFirmware(fwLog)
	if err != nil {
		t.Fatalf("replaying the firmware part of the log: %v", err)
	}
	for _, a := range banks {
		if rp.By[a] == "" {
			t.Fatalf("the firmware log has no %v digests", a)
		}
		for i, v := range r.PCRs[a] {
			if i != 4 && i != 5 && !bytes.Equal(v, rp.Value(a, i)) {
				t.Errorf("%v PCR %d: TPM %x, firmware log replays to %x", a, i, v, rp.Value(a, i))
			}
		}
	}
	base.mu.Lock()
	base.got = append(base.got, rp)
	base.mu.Unlock()

	// (c) pcrsim on the image, and the test's own computation.
	sim := pcrsimPredict(t, p.Pcrsim, disk, banks, rp.Value)
	for _, a := range banks {
		want4, want5 := expectPCRs(t, a, rp.Value(a, 4), rp.Value(a, 5), c.kernel, c.initrds, c.cmdline)
		// (d) every source agrees with the TPM.
		for _, x := range []struct {
			pcr       int
			want, got []byte
		}{{4, want4, r.PCRs[a][4]}, {5, want5, r.PCRs[a][5]}} {
			if !bytes.Equal(x.got, x.want) {
				t.Errorf("%v PCR %d: target read %x, crypto/sha computes %x", a, x.pcr, x.got, x.want)
			}
			if s := sim.Get(a, x.pcr); !bytes.Equal(s, x.want) {
				t.Errorf("%v PCR %d: pcrsim predicts %x, crypto/sha computes %x", a, x.pcr, s, x.want)
			}
		}
		t.Logf("%v PCR 4 %x  PCR 5 %x (start by %s)", a, r.PCRs[a][4], r.PCRs[a][5], rp.By[a])
	}
	// The stub's own event log, replayed by go-eventlog on top of the
	// firmware's values, lands on the TPM's values too.
	own, err := ReplayOnto(stubLog, rp.Value)
	if err != nil {
		t.Fatalf("go-eventlog cannot read the stub's event log: %v", err)
	}
	for _, a := range own.Banks() {
		for _, i := range []int{4, 5} {
			if !bytes.Equal(own.Get(a, i), r.PCRs[a][i]) {
				t.Errorf("%v PCR %d: the stub's event log replays to %x, the TPM has %x", a, i, own.Get(a, i), r.PCRs[a][i])
			}
		}
	}
	if len(own.Banks()) == 0 {
		t.Error("the stub's event log replays no bank")
	}
}

// checkNoInitrd: with no initrd the target kernel cannot run a program, so
// (a) is its own printk of its command line followed by the root-mount
// panic, and (d) is the stub's TPM_PCR_Read/TPM2_PCR_Read right after its
// extends. The starting values are the firmware replay of the other boots
// under the same TPM version: SeaBIOS boots QEMU's -kernel through the
// same option ROM whatever the disk holds, so PCR 4/5 do not depend on
// the guest (checked: they agree across those boots, and with what the
// stub read before its first extend).
func checkNoInitrd(t *testing.T, p *Parts, c matrixCase, disk string, res *qemutest.Result, base *baseline) {
	con := res.Console
	i := strings.Index(con, "vtpmboot: booting ")
	if i < 0 {
		t.Fatalf("the stub never kexec'd\n%s", res.Tail(6000))
	}
	after := Lines(con[i:])
	var cmdlines []string
	panicked := false
	for _, l := range after {
		if _, rest, ok := strings.Cut(l, "Kernel command line: "); ok {
			cmdlines = append(cmdlines, rest)
		}
		if strings.Contains(l, "VFS: Unable to mount root fs") {
			panicked = true
		}
	}
	if len(cmdlines) != 1 || cmdlines[0] != c.cmdline {
		t.Errorf("second kernel's command line %q, want [%q]", cmdlines, c.cmdline)
	}
	if !panicked {
		t.Errorf("second kernel did not reach its root mount\n%s", res.Tail(4000))
	}

	steps, err := Trace(con)
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != 3 || steps[0].PCR != 4 || steps[1].PCR != 5 || steps[2].PCR != 5 || steps[2].Kind != "initrd" {
		t.Fatalf("stub trace has %d steps: %+v", len(steps), steps)
	}
	var banks []pcrbank.Alg
	for a := range steps[0].After {
		banks = append(banks, a)
	}
	pcrbank.SortAlgs(banks)
	if c.tpm == pcrbank.Version20 && len(banks) < 2 {
		t.Errorf("stub saw banks %v", banks)
	}

	base.wg.Wait()
	base.mu.Lock()
	got := base.got
	base.mu.Unlock()
	if len(got) == 0 {
		t.Fatalf("no other %v boot of the matrix reported a firmware log to take starting values from (run the whole TestMatrix)", c.tpm)
	}
	rp := got[0]
	for _, o := range got[1:] {
		for _, a := range banks {
			for _, i := range []int{4, 5} {
				if !bytes.Equal(o.Value(a, i), rp.Value(a, i)) {
					t.Errorf("%v PCR %d after firmware differs between boots: %x vs %x", a, i, o.Value(a, i), rp.Value(a, i))
				}
			}
		}
	}
	sim := pcrsimPredict(t, p.Pcrsim, disk, banks, rp.Value)
	for _, a := range banks {
		if !bytes.Equal(steps[0].Before[a], rp.Value(a, 4)) || !bytes.Equal(steps[1].Before[a], rp.Value(a, 5)) {
			t.Errorf("%v: the stub read PCR 4 %x / PCR 5 %x before extending, the firmware replay says %x / %x",
				a, steps[0].Before[a], steps[1].Before[a], rp.Value(a, 4), rp.Value(a, 5))
		}
		want4, want5 := expectPCRs(t, a, rp.Value(a, 4), rp.Value(a, 5), c.kernel, nil, c.cmdline)
		got4, got5 := steps[0].After[a], steps[2].After[a]
		if !bytes.Equal(got4, want4) || !bytes.Equal(got5, want5) {
			t.Errorf("%v: TPM read back PCR 4 %x, PCR 5 %x; crypto/sha computes %x, %x", a, got4, got5, want4, want5)
		}
		if !bytes.Equal(sim.Get(a, 4), want4) || !bytes.Equal(sim.Get(a, 5), want5) {
			t.Errorf("%v: pcrsim predicts PCR 4 %x, PCR 5 %x; crypto/sha computes %x, %x", a, sim.Get(a, 4), sim.Get(a, 5), want4, want5)
		}
		t.Logf("%v PCR 4 %x  PCR 5 %x", a, got4, got5)
	}
}

func containsLine(console, prefix string) bool {
	for _, l := range Lines(console) {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}
