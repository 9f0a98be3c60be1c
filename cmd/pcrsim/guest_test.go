package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vtpmboot/vtpmboot/internal/contract"
	"github.com/vtpmboot/vtpmboot/internal/fakekernel"
	"github.com/vtpmboot/vtpmboot/internal/guestdisk"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
)

// These tests build real guest disks with mkfs/sfdisk (internal/guestdisk)
// and run the built pcrsim on them. Expected PCRs are computed here with
// crypto/sha1 and crypto/sha256 from the random file bytes and a command
// line written by hand from each format's documented rule
// (docs/config-*.md), never from pcrsim's own output.

func needDiskTools(t *testing.T) {
	t.Helper()
	testenv.NeedCommands(t, "mkfs.ext4", "mkfs.xfs", "mkfs.vfat", "mcopy", "sfdisk", "dd")
}

func rnd(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// kern is a kernel of n bytes: a setup header kexec accepts, then random
// bytes.
func kern(n int) []byte { return fakekernel.Image(rnd(n - 1024)) }

// want is a boot whose PCRs the contract oracle (internal/contract)
// computes independently.
type want struct {
	kernel  []byte
	initrds [][]byte
	cmdline string
}

func (w want) pcrs() map[string]map[string]string {
	b := contract.Boot{Kernel: w.kernel, Initrds: w.initrds, Cmdline: w.cmdline}
	out := map[string]map[string]string{}
	for _, bank := range []string{"sha1", "sha256"} {
		h := contract.Hash(bank)
		out[bank] = map[string]string{"4": hex.EncodeToString(b.PCR4(h, nil)), "5": hex.EncodeToString(b.PCR5(h, nil))}
	}
	return out
}

type guestDoc struct {
	Guest  string `json:"guest"`
	Config string `json:"config"`
	Entry  *struct {
		Partition string   `json:"partition"`
		Format    string   `json:"format"`
		MenuPath  string   `json:"menu_path"`
		Title     string   `json:"title"`
		ID        string   `json:"id"`
		Kernel    string   `json:"kernel"`
		Initrds   []string `json:"initrds"`
		Cmdline   string   `json:"cmdline"`
	} `json:"entry"`
	Reason string                       `json:"reason"`
	Notes  []string                     `json:"notes"`
	Error  string                       `json:"error"`
	Banks  map[string]map[string]string `json:"banks"`
	Events []struct {
		Kind, Source string
	} `json:"events"`
}

func checkBanks(t *testing.T, what string, got map[string]map[string]string, w want) {
	t.Helper()
	exp := w.pcrs()
	for bank, pcrs := range exp {
		for p, v := range pcrs {
			if got[bank][p] != v {
				t.Errorf("%s: %s PCR %s = %q, want %s (cmdline %q)", what, bank, p, got[bank][p], v, w.cmdline)
			}
		}
	}
}

func predictDoc(t *testing.T, args ...string) guestDoc {
	t.Helper()
	r := pcrsim(t, nil, append([]string{"predict", "--format", "json"}, args...)...)
	if r.code != 0 {
		t.Fatalf("pcrsim predict %q: exit %d: %s", args, r.code, r.stderr)
	}
	var d guestDoc
	if err := json.Unmarshal([]byte(r.stdout), &d); err != nil {
		t.Fatalf("decode %q: %v", r.stdout, err)
	}
	return d
}

func buildDisk(t *testing.T, d guestdisk.Disk) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	if err := guestdisk.Build(d, p); err != nil {
		t.Fatal(err)
	}
	return p
}

// formatCase is one boot-config format on a real disk, with the command
// line each documented rule produces for the default entry.
type formatCase struct {
	name  string
	disk  guestdisk.Disk
	want  want
	entry string // expected default entry title
}

