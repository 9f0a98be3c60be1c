package e2e

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vtpmboot/vtpmboot/internal/contract"
	"github.com/vtpmboot/vtpmboot/internal/guestdisk"
	"github.com/vtpmboot/vtpmboot/internal/qemutest"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// advCase is one hostile guest disk, booted through the real stub. Exactly
// one of cmdline (outcome a: the stub measures what pcrsim predicts and
// kexecs it) and refuse (outcome b: both refuse, naming the same problem)
// is set. Every case says in its comment which outcome it has, why, and
// where GRUB 2.06 (the boot loader these guests would otherwise run) or
// Linux would read the same bytes differently; docs/adversarial.md has the
// table.
type advCase struct {
	name string
	tpm  pcrbank.Version
	disk func() guestdisk.Disk
	// Outcome (a): the command line the stub must measure and the next
	// kernel must receive, written here by hand from the config on the
	// disk (it may be set by disk when it depends on what real tools
	// did), and the host files the entry's kernel and initrds are.
	cmdline string
	kernel  string
	initrds []string
	// Outcome (b): what both the stub's one FATAL line and pcrsim's one
	// line must say.
	refuse []string
}

// grubCfg is a one-entry grub.cfg booting /boot/vmlinuz with the target
// initrd (timeout set: GRUB would not wait for a person).
func grubCfg(kernel, tag string) string {
	return "set timeout=1\nmenuentry 'vtpmboot adversarial: " + tag + "' {\n\tlinux " + kernel +
		" console=ttyS0 panic=-1 quiet e2e.case=" + tag + "\n\tinitrd /boot/target.img\n}\n"
}

// staleMenuLst is a lower-priority GRUB legacy config whose only entry
// names a kernel that is not on the disk: a search that falls through to
// it fails loudly instead of passing by accident.
const staleMenuLst = "timeout 1\ntitle stale menu.lst (must never be chosen)\nkernel /boot/vmlinuz-menulst root=/dev/vda1\n"

// inlineCfg is short enough for ext4 to keep in a 256-byte inode (60
// bytes in i_block, the rest in the system.data attribute).
const inlineCfg = "set timeout=1\nmenuentry i {\n\tlinux /boot/vmlinuz e2e.case=inline\n}\n"

