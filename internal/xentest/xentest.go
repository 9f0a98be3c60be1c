// Package xentest boots real Xen (Debian's xen-hypervisor-4.17-amd64)
// under QEMU TCG with a PV dom0 running Debian's kernel, and runs a plan
// in that dom0: the Xen end-to-end tests (e2e/xen) start their guests
// with xl there. dom0's userspace is this machine's root over 9p
// (read-only, under a tmpfs overlay), so xl, oxenstored, swtpm and the
// test's own binaries are the host's; results come back through a
// writable 9p share. See docs/xen.md.
package xentest

import (
	"bytes"
	"context"
	_ "embed"

	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vtpmboot/vtpmboot/images"
	"github.com/vtpmboot/vtpmboot/internal/qemutest"
)

// Dom0Script is dom0's setup; it sources the plan (plan.sh in Options.Out).
//
//go:embed dom0.sh
var Dom0Script []byte

// Parts are the Xen files a boot needs.
type Parts struct {
	// Xen is the gunzipped hypervisor (scripts/fetch-xen.sh).
	Xen string
	// Kernel is Debian's vmlinuz, dom0's kernel; KernelModules its
	// /lib/modules/<release> (scripts/fetch-kernel.sh).
	Kernel, KernelModules string
	// Dom0Initrd is dom0init with the 9p and overlay modules.
	Dom0Initrd string
}

// XenDir is where scripts/fetch-xen.sh unpacks Xen.
func XenDir(root string) string { return filepath.Join(root, ".cache", "xen") }

// BuildDom0 writes the dom0 initramfs into dir and returns the parts.
func BuildDom0(ctx context.Context, root, dir string) (*Parts, error) {
	kdir := filepath.Join(root, ".cache", "kernel")
	p := &Parts{
		Xen:           filepath.Join(XenDir(root), "xen"),
		Kernel:        filepath.Join(kdir, "vmlinuz"),
		KernelModules: filepath.Join(kdir, "modules"),
		Dom0Initrd:    filepath.Join(dir, "dom0.cpio.gz"),
	}
	for _, f := range []string{p.Xen, p.Kernel} {
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("%w (run scripts/deps.sh)", err)
		}
	}
	ir, _, err := images.Stub(ctx, images.StubOptions{
		Init:       images.GoBuild{Package: "./internal/xentest/dom0init", Dir: root},
		ModulesDir: p.KernelModules,
		Modules:    []string{"9p", "9pnet_virtio", "virtio_pci", "overlay"},
	})
	if err != nil {
		return nil, fmt.Errorf("dom0 initramfs: %w", err)
	}
	if err := ir.WriteFile(p.Dom0Initrd); err != nil {
		return nil, err
	}
	return p, nil
}

// Options describe one Xen boot.
type Options struct {
	// Out is the writable share: it must hold plan.sh, and gets
	// xentest.sh (Dom0Script) and whatever the plan writes. Absolute.
	Out string
	// Timeout bounds the whole boot.
	Timeout time.Duration
	// Memory is the QEMU machine's, in MiB (dom0 takes 1024 of it).
	Memory int
	// Console, if set, gets the serial console (Xen and dom0) as it comes.
	Console *os.File
}

// Result is what a boot produced.
type Result struct {
	// Console is the serial log: Xen's messages and dom0's hvc0.
	Console  string
	Duration time.Duration
	Args     []string
}

// Boot runs QEMU with Xen until dom0 powers off or the timeout passes
// (then QEMU is killed and the error says so).
func Boot(ctx context.Context, p *Parts, o Options) (*Result, error) {
	if !filepath.IsAbs(o.Out) {
		return nil, fmt.Errorf("xentest: Out %q is not absolute", o.Out)
	}
	env := fmt.Sprintf("XENTEST_KMODS=%q\n", p.KernelModules)
	if err := os.WriteFile(filepath.Join(o.Out, "xentest.env"), []byte(env), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(o.Out, "xentest.sh"), Dom0Script, 0o755); err != nil {
		return nil, err
	}
	if o.Memory == 0 {
		o.Memory = 3072
	}
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Minute
	}
	serial := filepath.Join(o.Out, "serial.log")
	dom0Append := strings.Join([]string{"console=hvc0", "earlyprintk=xen", "panic=-1", "xentest.out=" + o.Out}, " ")
	args := []string{
		"-machine", "pc,accel=tcg", "-cpu", "qemu64,+svm,+npt",
		"-m", fmt.Sprint(o.Memory), "-smp", "2",
		"-nographic", "-no-reboot", "-nodefaults",
		"-serial", "file:" + serial,
		"-kernel", p.Xen,
		// dom0_mem: with a fixed size Xen does not balloon dom0, so xl
		// need not shrink it (slow under TCG) before each domU.
		"-append", "console=com1 com1=115200,8n1 dom0_mem=1024M,max:1024M dom0_max_vcpus=1 noreboot",
		"-initrd", p.Kernel + " " + dom0Append + "," + p.Dom0Initrd,
		"-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
		"-virtfs", "local,path=" + o.Out + ",mount_tag=xenout,security_model=none",
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	start := time.Now()
	err := cmd.Run()
	res := &Result{Duration: time.Since(start), Args: args}
	b, _ := os.ReadFile(serial)
	res.Console = string(b)
	if ctx.Err() != nil {
		return res, fmt.Errorf("xen boot timed out after %v; serial log %s", o.Timeout, serial)
	}
	if err != nil {
		return res, fmt.Errorf("qemu: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return res, nil
}

// Lock takes the whole machine for a Xen boot: every boot slot of
// qemutest.LockMachineAll, the one throttle every emulated boot goes
// through, since Xen under QEMU runs nested guests on every vCPU. The
// function returned releases it.
func Lock() (func(), error) {
	return qemutest.LockMachineAll(context.Background())
}