func formatCases() []formatCase {
	k, i1, i2 := kern(3<<20+11), rnd(1<<20+5), rnd(70001)
	var cs []formatCase

	// GRUB2 (docs/config-grub2.md): "BOOT_IMAGE=" + the linux arguments,
	// file name included, re-quoted (an argument with a space gets double
	// quotes). default=1 picks the second entry.
	cs = append(cs, formatCase{name: "grub2 mbr ext4", entry: "Rescue", disk: guestdisk.Disk{Table: "mbr", Partitions: []guestdisk.Partition{{
		FS: "ext4", SizeMB: 16, Files: []guestdisk.File{
			{Path: "/boot/grub/grub.cfg", Data: []byte("set default=1\nset timeout=5\n" +
				"menuentry 'Debian GNU/Linux' --id debian {\n\tlinux /boot/vmlinuz root=/dev/xvda1 ro quiet\n\tinitrd /boot/initrd.img\n}\n" +
				"menuentry 'Rescue' --id rescue {\n\tlinux /boot/vmlinuz root=/dev/xvda1   single \"msg=a b\"\n\tinitrd /boot/initrd.img /boot/extra.img\n}\n")},
			{Path: "/boot/vmlinuz", Data: k}, {Path: "/boot/initrd.img", Data: i1}, {Path: "/boot/extra.img", Data: i2},
		}}}},
		want: want{k, [][]byte{i1, i2}, `BOOT_IMAGE=/boot/vmlinuz root=/dev/xvda1 single "msg=a b"`}})

	// GRUB legacy (docs/config-grublegacy.md): the text after the kernel
	// file name and its blanks, verbatim (inner runs and the trailing
	// blank kept; a TAB becomes a space); nothing added.
	cs = append(cs, formatCase{name: "grub-legacy bare ext3", entry: "Xen guest", disk: guestdisk.Disk{Partitions: []guestdisk.Partition{{
		FS: "ext3", SizeMB: 16, Files: []guestdisk.File{
			{Path: "/boot/grub/menu.lst", Data: []byte("default 0\ntimeout 5\n\ntitle Xen guest\n\troot (hd0,0)\n\tkernel /boot/vmlinuz-2.6 root=/dev/xvda1 ro  console=hvc0\tquiet \n\tinitrd /boot/initrd-2.6.img\n")},
			{Path: "/boot/vmlinuz-2.6", Data: k}, {Path: "/boot/initrd-2.6.img", Data: i1},
		}}}},
		want: want{k, [][]byte{i1}, "root=/dev/xvda1 ro  console=hvc0 quiet "}})

	// syslinux (docs/config-syslinux.md): "BOOT_IMAGE=<kernel as written>
	// <APPEND text> initrd=<INITRD text>", APPEND verbatim.
	cs = append(cs, formatCase{name: "syslinux mbr vfat", entry: "Alpine", disk: guestdisk.Disk{Table: "mbr", Partitions: []guestdisk.Partition{{
		FS: "vfat", SizeMB: 16, Files: []guestdisk.File{
			{Path: "/boot/extlinux/extlinux.conf", Data: []byte("DEFAULT lts\nLABEL lts\n  MENU LABEL Alpine\n  KERNEL /boot/vmlinuz-lts\n  APPEND root=/dev/xvda1 modules=ext4  quiet\n  INITRD /boot/initramfs-lts\n")},
			{Path: "/boot/vmlinuz-lts", Data: k}, {Path: "/boot/initramfs-lts", Data: i1},
		}}}},
		want: want{k, [][]byte{i1}, "BOOT_IMAGE=/boot/vmlinuz-lts root=/dev/xvda1 modules=ext4  quiet initrd=/boot/initramfs-lts"}})

	// BLS without grub.cfg (docs/config-bls.md, systemd-boot rules): the
	// options as written, nothing added; several initrd lines in order.
	cs = append(cs, formatCase{name: "bls gpt ext4", entry: "Fedora Linux", disk: guestdisk.Disk{Table: "gpt", Partitions: []guestdisk.Partition{{
		FS: "ext4", SizeMB: 16, Files: []guestdisk.File{
			{Path: "/loader/entries/fedora-6.1.conf", Data: []byte("title Fedora Linux\nversion 6.1\nlinux /vmlinuz-6.1\ninitrd /microcode.img\ninitrd /initramfs-6.1.img\noptions root=UUID=0b7ea5e1 ro rhgb quiet\n")},
			{Path: "/vmlinuz-6.1", Data: k}, {Path: "/microcode.img", Data: i2}, {Path: "/initramfs-6.1.img", Data: i1},
		}}}},
		want: want{k, [][]byte{i2, i1}, "root=UUID=0b7ea5e1 ro rhgb quiet"}})

	// RHEL 8/9 on XFS /boot (docs/config-bls.md): grub2/grub.cfg loads
	// grubenv and runs blscfg; saved_entry picks the older kernel, whose
	// options are grubenv's $kernelopts; BOOT_IMAGE gets ($root).
	rhelEnv := "# GRUB Environment Block\nsaved_entry=0123abcd-5.14.0-70.el9.x86_64\nkernelopts=root=/dev/mapper/rhel-root ro crashkernel=auto resume=/dev/mapper/rhel-swap rhgb quiet\nboot_success=0\n"
	rhelEnv += strings.Repeat("#", 1024-len(rhelEnv))
	cs = append(cs, formatCase{name: "blscfg gpt xfs (RHEL)", entry: "Red Hat Enterprise Linux (5.14.0-70.el9.x86_64) 9.0", disk: guestdisk.Disk{Table: "gpt", Partitions: []guestdisk.Partition{{
		FS: "xfs", SizeMB: 64, Label: "boot", Files: []guestdisk.File{
			{Path: "/grub2/grub.cfg", Data: []byte("set pager=1\nif [ -f ${config_directory}/grubenv ]; then\n  load_env -f ${config_directory}/grubenv\nelif [ -s $prefix/grubenv ]; then\n  load_env\nfi\n" +
				"if [ \"${next_entry}\" ] ; then\n   set default=\"${next_entry}\"\nelse\n   set default=\"${saved_entry}\"\nfi\ninsmod part_gpt\ninsmod xfs\nset root='hd0,gpt1'\nset timeout=5\ninsmod blscfg\nblscfg\n")},
			{Path: "/grub2/grubenv", Data: []byte(rhelEnv)},
			{Path: "/loader/entries/0123abcd-5.14.0-70.el9.x86_64.conf", Data: []byte("title Red Hat Enterprise Linux (5.14.0-70.el9.x86_64) 9.0\nversion 5.14.0-70.el9.x86_64\nlinux /vmlinuz-5.14.0-70.el9.x86_64\ninitrd /initramfs-5.14.0-70.el9.x86_64.img\noptions $kernelopts\nid rhel-20220315-5.14.0-70.el9.x86_64\ngrub_users $grub_users\ngrub_arg --unrestricted\ngrub_class rhel\n")},
			{Path: "/loader/entries/0123abcd-5.14.0-362.el9.x86_64.conf", Data: []byte("title Red Hat Enterprise Linux (5.14.0-362.el9.x86_64) 9.3\nversion 5.14.0-362.el9.x86_64\nlinux /vmlinuz-5.14.0-362.el9.x86_64\ninitrd /initramfs-5.14.0-362.el9.x86_64.img\noptions $kernelopts\ngrub_class rhel\n")},
			{Path: "/vmlinuz-5.14.0-70.el9.x86_64", Data: k}, {Path: "/initramfs-5.14.0-70.el9.x86_64.img", Data: i1},
			{Path: "/vmlinuz-5.14.0-362.el9.x86_64", Data: i2}, {Path: "/initramfs-5.14.0-362.el9.x86_64.img", Data: i2},
		}}}},
		want: want{k, [][]byte{i1}, "BOOT_IMAGE=(hd0,gpt1)/vmlinuz-5.14.0-70.el9.x86_64 root=/dev/mapper/rhel-root ro crashkernel=auto resume=/dev/mapper/rhel-swap rhgb quiet"}})
	return cs
}

