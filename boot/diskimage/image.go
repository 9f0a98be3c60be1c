// Package diskimage reads guest disk images in userspace, read-only, as
// io/fs filesystems. It exists so pcrsim on a Xen dom0 never hands a
// guest-controlled filesystem to dom0's kernel: everything here treats the
// image as hostile. Every size or count read from disk is checked against
// the image before it drives an allocation or a loop, and corruption is
// reported as an error naming the image, the partition and the problem.
//
// Supported: raw images and fixed VHDs; MBR (with extended/logical
// partitions), GPT, or a bare filesystem; ext2/ext3/ext4, XFS (V4 and V5;
// the log is never read, as with mount -o ro,norecovery) and FAT12/16/32.
// Other container formats and filesystems are recognised by signature and
// reported with an error explaining what to do.
package diskimage

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// Image is an opened disk image.
type Image struct {
	// r reads the disk as metadata, data as file data, both charged to b.
	r, data io.ReaderAt
	b       *budget
	size    int64
	name    string
	closer  io.Closer
	parts   []Partition
	table   string
}

// Partition is one partition of an image (or the whole image when it holds
// a bare filesystem).
type Partition struct {
	// Index is the 1-based partition number as Linux would name it
	// (sdaN; logical MBR partitions start at 5); 0 for a bare filesystem;
	// -1 for a break in the table itself (a looping logical-partition
	// chain), which Linux has no device for.
	Index int
	// Name is "partition N" or "whole disk"; errors use it.
	Name        string
	Start, Size int64
	// Type is "ext2", "ext3", "ext4", "xfs", "vfat", another filesystem's
	// name when only recognised ("btrfs", ...), or "unknown: <detail>".
	Type string
	// Label and UUID are the filesystem's, spelled as blkid spells them;
	// empty when it has none or is not recognised.
	Label, UUID string
	// FS is nil when the filesystem is unsupported or corrupt; Err says why.
	FS  fs.FS
	Err error
}

// ErrUnsupported is wrapped by Partition.Err for recognised but unsupported
// filesystems.
var ErrUnsupported = errors.New("unsupported filesystem")

// ErrCorrupt is wrapped by errors about structurally invalid on-disk data.
var ErrCorrupt = errors.New("corrupt")

// Open opens a raw disk image file (or a fixed VHD) read-only. pcrsim
// opens images itself (boot/disks takes any io.ReaderAt); the tests and
// benchmarks use this.
func Open(path string) (*Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open disk image: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open disk image: %w", err)
	}
	if !st.Mode().IsRegular() && st.Mode()&fs.ModeDevice == 0 {
		f.Close()
		return nil, fmt.Errorf("open disk image %s: not a regular file or block device", path)
	}
	size := st.Size()
	if st.Mode()&fs.ModeDevice != 0 {
		// Block devices report size 0 from stat; the end is where seeking stops.
		if size, err = f.Seek(0, io.SeekEnd); err != nil {
			f.Close()
			return nil, fmt.Errorf("open disk image %s: size: %w", path, err)
		}
	}
	img, err := New(f, size, path)
	if err != nil {
		f.Close()
		return nil, err
	}
	img.closer = f
	return img, nil
}

// New reads the partition table (or bare filesystem) of an image held by r.
// name is used in error messages. r must stay valid until the Image and the
// filesystems it returned are no longer used.
func New(r io.ReaderAt, size int64, name string) (*Image, error) {
	if size < 512 {
		return nil, fmt.Errorf("disk image %s: %d bytes is too small for a partition table or filesystem", name, size)
	}
	// A fixed VHD is read as the raw disk before its footer; other
	// container formats are refused with the command that converts them.
	size, err := container(r, size, name)
	if err != nil {
		return nil, err
	}
	b := newBudget(name)
	img := &Image{r: meter{r: r, b: b}, data: meter{r: r, b: b, data: true}, b: b, size: size, name: name}
	parts, err := img.scan()
	if err != nil {
		return nil, fmt.Errorf("disk image %s: %w", name, err)
	}
	img.parts = parts
	return img, nil
}

// Close closes the file opened by Open; a no-op for images from New.
func (img *Image) Close() error {
	if img.closer == nil {
		return nil
	}
	return img.closer.Close()
}

