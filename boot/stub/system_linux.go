//go:build linux

package stub

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vtpmboot/vtpmboot/boot/discover"
	"github.com/vtpmboot/vtpmboot/boot/kexec"
	"github.com/vtpmboot/vtpmboot/boot/modload"
	"github.com/vtpmboot/vtpmboot/boot/mount"
	"github.com/vtpmboot/vtpmboot/tpmfront"
)

// Machine is the real System: the stub as PID 1.
type Machine struct {
	// MountDir is where guest filesystems are mounted (/mnt/<name>).
	MountDir string

	modules *modload.Set // read by LoadModules, used by LoadFSModules
}

var _ System = (*Machine)(nil)

func (m *Machine) MountBase() error {
	for _, mt := range []struct{ src, dir, typ string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
		{"securityfs", "/sys/kernel/security", "securityfs"},
	} {
		if err := os.MkdirAll(mt.dir, 0o755); err != nil {
			return err
		}
		err := unix.Mount(mt.src, mt.dir, mt.typ, unix.MS_NOSUID|unix.MS_NOEXEC, "")
		if err != nil && !errors.Is(err, syscall.EBUSY) {
			return fmt.Errorf("mount %s on %s: %w", mt.typ, mt.dir, err)
		}
	}
	return nil
}

func (m *Machine) Cmdline() (string, error) {
	b, err := os.ReadFile("/proc/cmdline")
	return strings.TrimSuffix(string(b), "\n"), err
}

func (m *Machine) XenGuestType() string {
	typ, _ := os.ReadFile("/sys/hypervisor/type")
	if strings.TrimSpace(string(typ)) != "xen" {
		return ""
	}
	gt, _ := os.ReadFile("/sys/hypervisor/guest_type")
	return strings.TrimSpace(string(gt))
}

// LoadModules is the first stage: everything but filesystem drivers.
func (m *Machine) LoadModules() ([]modload.Loaded, error) {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return nil, fmt.Errorf("uname: %w", err)
	}
	release := unix.ByteSliceToString(uts.Release[:])
	set, err := modload.Open(filepath.Join("/lib/modules", release))
	if err != nil {
		return nil, err
	}
	m.modules = set
	dev, err := set.DeviceModules(mount.AllModules())
	if err != nil {
		return nil, err
	}
	return set.Load(dev), nil
}

// LoadFSModules is the second stage. A filesystem the kernel already has
// (built in) needs no driver module, only its code pages.
func (m *Machine) LoadFSModules(fstypes []string) ([]modload.Loaded, error) {
	if m.modules == nil {
		return nil, errors.New("no modules.dep was read in the first stage")
	}
	have := registeredFS()
	var names []string
	for _, t := range fstypes {
		info := mount.FSInfo{Type: t}
		fstype, _ := info.MountType()
		mods := info.Modules()
		if have[fstype] && len(mods) > 0 {
			mods = mods[1:]
		}
		names = append(names, mods...)
	}
	return m.modules.LoadNames(names), nil
}

// registeredFS reads /proc/filesystems: the types the kernel can mount now.
func registeredFS() map[string]bool {
	b, _ := os.ReadFile("/proc/filesystems")
	have := map[string]bool{}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			have[f[len(f)-1]] = true
		}
	}
	return have
}

func (m *Machine) BlockNames() []string {
	ents, _ := os.ReadDir("/sys/class/block")
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

func (m *Machine) TPMPresent() bool {
	for _, p := range []string{"/dev/tpmrm0", "/dev/tpm0"} {
		if _, err := os.Stat(p); err == nil {
			return true
		}
	}
	return false
}

func (m *Machine) TPMAnnounced() bool { return tpmAnnounced("/sys") }

// tpmACPIIDs are the ACPI hardware IDs Linux's tpm_tis and tpm_crb bind
// (tpm_tis.c tpm_acpi_tbl, tpm_crb.c crb_device_ids); QEMU and Xen's
// device model announce MSFT0101 (TPM 2.0) or PNP0C31 (TIS 1.2).
var tpmACPIIDs = []string{"MSFT0101", "PNP0C31", "ATM1200", "IFX0102", "BCM0101", "BCM0102", "NSC1200", "ICO0102"}

// tpmAnnounced looks under sysfs root for a TPM the platform announces.
// The xenbus and ACPI device lists are complete before /init runs (the
// kernel enumerates both at boot, before any driver module loads), so
// their silence means no TPM. A system with neither bus cannot tell.
func tpmAnnounced(sys string) bool {
	if m, _ := filepath.Glob(filepath.Join(sys, "class/tpm/tpm*")); len(m) > 0 {
		return true
	}
	if m, _ := filepath.Glob(filepath.Join(sys, "bus/xen/devices/vtpm-*")); len(m) > 0 {
		return true
	}
	for _, id := range tpmACPIIDs {
		if m, _ := filepath.Glob(filepath.Join(sys, "bus/acpi/devices", id+":*")); len(m) > 0 {
			return true
		}
	}
	_, xenErr := os.Stat(filepath.Join(sys, "bus/xen/devices"))
	_, acpiErr := os.Stat(filepath.Join(sys, "bus/acpi/devices"))
	return xenErr != nil && acpiErr != nil
}

func (m *Machine) OpenTPM() (tpmfront.Target, error) { return tpmfront.Open("auto") }

func (m *Machine) ScanDevices() ([]mount.Device, error) {
	return mount.Scan("/sys/class/block", "/dev")
}

func (m *Machine) Mount(d mount.Device) (discover.Partition, func() error, error) {
	mt, err := mount.Mount(d, filepath.Join(m.MountDir, d.Name))
	if err != nil {
		return discover.Partition{}, nil, err
	}
	return mt.Partition(), mt.Unmount, nil
}

func (m *Machine) KexecLoad(kernel, initrd *kexec.Image, cmdline string) error {
	return kexec.Load(kernel, initrd, cmdline)
}

func (m *Machine) KexecExec() error { return kexec.Exec() }

// PowerOff never returns: if the power-off call itself fails, PID 1 must
// not exit (the kernel would panic and, with panic=N, reboot into the stub
// again: a loop), so it halts here.
func (m *Machine) PowerOff() {
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	for {
		time.Sleep(time.Hour)
	}
}

func (m *Machine) MemAvailable() (int64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		var kb int64
		if n, _ := fmt.Sscanf(line, "MemAvailable: %d kB", &kb); n == 1 {
			return kb << 10, nil
		}
	}
	return 0, errors.New("/proc/meminfo has no MemAvailable line")
}

func (m *Machine) Now() time.Time        { return time.Now() }
func (m *Machine) Sleep(d time.Duration) { time.Sleep(d) }
