//go:build linux

package stub

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vtpmboot/vtpmboot/boot/acpilog"
	"github.com/vtpmboot/vtpmboot/boot/disks"
	"github.com/vtpmboot/vtpmboot/boot/kexec"
	"github.com/vtpmboot/vtpmboot/boot/measure"
	"github.com/vtpmboot/vtpmboot/boot/modload"
	"github.com/vtpmboot/vtpmboot/pcrbank"
	"github.com/vtpmboot/vtpmboot/tpmfront"
)

// Machine is the real System: the stub as PID 1.
type Machine struct{}

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

// LoadModules loads every module packed into the image: the block and TPM
// front ends, nothing that parses a filesystem.
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
	names := make([]string, len(set.Modules))
	for i, mod := range set.Modules {
		names[i] = mod.Name
	}
	order, err := set.Order(names)
	if err != nil {
		return nil, err
	}
	return set.Load(order), nil
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

func (m *Machine) OpenTPM() (pcrbank.Target, error) { return tpmfront.Open("auto") }

// OpenDisks sets every block device read-only in the kernel (BLKROSET;
// partitions too, so nothing in this guest can write them) and opens the
// whole disks read-only for boot/disks to read in userspace.
func (m *Machine) OpenDisks() ([]disks.Disk, func(), error) {
	return openDisks("/sys/class/block", "/dev")
}

func openDisks(sysClassBlock, devDir string) ([]disks.Disk, func(), error) {
	ents, err := os.ReadDir(sysClassBlock)
	if err != nil {
		return nil, func() {}, fmt.Errorf("list block devices: %w", err)
	}
	var names []string
	for _, e := range ents {
		name := e.Name()
		if !disks.Searched(name) {
			continue
		}
		if err := setReadOnly(filepath.Join(devDir, name)); err != nil {
			return nil, func() {}, err
		}
		if _, err := os.Stat(filepath.Join(sysClassBlock, name, "partition")); err == nil {
			continue // partitions are read through their disk's table
		}
		names = append(names, name)
	}
	sort.Slice(names, func(i, j int) bool { return disks.NameLess(names[i], names[j]) })
	var out []disks.Disk
	var files []*os.File
	closeAll := func() {
		for _, f := range files {
			f.Close()
		}
		files = nil
	}
	for _, name := range names {
		path := filepath.Join(devDir, name)
		f, err := os.OpenFile(path, os.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			closeAll()
			return nil, func() {}, fmt.Errorf("open %s: %w", path, err)
		}
		files = append(files, f)
		size, err := f.Seek(0, io.SeekEnd)
		if err != nil {
			closeAll()
			return nil, func() {}, fmt.Errorf("size of %s: %w", path, err)
		}
		out = append(out, disks.Disk{Linux: name, R: f, Size: size})
	}
	return out, closeAll, nil
}

// setReadOnly marks a block device read-only in the kernel (BLKROSET):
// from then on nothing in this guest can write it.
func setReadOnly(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	if err := unix.IoctlSetPointerInt(int(f.Fd()), unix.BLKROSET, 1); err != nil {
		return fmt.Errorf("BLKROSET %s: %w", path, err)
	}
	ro, err := unix.IoctlGetInt(int(f.Fd()), unix.BLKROGET)
	if err != nil {
		return fmt.Errorf("BLKROGET %s: %w", path, err)
	}
	if ro != 1 {
		return fmt.Errorf("%s is still writable after BLKROSET", path)
	}
	return nil
}

// NewImage fills a memfd and seals it (kexec.Buffer). name is for
// messages; the memfd's own name is cut to what memfd_create takes.
func (m *Machine) NewImage(name string, r io.Reader) (Image, error) {
	mname := name
	if len(mname) > 200 {
		mname = mname[:200]
	}
	buf, err := kexec.NewBuffer(mname)
	if err != nil {
		return nil, err
	}
	if err := buf.Fill(name, r); err != nil {
		buf.Close()
		return nil, err
	}
	return buf.Seal()
}

// KexecLoad takes the images NewImage made: their descriptors go to
// kexec_file_load.
func (m *Machine) KexecLoad(kernel, initrd Image, cmdline string) error {
	k, ok := kernel.(*kexec.Image)
	if !ok {
		return fmt.Errorf("kexec: kernel image %T was not made by NewImage", kernel)
	}
	var i *kexec.Image
	if initrd != nil {
		if i, ok = initrd.(*kexec.Image); !ok {
			return fmt.Errorf("kexec: initrd image %T was not made by NewImage", initrd)
		}
	}
	return kexec.Load(k, i, cmdline)
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

func (m *Machine) AppendFirmwareLog(v pcrbank.Version, ms []measure.Measurement) (string, error) {
	a, r, err := acpilog.AppendSystem(v, ms)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%v: %v", a, r), nil
}

// xenMemory is the balloon driver's sysfs directory (drivers/xen/xen-balloon.c).
const xenMemory = "/sys/devices/system/xen_memory/xen_memory0"

func (m *Machine) XenBalloon() (Balloon, bool, error) {
	if _, err := os.Stat(xenMemory); errors.Is(err, os.ErrNotExist) {
		return Balloon{}, false, nil
	} else if err != nil {
		return Balloon{}, false, err
	}
	var v [3]int64
	for i, name := range []string{"info/current_kb", "info/low_kb", "info/high_kb"} {
		b, err := os.ReadFile(filepath.Join(xenMemory, name))
		if err != nil {
			return Balloon{}, false, err
		}
		if _, err := fmt.Sscan(string(b), &v[i]); err != nil {
			return Balloon{}, false, fmt.Errorf("%s/%s: %q: %w", xenMemory, name, b, err)
		}
	}
	return Balloon{Current: v[0], Out: v[1] + v[2]}, true, nil
}

func (m *Machine) SetXenBalloonTarget(kb int64) error {
	return os.WriteFile(filepath.Join(xenMemory, "target_kb"), []byte(fmt.Sprintf("%d\n", kb)), 0)
}