// Table is the partition table that was read: "mbr", "gpt", or "" for a
// bare filesystem. GRUB's device names depend on it ("hd0,gpt1" vs
// "hd0,msdos1"), and through BOOT_IMAGE= so does PCR 5.
func (img *Image) Table() string { return img.table }

// Partitions returns the partitions found, in table order.
func (img *Image) Partitions() []Partition {
	return append([]Partition(nil), img.parts...)
}

// readFull reads exactly len(p) bytes or explains, in terms of the image, why not.
func readFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("read %d bytes at offset %d: %w", len(p), off, err)
}

// probe opens the filesystem of one partition, filling Type, FS and Err.
func (img *Image) probe(p *Partition) {
	where := img.name + " " + p.Name
	sec := io.NewSectionReader(img.r, p.Start, p.Size)
	w := work{b: img.b, data: io.NewSectionReader(img.data, p.Start, p.Size)}
	kind, detail := detect(sec, p.Size)
	p.Label, p.UUID = identify(sec, kind)
	switch kind {
	case "ext":
		if other := besideExt(sec); other != "" {
			p.Type = "ambiguous: ext and " + other
			p.Err = fmt.Errorf("%s: %w: ambiguous: an ext superblock and a %s signature in the first 1024 bytes, which mkfs.ext4 leaves zero; blkid calls such a volume ambivalent and GRUB reads it with whichever of its drivers probes first, so vtpmboot reads neither (remove the stray signature with wipefs, or re-create the filesystem)", where, ErrCorrupt, other)
			return
		}
		fsys, typ, err := openExt(sec, p.Size, where, w)
		p.Type = typ
		if err != nil {
			p.Err = err
			return
		}
		p.FS = fsys
	case "vfat":
		p.Type = "vfat"
		fsys, err := openFAT(sec, p.Size, where, w)
		if err != nil {
			p.Err = err
			return
		}
		if l, ok := fsys.(*vfs).b.(*fatFS).volumeLabel(); ok {
			p.Label = l
		}
		p.FS = fsys
	case "xfs":
		p.Type = "xfs"
		fsys, _, err := openXFS(sec, p.Size, where, w)
		if err != nil {
			p.Err = err
			return
		}
		p.FS = fsys
	case "":
		p.Type = "unknown: " + detail
		p.Err = fmt.Errorf("%s: no recognised filesystem (%s)", where, detail)
	default:
		p.Type = kind
		p.Err = fmt.Errorf("%w %s on %s; %s", ErrUnsupported, kind, p.Name, Advice(kind))
	}
}

// Advice says what to do about a partition of type kind that this package
// does not read. Where the files are readable at all it suggests ways to
// copy them out that do not write the image: a plain read-only mount
// replays an ext3/4 journal, an XFS log and a btrfs log tree, so each
// suggestion names the option that skips that.
func Advice(kind string) string {
	const extract = "for pcrsim, copy the files out without writing the image (guestmount --ro -a IMAGE -m DEVICE DIR, which parses it inside a libguestfs appliance, or %s) and use --root DIR"
	switch kind {
	case "ext2", "ext3", "ext4":
		return fmt.Sprintf(extract, "mount -o ro,noload: plain ro replays the journal")
	case "xfs":
		return fmt.Sprintf(extract, "mount -o ro,norecovery: plain ro replays the log")
	case "btrfs":
		// SUSE's default: /boot inside the root btrfs.
		return "vtpmboot reads ext2/3/4, XFS and FAT, not btrfs, so the stub cannot boot a guest whose /boot is on btrfs (give it a separate /boot partition); " +
			fmt.Sprintf(extract, "mount -o ro,rescue=nologreplay: plain ro replays the log tree")
	case "swap":
		return "swap space holds no files"
	case "crypto_LUKS":
		return "its files cannot be read without the LUKS key; keep /boot on an unencrypted partition"
	case "LVM2_member":
		return "give the logical volume holding /boot as the disk image instead"
	case "linux_raid_member":
		return "give the assembled md array as the disk image instead"
	}
	return fmt.Sprintf(extract, "mount -o ro")
}
