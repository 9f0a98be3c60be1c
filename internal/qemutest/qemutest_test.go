package qemutest

import (
	"context"
	"errors"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vtpmboot/vtpmboot/images"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

func parts(t *testing.T) (kernel, initrd string) {
	t.Helper()
	testenv.NeedCommands(t, "qemu-system-x86_64", "swtpm", "go")
	kernel = filepath.Join(testenv.RepoRoot(), ".cache", "kernel", "vmlinuz")
	testenv.NeedFile(t, kernel, "run scripts/fetch-kernel.sh")
	bin, err := images.GoBuild{Package: "./internal/target/targetinit", Dir: testenv.RepoRoot()}.Binary(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ir := &images.Initramfs{}
	ir.AddData("init", bin, 0o755)
	initrd = filepath.Join(t.TempDir(), "target.cpio.gz")
	if err := ir.WriteFile(initrd); err != nil {
		t.Fatal(err)
	}
	return kernel, initrd
}

// TestHarnessFaults covers the two ways a boot does not end on its own
// terms: the TPM disappearing mid-boot (the target must still report and
// power off, not hang) and the harness timeout (QEMU killed, the error
// says so and carries the console).
func TestHarnessFaults(t *testing.T) {
	kernel, initrd := parts(t)
	t.Run("KillTPMAfter", func(t *testing.T) {
		t.Parallel()
		// Not quiet: the kill trigger is a kernel message printed just
		// before /init runs, after tpm_tis has probed.
		res, err := Boot(context.Background(), Options{
			Kernel: kernel, Initrd: initrd, Append: "console=ttyS0 panic=-1",
			TPM: pcrbank.Version20, KillTPMAfter: "Freeing unused kernel image",
		})
		if err != nil {
			t.Fatal(err)
		}
		if !res.TPMKilled {
			t.Fatalf("swtpm was not killed\n%s", res.Tail(3000))
		}
		t.Logf("exit %v after %v; qemu stderr %q", res.ExitErr, res.Duration, res.Stderr)
		r, perr := ParseTarget(res.Console)
		switch {
		case perr != nil && res.ExitErr == nil:
			t.Fatalf("no report and QEMU exited cleanly: %v\n%s", perr, res.Tail(3000))
		case perr == nil && len(r.Errors) == 0 && len(r.PCRs) > 0:
			t.Errorf("target read PCRs from a dead TPM: %+v", r)
		case perr == nil:
			t.Logf("target reported: %q", r.Errors)
		}
	})
	t.Run("Timeout", func(t *testing.T) {
		t.Parallel()
		res, err := Boot(context.Background(), Options{
			Kernel: kernel, Initrd: initrd, Append: "console=ttyS0 panic=-1",
			TPM: pcrbank.Version12, Timeout: 3 * time.Second,
		})
		if err == nil || !strings.Contains(err.Error(), "timed out") || !strings.Contains(err.Error(), "console tail") {
			t.Fatalf("err = %v, want a timeout naming the console tail", err)
		}
		if res == nil || res.ExitErr == nil {
			t.Errorf("result %+v: want QEMU's kill status", res)
		}
	})
	t.Run("BadInput", func(t *testing.T) {
		if _, err := Boot(context.Background(), Options{Kernel: "/nonexistent/vmlinuz"}); err == nil || !strings.Contains(err.Error(), "/nonexistent/vmlinuz") {
			t.Errorf("missing kernel: err = %v", err)
		}
		if _, err := Boot(context.Background(), Options{Kernel: kernel, Disks: []Disk{{Path: kernel + ",x"}}}); err == nil {
			t.Error("missing disk: no error")
		}
	})
}

// The boot slots exclude each other across open files (flock), so across
// processes too: with every slot taken, one more boot waits until its
// context ends, and gets a slot once one is free.
func TestBootSlots(t *testing.T) {
	t.Setenv("VTPMBOOT_QEMU_LOCK", filepath.Join(t.TempDir(), "lock"))
	all, err := LockMachineAll(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if _, err := LockMachine(ctx); err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got a slot while all were held: %v", err)
	}
	all()
	one, err := LockMachine(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if runtime.NumCPU() > 1 {
		two, err := LockMachine(context.Background())
		if err != nil {
			t.Fatalf("second slot: %v", err)
		}
		two()
	}
	one()
}