func advCases(p *Parts) []*advCase {
	file := func(path, src string) guestdisk.File { return guestdisk.File{Path: path, Source: src} }
	text := func(path, s string) guestdisk.File { return guestdisk.File{Path: path, Data: []byte(s)} }
	kernelAndTarget := []guestdisk.File{file("/boot/vmlinuz", p.Kernel), file("/boot/target.img", p.Target)}
	with := func(extra ...guestdisk.File) []guestdisk.File {
		return append(append([]guestdisk.File(nil), kernelAndTarget...), extra...)
	}
	cmdline := func(tag string) string {
		return "BOOT_IMAGE=/boot/vmlinuz console=ttyS0 panic=-1 quiet e2e.case=" + tag
	}
	dup := &advCase{name: "tpm20-ext4-duplicate-dirents", tpm: pcrbank.Version20, kernel: p.Kernel, initrds: []string{p.Target}}
	// (8) Two directory entries named grub.cfg in one block (made by
	// renaming grub.cfX in place; e2fsck would report "duplicate entry").
	// Outcome (a): every reader takes the first entry in block order, and
	// so does ours: GRUB 2.06's fshelp stops at the first match, Linux's
	// linear lookup of a one-block directory (no htree) too. debugfs,
	// not our reader, says which entry comes first and so which command
	// line must boot. Built without metadata_csum, so Linux would read
	// the patched block as well.
	dup.disk = func() guestdisk.Disk {
		return guestdisk.Disk{Partitions: []guestdisk.Partition{{
			FS: "ext4", SizeMB: 64, MkfsArgs: []string{"-O", "^metadata_csum"},
			Files: with(text("/boot/grub/grub.cfg", grubCfg("/boot/vmlinuz", "dup-cfg")), text("/boot/grub/grub.cfX", grubCfg("/boot/vmlinuz", "dup-cfX"))),
			Tweak: func(img string) error {
				first, err := duplicateEntry(img, "/boot/grub", "grub.cfX", "grub.cfg")
				if err != nil {
					return err
				}
				dup.cmdline = cmdline(map[string]string{"grub.cfg": "dup-cfg", "grub.cfX": "dup-cfX"}[first])
				return nil
			},
		}}}
	}
	return []*advCase{
		{
			// (1) metadata_csum on (Debian's default): grub.cfg's inode
			// checksum is broken, menu.lst sits below it. Outcome (a):
			// grub.cfg boots. GRUB 2.06 verifies no ext4 checksum
			// (metadata_csum is a read-only-compatible feature to it),
			// so it reads this grub.cfg too; only Linux would refuse the
			// inode (EFSBADCRC), and neither the stub nor pcrsim asks
			// Linux. Checksums are not a defence here anyway: the guest
			// can recompute them.
			name: "tpm20-ext4-inode-csum", tpm: pcrbank.Version20,
			disk: func() guestdisk.Disk {
				return guestdisk.Disk{Partitions: []guestdisk.Partition{{
					FS: "ext4", SizeMB: 64,
					Files: with(text("/boot/grub/grub.cfg", grubCfg("/boot/vmlinuz", "csum")), text("/boot/grub/menu.lst", staleMenuLst)),
					Tweak: func(img string) error { return breakInodeChecksum(img, "/boot/grub/grub.cfg") },
				}}}
			},
			cmdline: cmdline("csum"), kernel: p.Kernel, initrds: []string{p.Target},
		},
		{
			// (2) mkfs.ext4 -O casefold, /boot flagged casefold (+F), and
			// grub.cfg naming /boot/VMLINUZ where the file is stored as
			// vmlinuz. Outcome (b): the guest's own kernel would fold
			// case and open it, vtpmboot matches names exactly and says
			// so (never "does not exist", which would let a search fall
			// through). GRUB 2.06 refuses the whole filesystem: casefold
			// is an incompatible feature it does not know.
			name: "tpm20-ext4-casefold", tpm: pcrbank.Version20,
			disk: func() guestdisk.Disk {
				return guestdisk.Disk{Table: "mbr", Partitions: []guestdisk.Partition{{
					FS: "ext4", SizeMB: 64, MkfsArgs: []string{"-O", "casefold"},
					Files: with(text("/boot/grub/grub.cfg", grubCfg("/boot/VMLINUZ", "casefold"))),
					Tweak: func(img string) error { return setInodeFlag(img, "/boot", 0x40000000) },
				}}}
			},
			refuse: []string{`"VMLINUZ" is not in this case-insensitive (casefold) directory but "vmlinuz" is`, "/boot/VMLINUZ"},
		},
		{
			// (3) A polyglot: a complete FAT16 filesystem whose reserved
			// sectors hold a complete ext4 filesystem, each with its own
			// grub.cfg (blkid: "ambivalent result"). Outcome (b): refused
			// as ambiguous. GRUB 2.06 takes whichever filesystem driver
			// is first in its list (the last one loaded), so what it
			// boots depends on its core image and insmods; Linux's
			// mount and blkid disagree as well.
			name: "tpm12-polyglot-ext4-fat", tpm: pcrbank.Version12,
			disk: func() guestdisk.Disk {
				return guestdisk.Disk{Partitions: []guestdisk.Partition{{
					FS: "vfat", SizeMB: 40, MkfsArgs: []string{"-F", "16", "-R", "32768"},
					Files: with(text("/boot/grub/grub.cfg", grubCfg("/boot/vmlinuz", "fat-side"))),
					Tweak: func(img string) error {
						return polyglot(img, guestdisk.Partition{FS: "ext4", SizeMB: 16,
							Files: with(text("/boot/grub/grub.cfg", grubCfg("/boot/vmlinuz", "ext-side")))})
					},
				}}}
			},
			refuse: []string{"ambiguous: an ext superblock and a vfat signature in the first 1024 bytes"},
		},
		{
			// (4) FAT: grub.cfg names the 8.3 alias (VMLINU~1, mtools'
			// choice, checked with mdir) of a long-named kernel.
			// Outcome (b): "does not exist". GRUB 2.06's fat.c compares
			// only the long name when a valid one is there, exactly as
			// we do; Linux's vfat would open the alias.
			name: "tpm20-fat-short-alias", tpm: pcrbank.Version20,
			disk: func() guestdisk.Disk {
				return guestdisk.Disk{Table: "mbr", Partitions: []guestdisk.Partition{{
					FS: "vfat", SizeMB: 32,
					Files: []guestdisk.File{
						text("/boot/grub/grub.cfg", grubCfg("/boot/VMLINU~1", "short-alias")),
						file("/boot/vmlinuz-debian-longname", p.Kernel), file("/boot/target.img", p.Target),
					},
					Tweak: func(img string) error { return checkFATAlias(img, "::/boot", "VMLINU~1", "vmlinuz-debian-longname") },
				}}}
			},
			refuse: []string{"open /boot/VMLINU~1", "file does not exist"},
		},
		{
			// (5) Partition 1 is ext4 with a broken superblock (0
			// inodes per group), partition 2 a good /boot. Outcome (b):
			// the one rule (discover.Choose) refuses to pass over a corrupt
			// filesystem searched before the configuration it found.
			// GRUB itself never searches partitions in order (its
			// prefix is baked into core.img), so a GRUB installed on
			// partition 2 would boot; vtpmboot cannot know which
			// partition a loader was meant to read, and a guest that
			// breaks its primary /boot must not get a leftover booted.
			name: "tpm12-corrupt-p1-good-p2", tpm: pcrbank.Version12,
			disk: func() guestdisk.Disk {
				return guestdisk.Disk{Table: "mbr", Partitions: []guestdisk.Partition{
					{FS: "ext4", SizeMB: 16, Corrupt: true, Files: []guestdisk.File{text("/boot/grub/grub.cfg", grubCfg("/boot/vmlinuz-p1", "p1"))}},
					{FS: "ext4", SizeMB: 64, Files: with(text("/boot/grub/grub.cfg", grubCfg("/boot/vmlinuz", "p2")))},
				}}
			},
			refuse: []string{"partition 1", "ext4 superblock: corrupt: 0 inodes per group", "is searched before", "which holds /boot/grub/grub.cfg", "vtpmboot.disk="},
		},
		{
			// (6) Symlinks that only make sense inside the guest: the
			// kernel /boot/vmlinuz -> /etc/kernels/vmlinuz-real
			// (absolute), the initrd /boot/target.img ->
			// ../../../../../../etc/kernels/target-real (climbing past
			// the root), grub.cfg -> /etc/grub-real.cfg. None of these
			// paths exists on the host. Outcome (a): all resolve inside
			// the guest filesystem (absolute targets restart at its
			// root, ".." stops there), as GRUB 2.06's fshelp resolves
			// them; GRUB allows 8 links in a row where we allow 40.
			name: "tpm12-symlinks-inside-guest", tpm: pcrbank.Version12,
			disk: func() guestdisk.Disk {
				return guestdisk.Disk{Table: "mbr", Partitions: []guestdisk.Partition{{
					FS: "ext4", SizeMB: 64, Files: []guestdisk.File{
						file("/etc/kernels/vmlinuz-real", p.Kernel), file("/etc/kernels/target-real", p.Target),
						{Path: "/boot/vmlinuz", Symlink: "/etc/kernels/vmlinuz-real"},
						{Path: "/boot/target.img", Symlink: "../../../../../../etc/kernels/target-real"},
						text("/etc/grub-real.cfg", grubCfg("/boot/vmlinuz", "symlinks")),
						{Path: "/boot/grub/grub.cfg", Symlink: "/etc/grub-real.cfg"},
					},
				}}}
			},
			cmdline: cmdline("symlinks"), kernel: p.Kernel, initrds: []string{p.Target},
		},
		{
			// (7) ext4 inline_data: grub.cfg's bytes live in its inode,
			// and debugfs sets its size to 4000, more than the inode
			// holds; menu.lst sits below it. Outcome (b): refused as
			// corrupt, so menu.lst is not reached. Linux would read the
			// missing bytes as zeros (and e2fsck 1.47 accepts the
			// inode); GRUB 2.06 refuses the whole filesystem, since it
			// does not know the inline_data feature.
			name: "tpm20-ext4-inline-size", tpm: pcrbank.Version20,
			disk: func() guestdisk.Disk {
				return guestdisk.Disk{Partitions: []guestdisk.Partition{{
					FS: "ext4", SizeMB: 64, MkfsArgs: []string{"-O", "inline_data"},
					Files: with(text("/boot/grub/grub.cfg", inlineCfg), text("/boot/grub/menu.lst", staleMenuLst)),
					Tweak: func(img string) error { return growInline(img, "/boot/grub/grub.cfg", 4000) },
				}}}
			},
			refuse: []string{"boot/grub/grub.cfg on ", fmt.Sprintf("size 4000 but only %d bytes of inline data", len(inlineCfg))},
		},
		dup,
		{
			// (9) GPT whose primary header fails its CRC (one byte of
			// the disk GUID flipped) while the backup is intact (fdisk:
			// "the backup appears OK, so that will be used"). Outcome
			// (b): the disk is refused. Readers disagree here: GRUB
			// 2.06 reads the primary without checking any CRC, Linux
			// ignores the whole table (it reads the backup only when the
			// primary is valid, unless booted with "gpt"), fdisk and
			// parted take the backup.
			name: "tpm12-gpt-bad-primary", tpm: pcrbank.Version12,
			disk: func() guestdisk.Disk {
				return guestdisk.Disk{Table: "gpt", Partitions: []guestdisk.Partition{
					{FS: "ext4", SizeMB: 64, Files: with(text("/boot/grub/grub.cfg", grubCfg("/boot/vmlinuz", "gpt")))},
				}, Tweak: breakPrimaryGPT}
			},
			refuse: []string{"GPT header: corrupt: CRC32 is", "the backup header is not used instead"},
		},
	}
}

