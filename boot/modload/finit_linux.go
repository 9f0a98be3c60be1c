//go:build linux

package modload

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// finitModule loads one module file; already loaded is not an error.
func finitModule(file string) (already bool, err error) {
	f, err := os.Open(file)
	if err != nil {
		return false, err
	}
	defer f.Close()
	flags := 0
	if strings.HasSuffix(file, ".xz") || strings.HasSuffix(file, ".zst") || strings.HasSuffix(file, ".gz") {
		// The kernel decompresses itself from 6.4 on; older kernels say EINVAL.
		flags = unix.MODULE_INIT_COMPRESSED_FILE
	}
	err = unix.FinitModule(int(f.Fd()), "", flags)
	switch {
	case err == nil:
		return false, nil
	case errors.Is(err, syscall.EEXIST):
		return true, nil
	case errors.Is(err, syscall.ENODEV):
		return false, fmt.Errorf("finit_module %s: %w (no such hardware here)", file, err)
	case errors.Is(err, syscall.ENOEXEC):
		return false, fmt.Errorf("finit_module %s: %w (built for another kernel?)", file, err)
	}
	return false, fmt.Errorf("finit_module %s: %w", file, err)
}
