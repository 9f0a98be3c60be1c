// Package e2e is vtpmboot's end-to-end proof: real boots of the stub
// under QEMU with swtpm (TPM 1.2 and 2.0) into a target system that reports
// what it sees, checked against values computed independently of our own
// code. The tests are in this package's _test files (docs/e2e.md); the
// non-test files hold what the tests share with `make demo`
// (internal/demo) and the stub benchmark (bench/stub.sh): building the
// parts, replaying the firmware's event log with third-party tools, and
// reading the stub's console.
package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/vtpmboot/vtpmboot/images"
)

// Parts are the files every boot uses. The stub and the target run the same
// Debian kernel: the stub's initramfs is the vtpmboot image, the target's is
// targetinit, which reports PCRs, /proc/cmdline and the firmware log.
type Parts struct {
	// Kernel is Debian's vmlinuz (.cache/kernel, scripts/fetch-kernel.sh).
	Kernel string
	// Stub is the stub initramfs (images.Stub with the kernel's modules).
	Stub string
	// Target is the target initrd: targetinit as /init, gzip cpio, left
	// at whatever length gzip gives. When Extra (uncompressed) follows it,
	// Linux finds Extra only at a 4-byte aligned offset: the stub must pad
	// between initrds as GRUB2 does (docs/measurements.md), which a length
	// that is not a multiple of 4 proves.
	Target string
	// Extra is a second, uncompressed initrd holding only the symlink
	// /e2e/init -> /init: booted with rdinit=/e2e/init after Target, the
	// target runs only if the kernel unpacked both archives.
	Extra string
	// Pcrsim is a pcrsim binary built from this tree.
	Pcrsim string
}

// KernelDir is where scripts/fetch-kernel.sh puts the Debian kernel.
func KernelDir(root string) string { return filepath.Join(root, ".cache", "kernel") }

// ExtraRdinit is the rdinit= that makes a boot depend on Parts.Extra.
const ExtraRdinit = "rdinit=/e2e/init"

// Build makes the parts in dir from the source tree at root. step, if not
// nil, is told what is being built.
func Build(ctx context.Context, root, dir string, step func(string)) (*Parts, error) {
	if step == nil {
		step = func(string) {}
	}
	kdir := KernelDir(root)
	p := &Parts{
		Kernel: filepath.Join(kdir, "vmlinuz"),
		Stub:   filepath.Join(dir, "stub.cpio.gz"),
		Pcrsim: filepath.Join(dir, "pcrsim"),
	}
	for _, f := range []string{p.Kernel, filepath.Join(kdir, "modules", "modules.dep")} {
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("%w (run scripts/fetch-kernel.sh)", err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	step("stub initramfs: cmd/vtpmboot as /init + the Debian kernel's modules")
	stub, _, err := images.Stub(ctx, images.StubOptions{
		Init:       images.GoBuild{Package: images.DefaultInitPackage, Dir: root},
		ModulesDir: filepath.Join(kdir, "modules"),
	})
	if err != nil {
		return nil, fmt.Errorf("stub: %w", err)
	}
	if err := stub.WriteFile(p.Stub); err != nil {
		return nil, err
	}
	step("target initrds: internal/target/targetinit as /init")
	if p.Target, p.Extra, err = BuildTarget(ctx, root, dir); err != nil {
		return nil, err
	}
	step("pcrsim")
	if err := GoBuild(ctx, root, "./cmd/pcrsim", p.Pcrsim); err != nil {
		return nil, err
	}
	return p, nil
}

// BuildTarget writes dir/target.cpio.gz and dir/extra.cpio (see Parts).
func BuildTarget(ctx context.Context, root, dir string) (target, extra string, err error) {
	target = filepath.Join(dir, "target.cpio.gz")
	extra = filepath.Join(dir, "extra.cpio")
	bin, err := images.GoBuild{Package: "./internal/target/targetinit", Dir: root}.Binary(ctx)
	if err != nil {
		return "", "", fmt.Errorf("target: %w", err)
	}
	ir := &images.Initramfs{}
	ir.AddData("init", bin, 0o755)
	for _, d := range []string{"dev", "proc", "sys"} {
		ir.Add(images.File{Path: d, Dir: true})
	}
	if err := ir.WriteFile(target); err != nil {
		return "", "", err
	}
	// Keep the padding rule exercised: an aligned target would pass with
	// or without it. gzip output is deterministic, so this loop is too.
	for i := 0; ; i++ {
		st, err := os.Stat(target)
		if err != nil {
			return "", "", err
		}
		if st.Size()%4 != 0 {
			break
		}
		if i == 8 {
			return "", "", fmt.Errorf("target initrd %s stays 4-byte aligned (%d bytes)", target, st.Size())
		}
		ir.AddData(fmt.Sprintf("e2e/unalign%d", i), []byte("x"), 0o644)
		if err := ir.WriteFile(target); err != nil {
			return "", "", err
		}
	}
	ex := &images.Initramfs{}
	ex.Add(images.File{Path: "e2e/init", Symlink: "/init"})
	f, err := os.Create(extra)
	if err != nil {
		return "", "", err
	}
	if err := ex.WriteCPIO(f); err != nil {
		f.Close()
		return "", "", fmt.Errorf("write %s: %w", extra, err)
	}
	return target, extra, f.Close()
}

// GoBuild builds a command of the tree at root into out, for the host.
func GoBuild(ctx context.Context, root, pkg, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// StubAppend is the stub kernel's command line: serial console, power off
// (not hang) on a panic, printk timestamps for bench/stub.sh, then the
// given options (vtpmboot.*, quiet, ...).
func StubAppend(opts ...string) string {
	return strings.Join(append([]string{"console=ttyS0", "panic=-1", "printk.time=1"}, opts...), " ")
}
