// Package guestdisk builds guest disk images for tests and the demo with
// the real tools a distribution would use (mkfs.ext4 -d, mkfs.xfs -p,
// mkfs.vfat + mcopy, sfdisk), with no root and no loop mounts.
package guestdisk

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// File is one file to place on a partition.
type File struct {
	Path string // absolute inside the partition, e.g. "/boot/vmlinuz"
	// Exactly one of Data or Source is set.
	Data   []byte
	Source string
	Mode   os.FileMode // 0644 when zero
	// Symlink, when set, makes Path a symlink to this target.
	Symlink string
}

// Partition is one partition of the disk.
type Partition struct {
	// FS is "ext4", "ext3", "ext2", "xfs", "vfat", or "raw" for zeros
	// (no filesystem at all).
	FS     string
	SizeMB int
	Label  string
	// UUID replaces the fixed filesystem UUID (ext*), for configs that
	// search for their filesystem by UUID.
	UUID string
	// MkfsArgs are extra mkfs arguments (e.g. "-I", "128" for GRUB legacy).
	MkfsArgs []string
	Files    []File
	// DirtyJournal leaves an uncommitted-to-disk transaction in the ext3/4
	// journal (written with debugfs's journal commands), the state a guest
	// that crashed leaves behind. Mounting it "ro" without "noload" would
	// replay it and write the disk.
	DirtyJournal bool
	// Corrupt breaks an ext superblock after mkfs (zero inodes per
	// group): still recognisably ext, but not a readable filesystem.
	Corrupt bool
	// Tweak, when set, runs on the partition's own image file once it is
	// built: the debugfs edits and byte patches of hostile-image tests
	// (see Debugfs, InodeOffset, Patch).
	Tweak func(img string) error
}

// Disk describes a whole disk image.
type Disk struct {
	// Table is "mbr", "gpt" or "" for a bare filesystem (one partition).
	Table      string
	Partitions []Partition
	// Tweak, when set, runs on the assembled image (a damaged partition
	// table, say) before Build returns.
	Tweak func(img string) error
}

// BuildBytes builds the disk image and returns its bytes, for tests that
// read a disk from memory.
func BuildBytes(d Disk) ([]byte, error) {
	dir, err := os.MkdirTemp("", "guestdisk")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	img := filepath.Join(dir, "disk.img")
	if err := Build(d, img); err != nil {
		return nil, err
	}
	return os.ReadFile(img)
}

// Build writes the disk image to out.
func Build(d Disk, out string) error {
	tmp, err := os.MkdirTemp("", "guestdisk")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	var images []string
	for i, p := range d.Partitions {
		img := filepath.Join(tmp, fmt.Sprintf("p%d.img", i+1))
		if err := buildFS(p, filepath.Join(tmp, fmt.Sprintf("root%d", i+1)), img); err != nil {
			return fmt.Errorf("partition %d: %w", i+1, err)
		}
		images = append(images, img)
	}
	if d.Table == "" {
		if len(images) != 1 {
			return fmt.Errorf("a bare filesystem image has exactly one partition, got %d", len(images))
		}
		if err := copyFile(images[0], out); err != nil {
			return err
		}
		return d.tweak(out)
	}
	// 1 MiB alignment, as every partitioning tool does today.
	const align = 1 << 20
	total := int64(align)
	var script strings.Builder
	fmt.Fprintf(&script, "label: %s\nunit: sectors\n", map[string]string{"mbr": "dos", "gpt": "gpt"}[d.Table])
	if d.Table != "mbr" && d.Table != "gpt" {
		return fmt.Errorf("unknown partition table %q", d.Table)
	}
	starts := make([]int64, len(images))
	for i, p := range d.Partitions {
		starts[i] = total
		size := int64(p.SizeMB) << 20
		typ := "83"
		if d.Table == "gpt" {
			typ = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
		}
		if p.FS == "vfat" && d.Table == "mbr" {
			typ = "c"
		}
		fmt.Fprintf(&script, "start=%d, size=%d, type=%s\n", total/512, size/512, typ)
		total += size
	}
	total += align // room for the GPT backup header
	if err := os.WriteFile(out, nil, 0o644); err != nil {
		return err
	}
	if err := os.Truncate(out, total); err != nil {
		return err
	}
	cmd := exec.Command("sfdisk", "--no-reread", "--no-tell-kernel", "-q", out)
	cmd.Stdin = strings.NewReader(script.String())
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("sfdisk: %v: %s", err, b)
	}
	for i, img := range images {
		if err := run("dd", "if="+img, "of="+out, "bs=1M", fmt.Sprintf("seek=%d", starts[i]>>20), "conv=notrunc,sparse", "status=none"); err != nil {
			return err
		}
	}
	return d.tweak(out)
}

