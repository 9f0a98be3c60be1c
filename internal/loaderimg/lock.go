package loaderimg

import (
	"fmt"
	"os"
	"syscall"
)

// HeavyLockPath is the machine-wide lock that CPU-heavy jobs (QEMU boots,
// long fuzzing) take in turn on a shared two-core machine.
const HeavyLockPath = "/tmp/vtpm-heavy.lock"

// HeavyLock blocks until this process holds HeavyLockPath and returns the
// function that releases it. VTPMBOOT_HEAVY_LOCK_HELD=1 says a parent
// (`flock /tmp/vtpm-heavy.lock make test`) already holds it: taking it
// again from a child would wait forever.
func HeavyLock() (func(), error) {
	if os.Getenv("VTPMBOOT_HEAVY_LOCK_HELD") == "1" {
		return func() {}, nil
	}
	f, err := os.OpenFile(HeavyLockPath, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", HeavyLockPath, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("flock %s: %w", HeavyLockPath, err)
	}
	return func() { f.Close() }, nil
}
