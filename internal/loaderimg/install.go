package loaderimg

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"github.com/vtpmboot/vtpmboot/internal/guestdisk"
)

// Where Debian's packages put the loaders' files.
const (
	GRUB2Dir      = "/usr/lib/grub/i386-pc"          // grub-pc-bin
	GRUBLegacyDir = "/usr/lib/grub/x86_64-pc"        // grub-legacy
	SyslinuxMBR   = "/usr/lib/syslinux/mbr/mbr.bin"  // syslinux-common
	SyslinuxMods  = "/usr/lib/syslinux/modules/bios" // syslinux-common
	partStart     = 1 << 20                          // first partition at 1 MiB, as every partitioner does
)

// Commands lists the programs BuildDisk runs for l, for testenv.
func Commands(l Loader) []string {
	base := []string{"sfdisk", "as", "ld", "objcopy", "nm", "qemu-system-x86_64"}
	switch l {
	case GRUB2:
		return append(base, "mkfs.ext4", "grub-mkimage", "grub-editenv")
	case Syslinux:
		return append(base, "mkfs.vfat", "mcopy", "syslinux")
	case GRUBLegacy:
		return append(append(base, "mkfs.ext2"), grubLegacyCommands()...)
	}
	return base
}

// Payload makes the bytes of the case's kernel and initrd files.
type Payload struct {
	Kernel func(path string) ([]byte, error)
	Initrd func(path string) ([]byte, error)
}

// ObserverPayload gives every kernel path the observer with that path as
// its marker, and every initrd its InitrdContent.
func ObserverPayload(observer []byte) Payload {
	return Payload{
		Kernel: func(p string) ([]byte, error) { return Kernel(observer, p) },
		Initrd: func(p string) ([]byte, error) { return InitrdContent(p), nil },
	}
}

// BuildDisk writes a disk image for c into dir and installs c's loader on
// it, with the kernel and initrd files from pl.
func BuildDisk(ctx context.Context, c *Case, pl Payload, dir string) (string, error) {
	var files []guestdisk.File
	for _, p := range c.ConfigPaths() {
		files = append(files, guestdisk.File{Path: "/" + p, Data: c.Files[p]})
	}
	for _, k := range c.Kernels {
		img, err := pl.Kernel(k)
		if err != nil {
			return "", err
		}
		files = append(files, guestdisk.File{Path: k, Data: img})
	}
	for _, i := range c.Initrds {
		img, err := pl.Initrd(i)
		if err != nil {
			return "", err
		}
		files = append(files, guestdisk.File{Path: i, Data: img})
	}
	for _, s := range c.Symlinks {
		files = append(files, guestdisk.File{Path: "/" + s[0], Symlink: s[1]})
	}
	part := guestdisk.Partition{FS: c.FS, SizeMB: 48, UUID: c.UUID, Files: files}
	var err error
	switch c.Loader {
	case GRUB2:
		err = grub2Files(ctx, c, dir, &part)
	case GRUBLegacy:
		err = grubLegacyFiles(c, &part)
		// GRUB 0.97 reads ext2 with 128-byte inodes, as mke2fs made them then.
		part.MkfsArgs = []string{"-I", "128"}
	case Syslinux:
		err = syslinuxFiles(c, &part)
	default:
		err = fmt.Errorf("unknown loader %q", c.Loader)
	}
	if err != nil {
		return "", err
	}
	img := filepath.Join(dir, "disk.img")
	if err := guestdisk.Build(guestdisk.Disk{Table: "mbr", Partitions: []guestdisk.Partition{part}}, img); err != nil {
		return "", err
	}
	switch c.Loader {
	case GRUB2:
		err = installGRUB2(ctx, c, dir, img)
	case GRUBLegacy:
		err = installGRUBLegacy(ctx, dir, img)
	case Syslinux:
		err = installSyslinux(ctx, c, img)
	}
	if err != nil {
		return "", fmt.Errorf("install %s: %w", c.Loader, err)
	}
	return img, nil
}

