package tpmfront

import (
	"errors"
	"fmt"
	"github.com/vtpmboot/vtpmboot/pcrbank"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

func autoDevice() (string, error) {
	// The resource manager lets the stub share the TPM with anything else
	// running; a TPM 1.2 (e.g. Xen's vtpm-stubdom) has only /dev/tpm0.
	for _, p := range []string{"/dev/tpmrm0", "/dev/tpm0"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no TPM: neither /dev/tpmrm0 nor /dev/tpm0 exists (is the tpm driver, e.g. xen-tpmfront, loaded?)")
}

// openDeviceFile opens the device blocking and outside Go's poller: in
// non-blocking mode the kernel's TPM driver queues a write asynchronously
// and a read can then return 0 bytes, which would look like end of file.
func openDeviceFile(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), path), nil
}

// deviceVersion reads /sys/class/tpm/tpmN/tpm_version_major for /dev/tpmN
// or /dev/tpmrmN: Version20 or 0, and then the TPM is probed.
func deviceVersion(path string) pcrbank.Version {
	base := filepath.Base(path)
	n, ok := strings.CutPrefix(base, "tpmrm")
	if !ok {
		if n, ok = strings.CutPrefix(base, "tpm"); !ok {
			return 0
		}
	}
	b, err := os.ReadFile(fmt.Sprintf("/sys/class/tpm/tpm%s/tpm_version_major", n))
	if err != nil {
		return 0
	}
	// Only "2" is trusted: xen-tpmfront registers every chip as 1.2
	// (its ops never set TPM_CHIP_FLAG_TPM2), whatever the backend runs,
	// so a "1" from it may be a TPM 2.0, which the probe tells apart.
	if strings.TrimSpace(string(b)) == "2" {
		return pcrbank.Version20
	}
	return 0
}