func TestPredictDiskFormats(t *testing.T) {
	needDiskTools(t)
	for _, tc := range formatCases() {
		t.Run(tc.name, func(t *testing.T) {
			img := buildDisk(t, tc.disk)
			d := predictDoc(t, "--disk", img)
			checkBanks(t, tc.name, d.Banks, tc.want)
			if d.Entry == nil || d.Entry.Title != tc.entry || d.Entry.Cmdline != tc.want.cmdline {
				t.Errorf("entry %+v, want title %q cmdline %q", d.Entry, tc.entry, tc.want.cmdline)
			}
			if d.Reason == "" || len(d.Events) != 3 {
				t.Errorf("reason %q, %d events", d.Reason, len(d.Events))
			}
			// The same tree mounted (here: written to a directory) gives
			// the same prediction through --root.
			root := t.TempDir()
			for _, f := range tc.disk.Partitions[0].Files {
				p := filepath.Join(root, f.Path)
				os.MkdirAll(filepath.Dir(p), 0o755)
				if err := os.WriteFile(p, f.Data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			r := predictDoc(t, "--root", root)
			checkBanks(t, tc.name+" --root", r.Banks, tc.want)
			// text output says what boots first, quoted.
			tr := pcrsim(t, nil, "predict", "--disk", img)
			if tr.code != 0 || !strings.HasPrefix(tr.stdout, "boots \"") {
				t.Errorf("text: exit %d, stdout %q", tr.code, tr.stdout)
			}
		})
	}
}

func TestPredictDiskEntrySelection(t *testing.T) {
	needDiskTools(t)
	tc := formatCases()[0]
	img := buildDisk(t, tc.disk)
	first := want{tc.want.kernel, tc.want.initrds[:1], "BOOT_IMAGE=/boot/vmlinuz root=/dev/xvda1 ro quiet"}
	for _, c := range []struct {
		sel string
		w   want
	}{
		{"0", first}, {"debian", first}, {"Debian GNU/Linux", first},
		{"1", tc.want}, {"rescue", tc.want}, {"Rescue", tc.want},
	} {
		d := predictDoc(t, "--disk", img, "--entry", c.sel)
		checkBanks(t, "--entry "+c.sel, d.Banks, c.w)
	}
	r := pcrsim(t, nil, "predict", "--disk", img, "--entry", "7")
	if r.code != 2 || !strings.Contains(r.stderr, `no entry at position "7"`) || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("--entry 7: exit %d, %q", r.code, r.stderr)
	}
	// verify takes the same inputs.
	exp := tc.want.pcrs()
	yaml := fmt.Sprintf("  sha256:\n    4 : 0x%s\n    5 : 0x%s\n", exp["sha256"]["4"], exp["sha256"]["5"])
	actual := filepath.Join(t.TempDir(), "a.yaml")
	os.WriteFile(actual, []byte(yaml), 0o644)
	if r := pcrsim(t, nil, "verify", "--disk", img, "--actual", actual); r.code != 0 {
		t.Errorf("verify --disk: exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
}

func TestPredictDiskList(t *testing.T) {
	needDiskTools(t)
	k := kern(5000)
	// A live grub.cfg next to a stale menu.lst: GRUB2 wins (pygrub's
	// order), menu.lst is listed as passed over.
	img := buildDisk(t, guestdisk.Disk{Table: "mbr", Partitions: []guestdisk.Partition{{FS: "ext4", SizeMB: 8, Files: []guestdisk.File{
		{Path: "/boot/grub/grub.cfg", Data: []byte("set timeout=5\nmenuentry 'New' --id new {\n linux /boot/vmlinuz a=1\n}\nmenuentry 'Other' {\n linux /boot/vmlinuz b=2\n}\n")},
		{Path: "/boot/grub/menu.lst", Data: []byte("title Old\n kernel /boot/vmlinuz old\n")},
		{Path: "/boot/vmlinuz", Data: k},
	}}}})
	r := pcrsim(t, nil, "predict", "--disk", img, "--list")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, s := range []string{
		`grub2 "/boot/grub/grub.cfg" on "partition 1": boots`,
		`* 0 "New" id="new"`, `  1 "Other"`, `kernel  "/boot/vmlinuz"`, `cmdline "BOOT_IMAGE=/boot/vmlinuz a=1"`,
		`grub-legacy "/boot/grub/menu.lst" on "partition 1": passed over ("lower priority than grub2 /boot/grub/grub.cfg on partition 1")`,
		`cmdline "old"`, `boots: "grub2 /boot/grub/grub.cfg on partition 1: default entry 0`,
	} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("--list lacks %q:\n%s", s, r.stdout)
		}
	}
	r = pcrsim(t, nil, "predict", "--disk", img, "--list", "--entry", "Other", "--format", "json")
	var doc struct {
		Configs []struct {
			Format, File, Status, Why string
			Entries                   []struct{ Title, Cmdline string }
		}
		Boots  struct{ Title, Partition string }
		Reason string
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || r.code != 0 {
		t.Fatalf("exit %d, %v: %s %s", r.code, err, r.stdout, r.stderr)
	}
	if len(doc.Configs) != 2 || doc.Configs[0].Status != "boots" || doc.Configs[1].Status != "passed over" ||
		len(doc.Configs[0].Entries) != 2 || doc.Boots.Title != "Other" || !strings.Contains(doc.Reason, "selected by title") {
		t.Errorf("json list: %+v", doc)
	}
}

// TestPredictSeparateBoot: partition 1 holds the root filesystem (no boot
// config), partition 2 a separate /boot whose grub.cfg writes
// ($root)/vmlinuz; GRUB names the partition hd0,gpt2 and that name is in
// BOOT_IMAGE=, so it reaches PCR 5.
func TestPredictSeparateBoot(t *testing.T) {
	needDiskTools(t)
	k, i := kern(1<<20), rnd(4096)
	img := buildDisk(t, guestdisk.Disk{Table: "gpt", Partitions: []guestdisk.Partition{
		{FS: "ext4", SizeMB: 8, Files: []guestdisk.File{{Path: "/etc/hostname", Data: []byte("guest\n")}}},
		{FS: "ext4", SizeMB: 8, Files: []guestdisk.File{
			{Path: "/grub/grub.cfg", Data: []byte("set timeout=5\nmenuentry 'Linux' {\n linux ($root)/vmlinuz root=/dev/xvda1 ro\n initrd ($root)/initrd.img\n}\n")},
			{Path: "/vmlinuz", Data: k}, {Path: "/initrd.img", Data: i},
		}},
	}})
	d := predictDoc(t, "--disk", img)
	checkBanks(t, "separate /boot", d.Banks, want{k, [][]byte{i}, "BOOT_IMAGE=(hd0,gpt2)/vmlinuz root=/dev/xvda1 ro"})
	if d.Entry == nil || d.Entry.Partition != "partition 2" {
		t.Errorf("entry %+v", d.Entry)
	}
	// A second disk in front: the config is now on hd1.
	empty := buildDisk(t, guestdisk.Disk{Table: "mbr", Partitions: []guestdisk.Partition{{FS: "vfat", SizeMB: 4}}})
	d = predictDoc(t, "--disk", empty, "--disk", img)
	checkBanks(t, "second disk", d.Banks, want{k, [][]byte{i}, "BOOT_IMAGE=(hd1,gpt2)/vmlinuz root=/dev/xvda1 ro"})
	if d.Entry == nil || d.Entry.Partition != "disk 1 partition 2" {
		t.Errorf("entry %+v", d.Entry)
	}
}

// TestPredictUnreadablePartitions: the stub's rule (disks.Skippable),
// through pcrsim. A partition of random bytes (no filesystem) is passed
// over with a note and a configuration after it still predicts; a
// filesystem that cannot be read (a corrupt ext4 superblock) after the
// configuration is a note too, but before it a refusal (exit 2) naming it
// and the vtpmboot.disk= setting that leaves it out; with no configuration
// anywhere the error lists what was not searched.
func TestPredictUnreadablePartitions(t *testing.T) {
	needDiskTools(t)
	k := kern(9000)
	boot := guestdisk.Partition{FS: "ext4", SizeMB: 8, Files: []guestdisk.File{
		{Path: "/boot/grub/grub.cfg", Data: []byte("set timeout=5\nmenuentry 'L' {\n linux /boot/vmlinuz x\n}\n")},
		{Path: "/boot/vmlinuz", Data: k},
	}}
	corrupt := guestdisk.Partition{FS: "ext4", SizeMB: 8, Corrupt: true}
	img := buildDisk(t, guestdisk.Disk{Table: "mbr", Partitions: []guestdisk.Partition{
		{FS: "ext4", SizeMB: 4}, // overwritten with random bytes
		boot, corrupt,
	}})
	overwrite(t, img, 1<<20, rnd(4<<20)) // guestdisk puts partition 1 at 1 MiB

	r := pcrsim(t, nil, "predict", "--disk", img, "--format", "json")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, s := range []string{"partition 1: not searched: " + img + " partition 1: no recognised filesystem", "partition 3: not searched: " + img + " partition 3: ext4 superblock: corrupt: 0 inodes per group"} {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("stderr lacks %q: %s", s, r.stderr)
		}
	}
	var d guestDoc
	json.Unmarshal([]byte(r.stdout), &d)
	checkBanks(t, "behind random bytes", d.Banks, want{k, nil, "BOOT_IMAGE=/boot/vmlinuz x"})
	if len(d.Notes) != 2 {
		t.Errorf("notes %q", d.Notes)
	}

	// The corrupt filesystem first: refused, as the stub refuses it.
	shadowed := buildDisk(t, guestdisk.Disk{Table: "mbr", Partitions: []guestdisk.Partition{corrupt, boot}})
	r = pcrsim(t, nil, "predict", "--disk", shadowed)
	if r.code != 2 || !strings.Contains(r.stderr, "partition 1 cannot be read") || !strings.Contains(r.stderr, "searched before partition 2, which holds /boot/grub/grub.cfg") || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("exit %d: %q", r.code, r.stderr)
	}

	// Only unreadable partitions: one error line naming them, exit 2.
	bad := buildDisk(t, guestdisk.Disk{Table: "mbr", Partitions: []guestdisk.Partition{corrupt}})
	r = pcrsim(t, nil, "predict", "--disk", bad)
	if r.code != 2 || !strings.Contains(r.stderr, "no boot configuration found") || !strings.Contains(r.stderr, "0 inodes per group") || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("exit %d: %q", r.code, r.stderr)
	}
}