// caseTime is where one case's wall time went, for the summary: building
// the disk, waiting for a boot slot (other boots of this run or of other
// tests on the machine), the boot itself, and the checks (pcrsim runs).
type caseTime struct {
	name, outcome             string
	build, wait, qemu, checks time.Duration
}

// TestAdversarial boots each hostile guest disk through the real stub
// under QEMU and swtpm and checks the outcome its case declares:
// (a) the stub's measured digests (its trace) equal pcrsim's prediction
// from the same image, each also equals crypto/sha* over the file or
// command line the test wrote, every extend reads back as
// H(before ‖ digest), and the next kernel boots with that command line
// and reads those PCR values; or (b) the stub prints exactly one FATAL
// line, extends nothing, powers off, and pcrsim exits 2 with one line,
// both naming the problem. The disk is unchanged after every boot.
func TestAdversarial(t *testing.T) {
	t.Parallel()
	p := needParts(t)
	testenv.NeedCommands(t, "debugfs", "blkid", "fdisk", "mdir", "mtype")
	var mu sync.Mutex
	var times []caseTime
	t.Cleanup(func() {
		sort.Slice(times, func(i, j int) bool { return times[i].name < times[j].name })
		var b strings.Builder
		for _, c := range times {
			fmt.Fprintf(&b, "\n  %-30s %-8s disk %4.1fs  waited %5.1fs  QEMU %5.1fs  checks %4.1fs",
				c.name, c.outcome, c.build.Seconds(), c.wait.Seconds(), c.qemu.Seconds(), c.checks.Seconds())
		}
		t.Logf("time per case (%d):%s", len(times), b.String())
	})
	for _, c := range advCases(p) {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			t0 := time.Now()
			disk, sum := buildDisk(t, c.disk())
			t1 := time.Now()
			res := boot(t, qemutest.Options{
				Kernel: p.Kernel, Initrd: p.Stub, Append: StubAppend("quiet"),
				Disks: []qemutest.Disk{{Path: disk}}, TPM: c.tpm,
			})
			t2 := time.Now()
			checkDiskUnchanged(t, disk, sum)
			outcome := "boots"
			if c.refuse != nil {
				outcome = "refuses"
				checkBothRefuse(t, p, c, disk, res)
			} else {
				checkAgree(t, p, c, disk, res)
			}
			checkDiskUnchanged(t, disk, sum)
			mu.Lock()
			times = append(times, caseTime{c.name, outcome, t1.Sub(t0), t2.Sub(t1) - res.Duration, res.Duration, time.Since(t2)})
			mu.Unlock()
		})
	}
}

