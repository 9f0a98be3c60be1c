package loaderimg

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
)

// GRUB 0.97's shell (Debian's grub-legacy) is a 32-bit i386 binary. Some
// kernels of this machine's kind run with IA-32 emulation off ("i386 execve
// returns ENOEXEC"); there qemu-i386-static (qemu-user-static) runs it.
const (
	grubLegacyShell = "grub"
	qemuI386        = "qemu-i386-static"
	// RefuseI386Env, set to 1, makes this package act as if the kernel
	// refused i386 executables, so the qemu-i386-static path is tested on a
	// machine that runs them natively.
	RefuseI386Env = "VTPMBOOT_REFUSE_I386"
)

var i386 struct {
	once   sync.Once
	native bool
	err    error
}

// runsI386 reports whether this kernel executes i386 binaries, found by
// running GRUB's shell itself: ENOEXEC from execve means no.
func runsI386() (bool, error) {
	if os.Getenv(RefuseI386Env) == "1" {
		return false, nil
	}
	i386.once.Do(func() {
		path, err := exec.LookPath(grubLegacyShell)
		if err != nil {
			i386.err = fmt.Errorf("GRUB legacy shell: %w (run `make deps`)", err)
			return
		}
		err = exec.Command(path, "--version").Run()
		switch {
		case err == nil:
			i386.native = true
		case errors.Is(err, syscall.ENOEXEC):
		default:
			i386.err = fmt.Errorf("%s --version: %w", path, err)
		}
	})
	return i386.native, i386.err
}

// GRUBLegacyCommand is the argv prefix that runs GRUB 0.97's shell here:
// the binary itself, or through qemu-i386-static when the kernel refuses
// i386 executables. The error says which of the two is missing.
func GRUBLegacyCommand() ([]string, error) {
	native, err := runsI386()
	if err != nil {
		return nil, err
	}
	path, err := exec.LookPath(grubLegacyShell)
	if err != nil {
		return nil, fmt.Errorf("GRUB legacy shell: %w (run `make deps`)", err)
	}
	if native {
		return []string{path}, nil
	}
	q, err := exec.LookPath(qemuI386)
	if err != nil {
		return nil, fmt.Errorf("this kernel refuses i386 executables (ENOEXEC) and %s is not installed to run GRUB 0.97's 32-bit shell (run `make deps`)", qemuI386)
	}
	return []string{q, path}, nil
}

// grubLegacyCommands is what Commands lists for GRUB legacy: the shell, and
// qemu-i386-static where the shell cannot run natively.
func grubLegacyCommands() []string {
	if native, err := runsI386(); err == nil && !native {
		return []string{grubLegacyShell, qemuI386}
	}
	return []string{grubLegacyShell}
}