func TestPredictBrokenImages(t *testing.T) {
	needDiskTools(t)
	k := kern(2000)
	good := guestdisk.Disk{Table: "gpt", Partitions: []guestdisk.Partition{{FS: "ext4", SizeMB: 8, Files: []guestdisk.File{
		{Path: "/boot/grub/grub.cfg", Data: []byte("set timeout=5\nmenuentry 'L' {\n linux /boot/vmlinuz\n}\n")},
		{Path: "/boot/vmlinuz", Data: k},
	}}}}
	dir := t.TempDir()
	truncated := buildDisk(t, good)
	os.Truncate(truncated, 3<<20) // cuts the 8 MiB partition
	corruptGPT := buildDisk(t, good)
	overwrite(t, corruptGPT, 512+40, []byte("garbage!")) // inside the CRC-covered 92-byte GPT header
	tiny := filepath.Join(dir, "tiny.img")
	os.WriteFile(tiny, []byte("not a disk"), 0o644)
	for _, c := range []struct {
		name, img, want string
	}{
		{"truncated", truncated, "truncated image?"},
		{"corrupt gpt", corruptGPT, "CRC32"},
		{"tiny", tiny, "too small"},
		{"missing", filepath.Join(dir, "nope.img"), "no such file"},
		{"directory", dir, "is a directory"},
	} {
		r := pcrsim(t, nil, "predict", "--disk", c.img)
		if r.code != 2 || !strings.HasPrefix(r.stderr, "pcrsim predict: --disk: ") || !strings.Contains(r.stderr, c.want) || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("%s: exit %d, stderr %q (want one line with %q)", c.name, r.code, r.stderr, c.want)
		}
	}
}

