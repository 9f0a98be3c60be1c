// Command xentarget is the /init of the Xen end-to-end tests' target
// system: what the stub kexecs into inside a Xen HVM guest. It loads
// xen-tpmfront (Debian builds it as a module), opens the vTPM the way the
// stub does (/dev/tpm0 through tpmfront.Open("auto"), which probes 1.2 vs
// 2.0 by command since xen-tpmfront registers every chip as 1.2), reads
// PCRs 0-9 of every bank and prints them with /proc/cmdline in the
// internal/target/report format, then powers off, or reboots once when dom0
// asked for it (rebootKey). It never hangs: the test waits for the domain
// to end.
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vtpmboot/vtpmboot/boot/modload"
	"github.com/vtpmboot/vtpmboot/internal/target/report"
	"github.com/vtpmboot/vtpmboot/pcrbank"
	"github.com/vtpmboot/vtpmboot/tpmfront"
	"github.com/vtpmboot/vtpmboot/xen/xenstore"
)

const maxPCR = 9

// rebootKey, relative to the guest's /local/domain/<domid>, is written by
// dom0 for a guest that must reboot once (e2e/xen's rebooting guest),
// while its first domid lives. xl's reboot is a new domain with a new
// domid, whose xenstore directory has no such key: that boot powers off.
// dom0 rewrites it after a soft reset, which recreates the directory.
const rebootKey = "data/xentest-reboot"

func main() {
	r := &report.Report{PCRs: map[pcrbank.Alg]map[int][]byte{}}
	fail := func(format string, a ...any) { r.Errors = append(r.Errors, fmt.Sprintf(format, a...)) }
	out := collect(r, fail)
	reboot := false
	if xs, err := xenstore.Open(); err != nil {
		out = append(out, fmt.Sprintf("xenstore: %v", err))
	} else {
		v, err := xs.Read(rebootKey)
		reboot = err == nil && v == "1"
		out = append(out, fmt.Sprintf("%s: %q (reboot: %v)", rebootKey, v, reboot))
		xs.Close()
	}
	con, err := os.OpenFile("/dev/console", os.O_WRONLY|unix.O_NOCTTY, 0)
	if err != nil {
		con = os.Stdout
	}
	for _, l := range out {
		fmt.Fprintf(con, "xentarget: %s\n", l)
	}
	con.WriteString(r.Format())
	_ = unix.IoctlSetInt(int(con.Fd()), unix.TCSBRK, 1)
	con.Close()
	unix.Sync()
	if reboot {
		unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	}
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}

// collect fills r and returns notes for the console: what sysfs says of
// the chip, which the test checks against what the commands found.
func collect(r *report.Report, fail func(string, ...any)) (notes []string) {
	for _, m := range []struct{ src, dir, typ string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
	} {
		os.MkdirAll(m.dir, 0o755)
		if err := unix.Mount(m.src, m.dir, m.typ, 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			fail("mount %s: %v", m.dir, err)
		}
	}
	// Kernel messages in the middle of the report would break its checksum.
	os.WriteFile("/proc/sys/kernel/printk", []byte("1"), 0)
	if b, err := os.ReadFile("/proc/cmdline"); err != nil {
		fail("read /proc/cmdline: %v", err)
	} else {
		r.Cmdline = string(b)
	}
	var uts unix.Utsname
	unix.Uname(&uts)
	loaded, err := modload.LoadAll("/lib/modules/"+unix.ByteSliceToString(uts.Release[:]), []string{"xen-tpmfront"})
	if err != nil {
		fail("modules: %v", err)
	}
	for _, l := range loaded {
		if l.Err != nil && !l.Already {
			notes = append(notes, fmt.Sprintf("module %s: %v", l.Name, l.Err))
		}
	}
	vtpms, _ := filepath.Glob("/sys/bus/xen/devices/vtpm-*")
	notes = append(notes, fmt.Sprintf("xenbus vtpm devices: %d", len(vtpms)))
	if len(vtpms) == 0 {
		return notes
	}
	// The frontend connects after xl has re-added the vtpm device and
	// vtpmback has mapped the new ring, each step a trip through nested
	// emulation: generous, since a guest that never gets there is
	// reported as such and the test waits for the domain anyway.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if _, err := os.Stat("/dev/tpm0"); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, p := range []string{"/dev/tpm0", "/dev/tpmrm0"} {
		_, err := os.Stat(p)
		notes = append(notes, fmt.Sprintf("%s present: %v", p, err == nil))
	}
	if b, err := os.ReadFile("/sys/class/tpm/tpm0/tpm_version_major"); err == nil {
		notes = append(notes, "sysfs tpm_version_major: "+strings.TrimSpace(string(b)))
	}
	t, err := tpmfront.Open("auto")
	if err != nil {
		fail("open TPM: %v", err)
		return notes
	}
	defer t.Close()
	r.Version = t.Version()
	banks, err := t.Banks()
	if err != nil {
		fail("TPM banks: %v", err)
		return notes
	}
	for _, a := range banks {
		r.PCRs[a] = map[int][]byte{}
		for i := 0; i <= maxPCR; i++ {
			v, err := t.ReadPCR(i, a)
			if err != nil {
				fail("read PCR %d %v: %v", i, a, err)
				continue
			}
			r.PCRs[a][i] = v
		}
	}
	return notes
}
