// Command targetinit is the /init of the e2e tests' target system: the
// system the stub kexecs into (or that QEMU boots directly in the harness
// smoke test). It reports what the booted kernel sees (PCRs of every bank,
// /proc/cmdline, the firmware event log) on the console in the
// internal/target/report format and powers off. It must never hang: a test
// waits for QEMU to exit, so every error is reported and followed by
// power-off.
package main

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vtpmboot/vtpmboot/boot/acpilog"
	"github.com/vtpmboot/vtpmboot/internal/target/report"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

const (
	tpmClass = "/sys/class/tpm/tpm0"
	eventLog = "/sys/kernel/security/tpm0/binary_bios_measurements"
	maxPCR   = 9
)

func main() {
	r := &report.Report{PCRs: map[pcrbank.Alg]map[int][]byte{}}
	fail := func(format string, a ...any) { r.Errors = append(r.Errors, fmt.Sprintf(format, a...)) }
	mounts(fail)
	// Kernel messages printed while the block goes out would break its
	// checksum; keep only emergencies on the console from here on.
	if err := os.WriteFile("/proc/sys/kernel/printk", []byte("1"), 0); err != nil {
		fail("quiet printk: %v", err)
	}
	collect(r, fail)
	if mode, kernel, banks := guestArgs(r.Cmdline); mode != "" {
		guest(r, mode, kernel, banks, fail)
	}
	if unsealRequested(r.Cmdline) {
		unseal(r)
	}
	out := console()
	out.WriteString(r.Format())
	// tcdrain: the UART must have sent the last byte before power-off, or
	// the END marker is lost.
	_ = unix.IoctlSetInt(int(out.Fd()), unix.TCSBRK, 1)
	out.Close()
	if os.Getpid() == 1 {
		unix.Sync()
		err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
		// Returning from PID 1 panics the kernel, which with panic=-1 and
		// QEMU's -no-reboot also ends the VM: still no hang.
		fmt.Fprintf(os.Stderr, "targetinit: power off: %v\n", err)
	}
}

func mounts(fail func(string, ...any)) {
	for _, m := range []struct{ src, dir, typ string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"securityfs", "/sys/kernel/security", "securityfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
	} {
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			fail("mkdir %s: %v", m.dir, err)
			continue
		}
		if err := unix.Mount(m.src, m.dir, m.typ, 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			fail("mount %s on %s: %v", m.typ, m.dir, err)
		}
	}
}

// console prefers the kernel console device: the initramfs may lack
// /dev/console, in which case PID 1 starts with no stdout at all.
func console() *os.File {
	if f, err := os.OpenFile("/dev/console", os.O_WRONLY|unix.O_NOCTTY, 0); err == nil {
		return f
	}
	return os.Stdout
}

func collect(r *report.Report, fail func(string, ...any)) {
	if b, err := os.ReadFile("/proc/cmdline"); err != nil {
		fail("read /proc/cmdline: %v", err)
	} else {
		r.Cmdline = string(b)
	}
	// tpm_tis probes before init runs, but a module-loaded front end
	// (xen-tpmfront) may still be coming up: wait a little, never forever.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(tpmClass); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := os.Stat(tpmClass); err != nil {
		fail("no TPM: %v", err)
		return
	}
	r.Version = version(fail)
	switch r.Version {
	case pcrbank.Version20:
		for _, a := range pcrbank.AllAlgs {
			dir := filepath.Join(tpmClass, "pcr-"+a.String())
			if _, err := os.Stat(dir); err != nil {
				continue
			}
			for i := 0; i <= maxPCR; i++ {
				f := filepath.Join(dir, strconv.Itoa(i))
				b, err := os.ReadFile(f)
				if err != nil {
					fail("read %s: %v", f, err)
					continue
				}
				v, err := hex.DecodeString(strings.TrimSpace(string(b)))
				if err != nil || len(v) != a.Size() {
					fail("%s: %q is not a %v digest", f, strings.TrimSpace(string(b)), a)
					continue
				}
				if r.PCRs[a] == nil {
					r.PCRs[a] = map[int][]byte{}
				}
				r.PCRs[a][i] = v
			}
		}
		if len(r.PCRs) == 0 {
			fail("TPM 2.0 without any %s/pcr-<bank> directory", tpmClass)
		}
	case pcrbank.Version12:
		pcrs12(r, fail)
	}
	b, err := os.ReadFile(eventLog)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// No log is a finding the test judges, not an error here.
	case err != nil:
		fail("read %s: %v", eventLog, err)
	default:
		r.EventLog = b
	}
	acpi(r, fail)
}

// acpi reports the ACPI TPM table and the used part of the log area it
// declares (the rest must be zeros, checked here), so tests see the log
// area as the next kernel's driver copied it and testdata can be captured
// from a real SeaBIOS.
func acpi(r *report.Report, fail func(string, ...any)) {
	table, a, area, err := acpilog.ReadSystem(r.Version)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if table != nil {
		extra(r, "acpi-table", string(table))
	}
	if err != nil {
		fail("ACPI log area: %v", err)
		return
	}
	used := len(bytes.TrimRight(area, "\x00"))
	extra(r, "acpi-area-len", strconv.Itoa(int(a.Len)))
	extra(r, "acpi-area", string(area[:used]))
}

func extra(r *report.Report, k, v string) {
	if r.Extra == nil {
		r.Extra = map[string]string{}
	}
	r.Extra[k] = v
}

func version(fail func(string, ...any)) pcrbank.Version {
	if b, err := os.ReadFile(filepath.Join(tpmClass, "tpm_version_major")); err == nil {
		switch strings.TrimSpace(string(b)) {
		case "1":
			return pcrbank.Version12
		case "2":
			return pcrbank.Version20
		}
	}
	if _, err := os.Stat(filepath.Join(tpmClass, "pcr-sha256")); err == nil {
		return pcrbank.Version20
	}
	if _, err := os.Stat(filepath.Join(tpmClass, "pcr-sha1")); err == nil {
		return pcrbank.Version20
	}
	for _, p := range []string{"pcrs", "device/pcrs"} {
		if _, err := os.Stat(filepath.Join(tpmClass, p)); err == nil {
			return pcrbank.Version12
		}
	}
	fail("%s: cannot tell the TPM version", tpmClass)
	return pcrbank.VersionSoftware
}

// pcrs12 parses the TPM 1.2 sysfs "pcrs" file: "PCR-04: 3A 3F ... \n".
func pcrs12(r *report.Report, fail func(string, ...any)) {
	var b []byte
	var file string
	var err error
	for _, p := range []string{"pcrs", "device/pcrs"} {
		file = filepath.Join(tpmClass, p)
		if b, err = os.ReadFile(file); err == nil {
			break
		}
	}
	if err != nil {
		fail("read %s: %v", file, err)
		return
	}
	r.PCRs[pcrbank.SHA1] = map[int][]byte{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), ":")
		idx, err := strconv.Atoi(strings.TrimPrefix(name, "PCR-"))
		if !ok || err != nil {
			fail("%s: bad line %q", file, sc.Text())
			continue
		}
		v, err := hex.DecodeString(strings.Join(strings.Fields(val), ""))
		if err != nil || len(v) != 20 {
			fail("%s: bad value in line %q", file, sc.Text())
			continue
		}
		if idx <= maxPCR {
			r.PCRs[pcrbank.SHA1][idx] = v
		}
	}
}