// TestPredictRootConfined: a guest's symlink that points outside its tree
// must not make pcrsim measure a host file (os.Root confines it).
func TestPredictRootConfined(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "boot/grub"), 0o755)
	os.WriteFile(filepath.Join(root, "boot/grub/grub.cfg"), []byte("set timeout=5\nmenuentry 'L' {\n linux /boot/vmlinuz\n}\n"), 0o644)
	host := filepath.Join(t.TempDir(), "host-secret")
	os.WriteFile(host, []byte("host"), 0o644)
	if err := os.Symlink(host, filepath.Join(root, "boot/vmlinuz")); err != nil {
		t.Fatal(err)
	}
	r := pcrsim(t, nil, "predict", "--root", root)
	if r.code != 2 || !strings.Contains(r.stderr, "--root: ") || !strings.Contains(r.stderr, "kernel") {
		t.Errorf("escaping symlink: exit %d, %q", r.code, r.stderr)
	}
	for _, c := range [][]string{
		{"--root", root, "--kernel", host},
		{"--root", root, "--disk", host},
		{"--entry", "1", "--kernel", host, "--cmdline", ""},
		{"--root", filepath.Join(root, "nope")},
	} {
		r := pcrsim(t, nil, append([]string{"predict"}, c...)...)
		if r.code != 2 || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("%q: exit %d, %q", c, r.code, r.stderr)
		}
	}
}

