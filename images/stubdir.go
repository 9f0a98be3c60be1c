package images

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// StubDir is what WriteStubDir wrote.
type StubDir struct {
	// Files are the outputs in order (vmlinuz, vtpmboot.cpio.gz, hvm.cfg),
	// each with its SHA-256 and size, for the admin to record.
	Files []Output
	// Modules is the packed module set; nil without a modules directory.
	Modules *ModuleSet
}

// Output is one written file.
type Output struct {
	Path   string
	SHA256 [32]byte
	Size   int64
}

// DirOptions say what goes next to the image in the output directory.
type DirOptions struct {
	// Kernel is the stub kernel, copied to vmlinuz.
	Kernel string
	// Disk and VTPMBackend fill in the example xl config (XLOptions).
	Disk, VTPMBackend string
}

// WriteStubDir builds the stub initramfs (Stub) and writes outDir: the
// kernel as vmlinuz, the initramfs as vtpmboot.cpio.gz, and an example HVM
// xl config naming both (XLConfig). mkstub is a thin main over it.
func WriteStubDir(ctx context.Context, o StubOptions, d DirOptions, outDir string) (*StubDir, error) {
	ir, ms, err := Stub(ctx, o)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, fmt.Errorf("output directory: %w", err)
	}
	kOut := filepath.Join(outDir, "vmlinuz")
	if err := copyFile(d.Kernel, kOut); err != nil {
		return nil, err
	}
	irOut := filepath.Join(outDir, "vtpmboot.cpio.gz")
	if err := ir.WriteFile(irOut); err != nil {
		return nil, err
	}
	absK, _ := filepath.Abs(kOut)
	absI, _ := filepath.Abs(irOut)
	paths := []string{kOut, irOut}
	cfg, err := XLConfig("hvm", XLOptions{Name: "guest-hvm", Kernel: absK, Ramdisk: absI, Disk: d.Disk, VTPMBackend: d.VTPMBackend})
	if err != nil {
		return nil, err
	}
	p := filepath.Join(outDir, "hvm.cfg")
	if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
		return nil, fmt.Errorf("write %s: %w", p, err)
	}
	paths = append(paths, p)
	sd := &StubDir{Modules: ms}
	for _, p := range paths {
		out, err := hashFile(p)
		if err != nil {
			return nil, err
		}
		sd.Files = append(sd.Files, out)
	}
	return sd, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("kernel: %w", err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("write %s: %w", dst, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("write %s: %w", dst, err)
	}
	return nil
}

func hashFile(p string) (Output, error) {
	f, err := os.Open(p)
	if err != nil {
		return Output{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return Output{}, fmt.Errorf("hash %s: %w", p, err)
	}
	o := Output{Path: p, Size: n}
	copy(o.SHA256[:], h.Sum(nil))
	return o, nil
}