// configDir is the directory of the first file named base among c's files,
// in the loaders' own search order.
func configDir(c *Case, candidates ...string) (string, error) {
	for _, p := range candidates {
		if _, ok := c.Files[p]; ok {
			return path.Dir(p), nil
		}
	}
	return "", fmt.Errorf("case %s has none of %s", c.Name, strings.Join(candidates, ", "))
}

func grub2Prefix(c *Case) (string, error) {
	return configDir(c, "boot/grub/grub.cfg", "grub/grub.cfg", "boot/grub2/grub.cfg", "grub2/grub.cfg")
}

// grub2Files adds what grub-install copies into the prefix directory: every
// module and the .lst files normal mode uses to autoload commands, and the
// environment block.
func grub2Files(ctx context.Context, c *Case, dir string, p *guestdisk.Partition) error {
	prefix, err := grub2Prefix(c)
	if err != nil {
		return err
	}
	ents, err := os.ReadDir(GRUB2Dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if n := e.Name(); strings.HasSuffix(n, ".mod") || strings.HasSuffix(n, ".lst") {
			p.Files = append(p.Files, guestdisk.File{Path: "/" + prefix + "/i386-pc/" + n, Source: filepath.Join(GRUB2Dir, n)})
		}
	}
	if len(c.GRUBEnv) > 0 {
		env := filepath.Join(dir, "grubenv")
		args := [][]string{{env, "create"}, append([]string{env, "set"}, c.GRUBEnv...)}
		for _, a := range args {
			if out, err := exec.CommandContext(ctx, "grub-editenv", a...).CombinedOutput(); err != nil {
				return fmt.Errorf("grub-editenv %s: %v: %s", strings.Join(a, " "), err, out)
			}
		}
		p.Files = append(p.Files, guestdisk.File{Path: "/" + prefix + "/grubenv", Source: env})
	}
	return nil
}

// installGRUB2 does what grub-install + grub-bios-setup do for an MBR disk
// whose boot partition is the first one: core.img with the boot disk's
// partition and filesystem modules and the prefix, embedded in the gap
// after the MBR; boot.img in the MBR, keeping the partition table, with
// its kernel sector pointing at core.img.
func installGRUB2(ctx context.Context, c *Case, dir, img string) error {
	prefix, _ := grub2Prefix(c)
	fsmod := "ext2"
	if c.FS == "vfat" {
		fsmod = "fat"
	}
	core := filepath.Join(dir, "core.img")
	args := []string{"-O", "i386-pc", "-d", GRUB2Dir, "-o", core, "-p", "(hd0,msdos1)/" + prefix, "biosdisk", "part_msdos", fsmod}
	if out, err := exec.CommandContext(ctx, "grub-mkimage", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("grub-mkimage: %v: %s", err, out)
	}
	coreImg, err := os.ReadFile(core)
	if err != nil {
		return err
	}
	if len(coreImg) > partStart-512 {
		return fmt.Errorf("core.img of %d bytes does not fit the post-MBR gap", len(coreImg))
	}
	// diskboot.img's blocklist (the last 12 bytes of core.img's first
	// sector): the rest of core.img starts at sector 2, right after it.
	bl := coreImg[512-12:]
	binary.LittleEndian.PutUint64(bl[0:], 2)
	if n := binary.LittleEndian.Uint16(bl[8:]); int(n) != (len(coreImg)+511)/512-1 {
		return fmt.Errorf("core.img blocklist length %d, image has %d sectors", n, (len(coreImg)+511)/512)
	}
	boot, err := os.ReadFile(filepath.Join(GRUB2Dir, "boot.img"))
	if err != nil {
		return err
	}
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	mbr := make([]byte, 512)
	if _, err := f.ReadAt(mbr, 0); err != nil {
		return err
	}
	const (
		kernelSector = 0x5c  // GRUB_BOOT_MACHINE_KERNEL_SECTOR
		bootDrive    = 0x64  // GRUB_BOOT_MACHINE_BOOT_DRIVE
		driveCheck   = 0x66  // GRUB_BOOT_MACHINE_DRIVE_CHECK
		partTable    = 0x1b8 // GRUB_BOOT_MACHINE_PART_START (disk signature on)
	)
	copy(boot[partTable:0x1fe], mbr[partTable:0x1fe])
	binary.LittleEndian.PutUint64(boot[kernelSector:], 1)
	boot[bootDrive] = 0xff // use the drive the BIOS booted from
	// grub-bios-setup NOPs the jump over the "buggy BIOS" drive check
	// for a hard disk.
	boot[driveCheck], boot[driveCheck+1] = 0x90, 0x90
	if _, err := f.WriteAt(boot, 0); err != nil {
		return err
	}
	_, err = f.WriteAt(coreImg, 512)
	return err
}