func (d Disk) tweak(img string) error {
	if d.Tweak == nil {
		return nil
	}
	if err := d.Tweak(img); err != nil {
		return fmt.Errorf("tweak disk: %w", err)
	}
	return nil
}

// BuildFS writes one partition's filesystem image to img, as Build does
// for each partition (Tweak included).
func BuildFS(p Partition, img string) error {
	tmp, err := os.MkdirTemp("", "guestdisk")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	return buildFS(p, filepath.Join(tmp, "root"), img)
}

func buildFS(p Partition, root, img string) error {
	if err := makeFS(p, root, img); err != nil {
		return err
	}
	if p.Tweak == nil {
		return nil
	}
	if err := p.Tweak(img); err != nil {
		return fmt.Errorf("tweak: %w", err)
	}
	return nil
}

func makeFS(p Partition, root, img string) error {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	for _, f := range p.Files {
		dst := filepath.Join(root, filepath.FromSlash(strings.TrimPrefix(f.Path, "/")))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if f.Symlink != "" {
			if err := os.Symlink(f.Symlink, dst); err != nil {
				return err
			}
			continue
		}
		data := f.Data
		if f.Source != "" {
			b, err := os.ReadFile(f.Source)
			if err != nil {
				return err
			}
			data = b
		}
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		if err := os.WriteFile(dst, data, mode); err != nil {
			return err
		}
	}
	size := fmt.Sprintf("%dM", p.SizeMB)
	switch p.FS {
	case "ext2", "ext3", "ext4":
		args := []string{"-q", "-F", "-t", p.FS, "-d", root}
		if p.Label != "" {
			args = append(args, "-L", p.Label)
		}
		// Fixed UUID and hash seed keep images reproducible run to run.
		uuid := "6f1d2a4e-8b9c-4d3e-9f10-112233445566"
		if p.UUID != "" {
			uuid = p.UUID
		}
		args = append(args, p.MkfsArgs...)
		args = append(args, "-U", uuid, "-E", "hash_seed=0b7ea5e1-0000-4000-8000-000000000001", img, size)
		cmd := exec.Command("mkfs."+p.FS, args...)
		cmd.Env = append(os.Environ(), "E2FSPROGS_FAKE_TIME=1700000000")
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("mkfs.%s: %v: %s", p.FS, err, b)
		}
		if p.DirtyJournal {
			if p.FS == "ext2" {
				return fmt.Errorf("ext2 has no journal to leave dirty")
			}
			if err := dirtyJournal(img); err != nil {
				return err
			}
		}
		if p.Corrupt {
			return Patch(img, 1024+0x28, make([]byte, 4))
		}
		return nil
	case "raw":
		if err := os.WriteFile(img, nil, 0o644); err != nil {
			return err
		}
		return os.Truncate(img, int64(p.SizeMB)<<20)
	case "xfs":
		if p.DirtyJournal {
			return fmt.Errorf("an XFS log can only be left dirty by the kernel (see internal/kernelxfs)")
		}
		proto, err := Protofile(root)
		if err != nil {
			return err
		}
		pf := filepath.Join(filepath.Dir(img), filepath.Base(img)+".proto")
		if err := os.WriteFile(pf, []byte(proto), 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(img, nil, 0o644); err != nil {
			return err
		}
		if err := os.Truncate(img, int64(p.SizeMB)<<20); err != nil {
			return err
		}
		// mkfs.xfs refuses new filesystems under 300 MB unless told
		// --unsupported, which lifts only that check.
		args := []string{"-q", "-f", "-m", "uuid=6f1d2a4e-8b9c-4d3e-9f10-112233445566", "-p", pf}
		if p.SizeMB < 300 {
			args = append(args, "--unsupported")
		}
		if p.Label != "" {
			args = append(args, "-L", p.Label)
		}
		return run("mkfs.xfs", append(args, img)...)
	case "vfat":
		if err := os.WriteFile(img, nil, 0o644); err != nil {
			return err
		}
		if err := os.Truncate(img, int64(p.SizeMB)<<20); err != nil {
			return err
		}
		args := []string{"-i", "12345678"}
		if p.Label != "" {
			args = append(args, "-n", p.Label)
		}
		args = append(args, p.MkfsArgs...)
		if err := run("mkfs.vfat", append(args, img)...); err != nil {
			return err
		}
		ents, err := os.ReadDir(root)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if err := run("mcopy", "-i", img, "-s", "-p", "-m", filepath.Join(root, e.Name()), "::/"+e.Name()); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("unsupported filesystem %q", p.FS)
}

// Protofile describes the tree at root in mkfs.xfs's prototype format
// (xfsprogs 6.1's mkfs.xfs -p takes no directory). Its tokens are
// whitespace-separated, so names and symlink targets must not contain
// blanks, and a file named "$" would end a directory.
func Protofile(root string) (string, error) {
	var b strings.Builder
	b.WriteString("guestdisk\n0 0\nd--755 0 0\n")
	var walk func(dir string, depth int) error
	walk = func(dir string, depth int) error {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		ind := strings.Repeat(" ", depth)
		for _, e := range ents {
			p := filepath.Join(dir, e.Name())
			if strings.ContainsAny(e.Name(), " \t\n") || e.Name() == "$" || strings.HasPrefix(e.Name(), ":") {
				return fmt.Errorf("mkfs.xfs protofile cannot name %q", e.Name())
			}
			info, err := os.Lstat(p)
			if err != nil {
				return err
			}
			switch {
			case info.Mode()&os.ModeSymlink != 0:
				target, err := os.Readlink(p)
				if err != nil {
					return err
				}
				if strings.ContainsAny(target, " \t\n") || target == "" {
					return fmt.Errorf("mkfs.xfs protofile cannot hold symlink target %q", target)
				}
				fmt.Fprintf(&b, "%s%s l--777 0 0 %s\n", ind, e.Name(), target)
			case info.IsDir():
				fmt.Fprintf(&b, "%s%s d--755 0 0\n", ind, e.Name())
				if err := walk(p, depth+1); err != nil {
					return err
				}
				fmt.Fprintf(&b, "%s$\n", ind)
			default:
				if strings.ContainsAny(p, " \t\n") {
					return fmt.Errorf("mkfs.xfs protofile cannot name source %q", p)
				}
				fmt.Fprintf(&b, "%s%s ---%03o 0 0 %s\n", ind, e.Name(), info.Mode().Perm(), p)
			}
		}
		return nil
	}
	if err := walk(root, 1); err != nil {
		return "", err
	}
	b.WriteString("$\n")
	return b.String(), nil
}

// dirtyJournal writes a transaction into the journal without checkpointing
// it, which sets needs_recovery exactly as a crash after a commit would.
func dirtyJournal(img string) error {
	blk := filepath.Join(filepath.Dir(img), "jblock")
	if err := os.WriteFile(blk, bytes.Repeat([]byte{0xA5}, 4096), 0o644); err != nil {
		return err
	}
	cmd := exec.Command("debugfs", "-w", "-f", "-", img)
	cmd.Stdin = strings.NewReader("jo\njw -b 300 " + blk + "\njc\n")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("debugfs journal write: %v: %s", err, b)
	}
	out, err := exec.Command("dumpe2fs", "-h", img).CombinedOutput()
	if err != nil {
		return fmt.Errorf("dumpe2fs: %v: %s", err, out)
	}
	if !bytes.Contains(out, []byte("needs_recovery")) {
		return fmt.Errorf("debugfs did not leave the journal dirty:\n%s", out)
	}
	return nil
}

func run(name string, args ...string) error {
	if b, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, b)
	}
	return nil
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}

// Patch overwrites bytes of a file in place.
func Patch(file string, off int64, b []byte) error {
	f, err := os.OpenFile(file, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(b, off); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