func overwrite(t *testing.T, p string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Skip all-zero blocks of a sparse source (mkfs.xfs output is mostly
	// holes) so the image stays sparse.
	for i := 0; i < len(b); i += 1 << 16 {
		chunk := b[i:min(i+1<<16, len(b))]
		if bytes.Count(chunk, []byte{0}) == len(chunk) {
			continue
		}
		if _, err := f.WriteAt(chunk, off+int64(i)); err != nil {
			t.Fatal(err)
		}
	}
}

// What the stub's kexec would refuse, pcrsim refuses before predicting
// (exit 2), with the reason: a kernel that is not a 64-bit bzImage, and a
// command line over the kernel's limit (cmdline_size 2047, less the NUL
// and the 30 bytes kexec keeps for elfcorehdr=: 2016). In a guest's
// config the same rule names the entry.
func TestPredictRefusesUnbootable(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "raw")
	os.WriteFile(raw, rnd(5000), 0o644)
	kernel := filepath.Join(dir, "vmlinuz")
	os.WriteFile(kernel, kern(5000), 0o644)
	for _, c := range []struct {
		kernel, cmdline string
		code            int
		want            string
	}{
		{raw, "", 2, "not a bzImage"},
		{kernel, strings.Repeat("x", 2016), 0, ""},
		{kernel, strings.Repeat("x", 2017), 2, "command line is 2017 bytes; this kernel takes at most 2016"},
	} {
		r := pcrsim(t, nil, "predict", "--kernel", c.kernel, "--cmdline", c.cmdline)
		if r.code != c.code || !strings.Contains(r.stderr, c.want) || (c.code == 2 && strings.Count(r.stderr, "\n") != 1) {
			t.Errorf("%s, %d-byte cmdline: exit %d, %q", filepath.Base(c.kernel), len(c.cmdline), r.code, r.stderr)
		}
	}
	needDiskTools(t)
	long := "set timeout=5\nmenuentry 'Long' {\n linux /boot/vmlinuz " + strings.Repeat("y", 2000) + "\n}\n"
	img := buildDisk(t, guestdisk.Disk{Table: "mbr", Partitions: []guestdisk.Partition{{FS: "ext4", SizeMB: 8, Files: []guestdisk.File{
		{Path: "/boot/grub/grub.cfg", Data: []byte(long)},
		{Path: "/boot/vmlinuz", Data: kern(3000)},
	}}}})
	r := pcrsim(t, nil, "predict", "--disk", img)
	// BOOT_IMAGE=/boot/vmlinuz and a space make it 2000+25 bytes.
	if r.code != 2 || !strings.Contains(r.stderr, `entry 0 "Long"`) || !strings.Contains(r.stderr, "2025 bytes") {
		t.Errorf("long entry: exit %d, %q", r.code, r.stderr)
	}
}

