package loaderimg

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// BootResult is one boot of a disk image.
type BootResult struct {
	// Console is everything on COM1: the loader's output, if it writes
	// any, then the observer's report.
	Console []byte
	// Observed is the observer's report; nil when the loader never
	// started the observer.
	Observed *Observation
	// Waited says the deadline passed with the VM still running: the
	// loader is waiting for a person (a menu, a password prompt).
	Waited   bool
	Duration time.Duration
	// Err is why QEMU ended otherwise (a crash, a triple fault).
	Err error
}

// Boot boots img under QEMU TCG with SeaBIOS (i440fx, IDE disk, 256 MiB),
// COM1 to a file and isa-debug-exit at port 0xf4 for the observer. The
// disk is opened with snapshot=on: a loader that writes its environment
// block (savedefault, recordfail) cannot change the image pcrsim reads.
func Boot(ctx context.Context, img string, deadline time.Duration) (*BootResult, error) {
	serial := filepath.Join(filepath.Dir(img), "serial.log")
	os.Remove(serial)
	bctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	args := []string{
		"-machine", "pc,accel=tcg", "-m", "256", "-display", "none", "-monitor", "none",
		"-serial", "file:" + serial, "-parallel", "none", "-net", "none",
		"-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
		"-drive", "file=" + img + ",format=raw,if=ide,snapshot=on",
		"-no-reboot",
	}
	cmd := exec.CommandContext(bctx, "qemu-system-x86_64", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	out, err := cmd.CombinedOutput()
	r := &BootResult{Duration: time.Since(start)}
	r.Console, _ = os.ReadFile(serial)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	var ee *exec.ExitError
	switch {
	case bctx.Err() != nil:
		r.Waited = true
	case errors.As(err, &ee) && ee.ExitCode() == 1:
		// isa-debug-exit with value 0: the observer finished.
	case err != nil:
		r.Err = fmt.Errorf("qemu: %v: %s", err, out)
	default:
		r.Err = fmt.Errorf("qemu exited without the observer (reset or power-off): %s", out)
	}
	if r.Err == nil && !r.Waited {
		o, perr := ParseObservation(r.Console)
		if perr != nil {
			r.Err = perr
		}
		r.Observed = o
	}
	return r, nil
}