// checkBothRefuse is outcome (b).
func checkBothRefuse(t *testing.T, p *Parts, c *advCase, disk string, res *qemutest.Result) {
	t.Helper()
	fatal := neverRan(t, res, c.refuse...)
	if before, _, _ := strings.Cut(res.Console, fatal); strings.Contains(before, "extend PCR") {
		t.Errorf("the stub extended a PCR before refusing\n%s", res.Tail(4000))
	}
	out, errOut, code := runPcrsim(t, p.Pcrsim, "predict", "--disk", disk, "--format", "json")
	lines := strings.Split(strings.TrimSuffix(errOut, "\n"), "\n")
	if code != 2 || len(lines) != 1 || out != "" {
		t.Fatalf("pcrsim exit %d, %d stderr lines, stdout %q; want exit 2, one line, nothing on stdout:\n%s", code, len(lines), out, errOut)
	}
	for _, w := range c.refuse {
		if !strings.Contains(lines[0], w) {
			t.Errorf("pcrsim's error %q lacks %q", lines[0], w)
		}
	}
	t.Logf("pcrsim: %s", lines[0])
}

// checkAgree is outcome (a).
func checkAgree(t *testing.T, p *Parts, c *advCase, disk string, res *qemutest.Result) {
	t.Helper()
	if f := FatalLines(res.Console); len(f) > 0 || res.ExitErr != nil {
		t.Fatalf("stub failed (QEMU exit %v): %q\n%s", res.ExitErr, f, res.Tail(6000))
	}
	steps, err := Trace(res.Console)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		pcr  int
		kind string
	}{{4, "kernel"}, {5, "cmdline"}, {5, "initrd"}}
	if len(steps) != len(want) {
		t.Fatalf("stub trace has %d extends, want 3: %+v", len(steps), steps)
	}
	for i, w := range want {
		if steps[i].PCR != w.pcr || steps[i].Kind != w.kind {
			t.Fatalf("extend %d is %s into PCR %d, want %s into PCR %d", i+1, steps[i].Kind, steps[i].PCR, w.kind, w.pcr)
		}
	}
	var banks []pcrbank.Alg
	for a := range steps[0].Digest {
		banks = append(banks, a)
	}
	pcrbank.SortAlgs(banks)
	if c.tpm == pcrbank.Version12 && (len(banks) != 1 || banks[0] != pcrbank.SHA1) || c.tpm == pcrbank.Version20 && len(banks) < 2 {
		t.Fatalf("TPM %v: stub measured banks %v", c.tpm, banks)
	}
	// pcrsim's prediction from the same image, bank by bank.
	var names []string
	for _, a := range banks {
		names = append(names, a.String())
	}
	out, errOut, code := runPcrsim(t, p.Pcrsim, "predict", "--disk", disk, "--bank", strings.Join(names, ","), "--format", "json")
	if code != 0 {
		t.Fatalf("pcrsim exit %d: %s", code, errOut)
	}
	var doc struct {
		Events []struct {
			PCR     int               `json:"pcr"`
			Kind    string            `json:"kind"`
			Digests map[string]string `json:"digests"`
		} `json:"events"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("pcrsim output: %v\n%s", err, out)
	}
	if len(doc.Events) != len(steps) {
		t.Fatalf("pcrsim predicts %d events, the stub extended %d", len(doc.Events), len(steps))
	}
	// Independent of both: the contract oracle (crypto/sha* only) over the
	// files the test put on the disk and the command line written above.
	boot := contract.Boot{Kernel: readHost(t, c.kernel), Cmdline: c.cmdline}
	for _, f := range c.initrds {
		boot.Initrds = append(boot.Initrds, readHost(t, f))
	}
	for i, s := range steps {
		ev := doc.Events[i]
		if ev.PCR != s.PCR || ev.Kind != s.Kind {
			t.Errorf("event %d: pcrsim %s into PCR %d, stub %s into PCR %d", i+1, ev.Kind, ev.PCR, s.Kind, s.PCR)
		}
		for _, a := range banks {
			sim, err := hex.DecodeString(ev.Digests[a.String()])
			if err != nil || !bytes.Equal(sim, s.Digest[a]) {
				t.Errorf("%s %v: the stub measured %x, pcrsim predicts %q", s.Kind, a, s.Digest[a], ev.Digests[a.String()])
			}
			h := contract.Hash(a.String())
			if w := boot.Digests(h)[i]; !bytes.Equal(s.Digest[a], w) {
				t.Errorf("%s %v: the stub measured %x, the contract oracle over the test's own input gives %x", s.Kind, a, s.Digest[a], w)
			}
			if !bytes.Equal(s.After[a], contract.Extend(h, s.Before[a], s.Digest[a])) {
				t.Errorf("%s %v: PCR %d read %x after extending %x onto %x", s.Kind, a, s.PCR, s.After[a], s.Digest[a], s.Before[a])
			}
		}
	}
	// The stub kexec'd: the next kernel runs with that command line and
	// reads the PCRs the trace ended on.
	r, err := qemutest.ParseTarget(res.Console)
	if err != nil {
		t.Fatalf("no target report (did kexec work?): %v\n%s", err, res.Tail(6000))
	}
	if r.Cmdline != c.cmdline+"\n" {
		t.Errorf("target /proc/cmdline %q, want %q", r.Cmdline, c.cmdline+"\n")
	}
	for _, a := range banks {
		if got, want := r.PCRs[a][4], steps[0].After[a]; !bytes.Equal(got, want) {
			t.Errorf("%v PCR 4: target read %x, the stub left %x", a, got, want)
		}
		if got, want := r.PCRs[a][5], steps[2].After[a]; !bytes.Equal(got, want) {
			t.Errorf("%v PCR 5: target read %x, the stub left %x", a, got, want)
		}
	}
	t.Logf("booted %q; banks %v agree with pcrsim and the contract oracle", c.cmdline, banks)
}

func readHost(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// runPcrsim runs the pcrsim binary as an operator would.
func runPcrsim(t *testing.T, pcrsim string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command(pcrsim, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("pcrsim %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errb.String(), code
}

// The image tweaks. Each finds its offsets with e2fsprogs or mtools and
// checks with them that the damage is what the case claims, so a tweak
// that silently did nothing fails the build instead of passing the case.

// breakInodeChecksum inverts both halves of an inode's metadata_csum
// checksum (i_checksum_lo at 0x7C, i_checksum_hi at 0x82).
func breakInodeChecksum(img, path string) error {
	off, err := guestdisk.InodeOffset(img, path)
	if err != nil {
		return err
	}
	if err := guestdisk.Flip(img, off+0x7C, 2); err != nil {
		return err
	}
	if err := guestdisk.Flip(img, off+0x82, 2); err != nil {
		return err
	}
	if _, err := guestdisk.Debugfs(img, "stat "+path); err == nil || !strings.Contains(err.Error(), "Inode checksum does not match inode") {
		return fmt.Errorf("debugfs does not see a bad checksum on %s: %v", path, err)
	}
	return nil
}

var flagsRE = regexp.MustCompile(`Flags: 0x([0-9a-f]+)`)

func inodeFlags(img, path string) (uint64, error) {
	out, err := guestdisk.Debugfs(img, "stat "+path)
	if err != nil {
		return 0, err
	}
	m := flagsRE.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("debugfs stat %s: no flags in %q", path, out)
	}
	return strconv.ParseUint(m[1], 16, 32)
}

// setInodeFlag ORs flag into an inode's i_flags, as chattr would.
func setInodeFlag(img, path string, flag uint64) error {
	f, err := inodeFlags(img, path)
	if err != nil {
		return err
	}
	if _, err := guestdisk.DebugfsWrite(img, fmt.Sprintf("set_inode_field %s flags 0x%x", path, f|flag)); err != nil {
		return err
	}
	if g, err := inodeFlags(img, path); err != nil || g != f|flag {
		return fmt.Errorf("%s: flags 0x%x after setting 0x%x: %v", path, g, f|flag, err)
	}
	return nil
}

// growInline sets an inline-data inode's size beyond the bytes it holds.
func growInline(img, path string, size int) error {
	out, err := guestdisk.Debugfs(img, "stat "+path)
	if err != nil {
		return err
	}
	if !strings.Contains(out, "Size of inline data:") {
		return fmt.Errorf("%s is not stored inline:\n%s", path, out)
	}
	if _, err := guestdisk.DebugfsWrite(img, fmt.Sprintf("set_inode_field %s size %d", path, size)); err != nil {
		return err
	}
	if out, err := guestdisk.Debugfs(img, "stat "+path); err != nil || !strings.Contains(out, fmt.Sprintf("Size: %d\n", size)) {
		return fmt.Errorf("%s: size not set to %d: %v\n%s", path, size, err, out)
	}
	return nil
}

// duplicateEntry renames the directory entry from (same length) to to
// in place, in dir's first block, and returns which of the two original
// names now comes first in block order, as debugfs lists it.
func duplicateEntry(img, dir, from, to string) (first string, err error) {
	ino := func(name string) (string, error) {
		out, err := guestdisk.Debugfs(img, "stat "+dir+"/"+name)
		if err != nil {
			return "", err
		}
		m := regexp.MustCompile(`Inode: (\d+) `).FindStringSubmatch(out)
		if m == nil {
			return "", fmt.Errorf("debugfs stat %s/%s: %q", dir, name, out)
		}
		return m[1], nil
	}
	fromIno, err := ino(from)
	if err != nil {
		return "", err
	}
	toIno, err := ino(to)
	if err != nil {
		return "", err
	}
	blocks, err := guestdisk.Blocks(img, dir)
	if err != nil {
		return "", err
	}
	bs, err := guestdisk.BlockSize(img)
	if err != nil {
		return "", err
	}
	blk, err := guestdisk.ReadAt(img, blocks[0]*bs, int(bs))
	if err != nil {
		return "", err
	}
	// name_len, file type, then the name: unique enough in one block.
	needle := append([]byte{byte(len(from)), 1}, from...)
	i := bytes.Index(blk, needle)
	if i < 0 || bytes.Count(blk, needle) != 1 || len(from) != len(to) {
		return "", fmt.Errorf("%s: entry %q not found once in block %d", dir, from, blocks[0])
	}
	if err := guestdisk.Patch(img, blocks[0]*bs+int64(i+2), []byte(to)); err != nil {
		return "", err
	}
	// debugfs ls -l prints entries in block order: "inode mode (type) ...
	// name". Both lines must now be named to.
	out, err := guestdisk.Debugfs(img, "ls -l "+dir)
	if err != nil {
		return "", err
	}
	var order []string
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) > 0 && f[len(f)-1] == to {
			order = append(order, f[0])
		}
	}
	if len(order) != 2 {
		return "", fmt.Errorf("debugfs lists %d entries named %s in %s, want 2:\n%s", len(order), to, dir, out)
	}
	switch order[0] {
	case fromIno:
		return from, nil
	case toIno:
		return to, nil
	}
	return "", fmt.Errorf("debugfs lists inodes %v for %s, want %s and %s", order, to, fromIno, toIno)
}

// polyglot writes an ext filesystem built from ext into the FAT image at
// img, leaving the FAT boot sector (the first 1024 bytes, which ext does
// not use) in place; img's reserved sectors must cover ext. Both must
// stay readable by their own tools, and blkid must see both.
func polyglot(img string, ext guestdisk.Partition) error {
	e := img + ".ext"
	if err := guestdisk.BuildFS(ext, e); err != nil {
		return err
	}
	defer os.Remove(e)
	b, err := os.ReadFile(e)
	if err != nil {
		return err
	}
	if err := guestdisk.Patch(img, 1024, b[1024:]); err != nil {
		return err
	}
	if out, err := exec.Command("mtype", "-i", img, "::/boot/grub/grub.cfg").CombinedOutput(); err != nil || !strings.Contains(string(out), "e2e.case=fat-side") {
		return fmt.Errorf("mtype: the FAT side lost its grub.cfg: %v: %s", err, out)
	}
	if out, err := guestdisk.Debugfs(img, "cat /boot/grub/grub.cfg"); err != nil || !strings.Contains(out, "e2e.case=ext-side") {
		return fmt.Errorf("debugfs: the ext side lost its grub.cfg: %v: %s", err, out)
	}
	if out, _ := exec.Command("blkid", "-p", img).CombinedOutput(); !strings.Contains(string(out), "ambivalent") {
		return fmt.Errorf("blkid -p does not find two filesystems: %s", out)
	}
	return nil
}

// checkFATAlias makes sure mtools gave the long name the 8.3 alias the
// case names (mdir lists "ALIAS  size date time  long name").
func checkFATAlias(img, dir, alias, long string) error {
	out, err := exec.Command("mdir", "-i", img, dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("mdir: %v: %s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) > 1 && f[0] == alias && f[len(f)-1] == long {
			return nil
		}
	}
	return fmt.Errorf("mdir shows no %s alias for %s:\n%s", alias, long, out)
}

// breakPrimaryGPT flips a byte of the primary header's disk GUID (LBA 1,
// offset 56), so its CRC fails while the backup header stays intact, and
// checks that fdisk says exactly that.
func breakPrimaryGPT(img string) error {
	if err := guestdisk.Flip(img, 512+56, 1); err != nil {
		return err
	}
	out, _ := exec.Command("fdisk", "-l", img).CombinedOutput()
	if !strings.Contains(string(out), "The primary GPT table is corrupt, but the backup appears OK") {
		return fmt.Errorf("fdisk -l does not report a bad primary and a good backup GPT:\n%s", out)
	}
	return nil
}