// A FIFO where a disk image, a config or a kernel should be is refused at
// once, never waited on: opening one blocks until a writer appears.
func TestFIFOsAreRefused(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	tree := filepath.Join(dir, "root")
	os.MkdirAll(filepath.Join(tree, "boot", "grub"), 0o755)
	if err := syscall.Mkfifo(filepath.Join(tree, "boot", "grub", "grub.cfg"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "g.cfg")
	os.WriteFile(cfg, []byte("name = \"g\"\ntype = \"hvm\"\nkernel = \"/var/lib/vtpmboot/vmlinuz\"\ndisk = [ \"format=raw, vdev=xvda, access=rw, target="+fifo+"\" ]\n"), 0o644)
	for _, args := range [][]string{
		{"predict", "--disk", fifo},
		{"predict", "--root", tree},
		{"predict", "--kernel", fifo, "--cmdline", ""},
		{"predict", "--xl-config", cfg},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		cmd := exec.CommandContext(ctx, pcrsimBin, args...)
		out, err := cmd.CombinedOutput()
		timedOut := ctx.Err() != nil
		cancel()
		if timedOut {
			t.Errorf("%q: still waiting after 20s", args)
			continue
		}
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() == 0 || !strings.Contains(string(out), "not a regular file") {
			t.Errorf("%q: %v: %s", args, err, out)
		}
	}
}

// TestPredictBtrfs: SUSE keeps /boot on btrfs, which vtpmboot does not
// read. A btrfs partition searched before the configuration is refused
// (exit 2) as the stub refuses it, naming btrfs, what the stub cannot do
// and how to get the files without writing the image.
func TestPredictBtrfs(t *testing.T) {
	needDiskTools(t)
	testenv.NeedCommands(t, "mkfs.btrfs")
	btrfs := filepath.Join(t.TempDir(), "btrfs.img")
	if err := os.WriteFile(btrfs, nil, 0o644); err != nil || os.Truncate(btrfs, 128<<20) != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.btrfs", "-q", "-f", "-L", "suse", btrfs).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.btrfs: %v: %s", err, out)
	}
	b, err := os.ReadFile(btrfs)
	if err != nil {
		t.Fatal(err)
	}
	img := buildDisk(t, guestdisk.Disk{Table: "gpt", Partitions: []guestdisk.Partition{
		{FS: "raw", SizeMB: 128},
		{FS: "ext4", SizeMB: 8, Files: []guestdisk.File{
			{Path: "/boot/grub/grub.cfg", Data: []byte("menuentry 'L' {\n linux /boot/vmlinuz x\n}\n")},
			{Path: "/boot/vmlinuz", Data: kern(5000)},
		}},
	}})
	overwrite(t, img, 1<<20, b) // guestdisk puts partition 1 at 1 MiB
	r := pcrsim(t, nil, "predict", "--disk", img)
	if r.code != 2 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, s := range []string{"partition 1", "unsupported filesystem btrfs on partition 1", "the stub cannot boot a guest whose /boot is on btrfs",
		"guestmount --ro", "mount -o ro,rescue=nologreplay: plain ro replays the log tree", "--root DIR"} {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("stderr lacks %q: %s", s, r.stderr)
		}
	}
	if strings.Contains(r.stderr, "mount it read-only") {
		t.Errorf("advice that writes the disk: %s", r.stderr)
	}
}
