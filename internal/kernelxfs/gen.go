package kernelxfs

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/vtpmboot/vtpmboot/images"
	"github.com/vtpmboot/vtpmboot/internal/qemutest"
)

// Image is one image the generator writes: made by mkfs.xfs with MkfsArgs,
// then handed to the guest job of the same name.
type Image struct {
	Name     string
	Size     string
	MkfsArgs []string
}

// Images are the testdata images. Sizes stay small (mkfs --unsupported
// only lifts the 300 MB floor) so the compressed files stay small.
var Images = []Image{
	{"v5-1k", "40M", []string{"-b", "size=1024", "-i", "nrext64=1", "-L", "v5-1k"}},
	{"v4", "32M", []string{"-m", "crc=0", "-i", "size=256", "-L", "v4"}},
	{"dirty", "64M", []string{"-L", "boot"}},
}

// Generate builds the images in a QEMU guest running the kernel from
// kernelDir (vmlinuz + modules/, as scripts/fetch-kernel.sh leaves them)
// and writes <name>.img.gz and manifests.json.gz to outDir. root is the
// module root (to build the guest). qemutest.Boot takes a machine boot
// slot for the boot.
func Generate(ctx context.Context, root, kernelDir, outDir string) error {
	tmp, err := os.MkdirTemp("", "kernelxfs-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	var disks []string
	var jobs []string
	for i, im := range Images {
		p := filepath.Join(tmp, im.Name+".img")
		if err := run("truncate", "-s", im.Size, p); err != nil {
			return err
		}
		if err := run("mkfs.xfs", append(append([]string{"-q", "-f", "--unsupported"}, im.MkfsArgs...), p)...); err != nil {
			return err
		}
		disks = append(disks, p)
		jobs = append(jobs, fmt.Sprintf("vd%c:%s", 'a'+i, im.Name))
	}
	mans, err := runGuest(ctx, root, kernelDir, tmp, disks, jobs)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	for _, im := range Images {
		b, err := os.ReadFile(filepath.Join(tmp, im.Name+".img"))
		if err != nil {
			return err
		}
		if err := writeGzip(filepath.Join(outDir, im.Name+".img.gz"), b); err != nil {
			return err
		}
	}
	j, err := json.MarshalIndent(mans, "", " ")
	if err != nil {
		return err
	}
	return writeGzip(filepath.Join(outDir, "manifests.json.gz"), append(j, '\n'))
}

// DirtyBLS leaves an XFS /boot with a dirty log: the kernel (booted as in
// Generate) mounts partition part of disk (0 for a bare filesystem),
// creates BLSLogOnly, fsyncs it and shuts the filesystem down without
// writing anything back, then checks through its own ro,norecovery mount
// that the entry is not in place. It returns what the writer saw live and
// what ro,norecovery read.
func DirtyBLS(ctx context.Context, root, kernelDir, disk string, part int) (live, norecovery Manifest, err error) {
	tmp, err := os.MkdirTemp("", "kernelxfs-")
	if err != nil {
		return live, norecovery, err
	}
	defer os.RemoveAll(tmp)
	dev := "vda"
	if part > 0 {
		dev += fmt.Sprint(part)
	}
	mans, err := runGuest(ctx, root, kernelDir, tmp, []string{disk}, []string{dev + ":dirty-bls"})
	if err != nil {
		return live, norecovery, err
	}
	live, norecovery = Views(mans)
	if len(live.Entries) == 0 || len(norecovery.Entries) == 0 {
		return live, norecovery, fmt.Errorf("kernelxfs: the guest returned %d manifests", len(mans))
	}
	return live, norecovery, nil
}

// runGuest boots the guest with disks attached as vda, vdb, ... and a
// scratch disk after them for the manifests.
func runGuest(ctx context.Context, root, kernelDir, tmp string, disks, jobs []string) ([]Manifest, error) {
	out := filepath.Join(tmp, "out.raw")
	if err := run("truncate", "-s", "4M", out); err != nil {
		return nil, err
	}
	var qd []qemutest.Disk
	for _, d := range disks {
		qd = append(qd, qemutest.Disk{Path: d})
	}
	qd = append(qd, qemutest.Disk{Path: out})
	bin, err := images.GoBuild{Package: "./internal/kernelxfs/guest", Dir: root}.Binary(ctx)
	if err != nil {
		return nil, err
	}
	ms, err := images.ResolveModules(filepath.Join(kernelDir, "modules"), []string{"virtio_pci", "virtio_blk", "xfs"})
	if err != nil {
		return nil, err
	}
	ir := &images.Initramfs{}
	ir.AddData("init", bin, 0o755)
	for _, d := range []string{"dev", "proc", "sys"} {
		ir.Add(images.File{Path: d, Dir: true})
	}
	ms.AddTo(ir)
	initrd := filepath.Join(tmp, "guest.cpio.gz")
	if err := ir.WriteFile(initrd); err != nil {
		return nil, err
	}
	res, err := qemutest.Boot(ctx, qemutest.Options{
		Kernel:  filepath.Join(kernelDir, "vmlinuz"),
		Initrd:  initrd,
		Append:  fmt.Sprintf("console=ttyS0 panic=-1 kernelxfs.jobs=%s kernelxfs.out=vd%c", strings.Join(jobs, ","), 'a'+len(disks)),
		Disks:   qd,
		Memory:  1024,
		Timeout: 10 * time.Minute,
	})
	if err != nil {
		return nil, err
	}
	if !strings.Contains(res.Console, "kernelxfs: OK") {
		return nil, fmt.Errorf("kernelxfs guest failed:\n%s", res.Tail(4000))
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint64(raw)
	if n == 0 || n > uint64(len(raw)-8) {
		return nil, fmt.Errorf("kernelxfs: no manifest on the output disk (length %d)", n)
	}
	var mans []Manifest
	if err := json.Unmarshal(raw[8:8+n], &mans); err != nil {
		return nil, fmt.Errorf("kernelxfs manifest: %w", err)
	}
	return mans, nil
}

func writeGzip(p string, b []byte) error {
	var z bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&z, gzip.BestCompression)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		return err
	}
	return os.WriteFile(p, z.Bytes(), 0o644)
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// FuzzSeeds writes the seeds of boot/diskimage's FuzzXFS: small
// mkfs.xfs -p images (V5 with 1 KiB blocks, V4 with 512-byte blocks, two
// AGs in 32 MiB) holding a file, a symlink, a shortform and a block
// directory, in FuzzXFS's sparse format (see SparseSectors): only their
// non-zero sectors outside the log, which the reader never reads, so the
// mutator works on metadata and file data.
func FuzzSeeds(outDir string) error {
	tmp, err := os.MkdirTemp("", "kernelxfs-seed-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	src := filepath.Join(tmp, "src")
	var proto strings.Builder
	proto.WriteString("seed\n0 0\nd--755 0 0\n")
	files := map[string][]byte{"k": bytes.Repeat([]byte("kernel-"), 430), "grub.cfg": []byte("blscfg\n")}
	for i := 0; i < 30; i++ {
		files[fmt.Sprintf("b%02d", i)] = []byte(fmt.Sprint(i))
	}
	if err := os.MkdirAll(src, 0o755); err != nil {
		return err
	}
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(src, n), b, 0o644); err != nil {
			return err
		}
	}
	fmt.Fprintf(&proto, " k ---644 0 0 %s/k\n l l--777 0 0 d/grub.cfg\n d d--755 0 0\n  grub.cfg ---644 0 0 %s/grub.cfg\n $\n b d--755 0 0\n", src, src)
	for i := 0; i < 30; i++ {
		fmt.Fprintf(&proto, "  entry-%02d ---644 0 0 %s/b%02d\n", i, src, i)
	}
	proto.WriteString(" $\n$\n")
	pf := filepath.Join(tmp, "proto")
	if err := os.WriteFile(pf, []byte(proto.String()), 0o644); err != nil {
		return err
	}
	for name, args := range map[string][]string{
		"fuzz-v5-1k": {"-b", "size=1024", "-L", "seed"},
		"fuzz-v4":    {"-m", "crc=0", "-b", "size=512", "-i", "size=256"},
	} {
		img := filepath.Join(tmp, name)
		if err := run("truncate", "-s", "32M", img); err != nil {
			return err
		}
		if err := run("mkfs.xfs", append(append([]string{"-q", "-f", "--unsupported", "-p", pf}, args...), img)...); err != nil {
			return err
		}
		b, err := os.ReadFile(img)
		if err != nil {
			return err
		}
		be := binary.BigEndian
		bs := int64(be.Uint32(b[4:]))
		agblocks, logstart, logblocks := int64(be.Uint32(b[84:])), int64(be.Uint64(b[48:])), int64(be.Uint32(b[96:]))
		agblklog := uint(b[124])
		logOff := ((logstart>>agblklog)*agblocks + logstart&(1<<agblklog-1)) * bs
		var sectors []uint32
		for off := int64(0); off < int64(len(b)); off += 512 {
			if off >= logOff && off < logOff+logblocks*bs {
				continue
			}
			if !bytes.Equal(b[off:off+512], make([]byte, 512)) {
				sectors = append(sectors, uint32(off/512))
			}
		}
		if err := writeGzip(filepath.Join(outDir, name+".gz"), SparseSectors(b, sectors)); err != nil {
			return err
		}
	}
	return nil
}

// SparseSectors encodes sectors of img for FuzzXFS: a big-endian u16
// count n, n big-endian u32 sector numbers (512-byte sectors), then the n
// sectors' bytes in the same order. Every other sector reads as zeros.
func SparseSectors(img []byte, sectors []uint32) []byte {
	out := binary.BigEndian.AppendUint16(nil, uint16(len(sectors)))
	for _, s := range sectors {
		out = binary.BigEndian.AppendUint32(out, s)
	}
	for _, s := range sectors {
		out = append(out, img[int64(s)*512:int64(s)*512+512]...)
	}
	return out
}