func legacyDir(c *Case) (string, error) {
	return configDir(c, "boot/grub/menu.lst", "grub/menu.lst", "boot/grub/grub.conf", "grub/grub.conf")
}

func grubLegacyFiles(c *Case, p *guestdisk.Partition) error {
	d, err := legacyDir(c)
	if err != nil {
		return err
	}
	for _, n := range []string{"stage1", "stage2", "e2fs_stage1_5"} {
		p.Files = append(p.Files, guestdisk.File{Path: "/" + d + "/" + n, Source: filepath.Join(GRUBLegacyDir, n)})
	}
	return nil
}

// installGRUBLegacy runs GRUB 0.97's own shell on the image file, as the
// manual's "installing on a disk image" recipe does: setup embeds
// e2fs_stage1_5 after the MBR, writes stage1 into the MBR and patches
// stage2's config path.
func installGRUBLegacy(ctx context.Context, dir, img string) error {
	argv, err := GRUBLegacyCommand()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, argv[0], append(argv[1:], "--batch", "--no-floppy", "--device-map=/dev/null")...)
	cmd.Stdin = strings.NewReader("device (hd0) " + img + "\nroot (hd0,0)\nsetup (hd0)\nquit\n")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("succeeded")) || bytes.Contains(out, []byte("Error")) {
		return fmt.Errorf("%s --batch setup: %v: %s", strings.Join(argv, " "), err, out)
	}
	return nil
}

func syslinuxDir(c *Case) (string, error) {
	return configDir(c, "boot/syslinux/syslinux.cfg", "syslinux/syslinux.cfg", "syslinux.cfg",
		"boot/extlinux/extlinux.conf", "extlinux/extlinux.conf", "boot/extlinux.conf", "extlinux.conf")
}

// syslinuxFiles adds the menu modules next to the config, where a distro's
// installer puts them (ldlinux.c32 comes from syslinux --install).
func syslinuxFiles(c *Case, p *guestdisk.Partition) error {
	d, err := syslinuxDir(c)
	if err != nil {
		return err
	}
	for _, n := range []string{"menu.c32", "vesamenu.c32", "libutil.c32", "libcom32.c32"} {
		p.Files = append(p.Files, guestdisk.File{Path: "/" + d + "/" + n, Source: filepath.Join(SyslinuxMods, n)})
	}
	return nil
}

// installSyslinux runs the mtools-based installer on the partition inside
// the image (no mount), puts SYSLINUX's MBR code in front and marks the
// partition active, which that MBR code boots.
func installSyslinux(ctx context.Context, c *Case, img string) error {
	d, _ := syslinuxDir(c)
	args := []string{"--install", "--offset", fmt.Sprint(partStart)}
	if d != "." {
		args = append(args, "--directory", "/"+d)
	}
	if out, err := exec.CommandContext(ctx, "syslinux", append(args, img)...).CombinedOutput(); err != nil {
		return fmt.Errorf("syslinux %s: %v: %s", strings.Join(args, " "), err, out)
	}
	if out, err := exec.CommandContext(ctx, "sfdisk", "--activate", img, "1").CombinedOutput(); err != nil {
		return fmt.Errorf("sfdisk --activate: %v: %s", err, out)
	}
	mbr, err := os.ReadFile(SyslinuxMBR)
	if err != nil {
		return err
	}
	if len(mbr) > 440 {
		return fmt.Errorf("%s: %d bytes, more than the 440 before the disk signature", SyslinuxMBR, len(mbr))
	}
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteAt(mbr, 0)
	return err
}
