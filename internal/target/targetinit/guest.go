package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vtpmboot/vtpmboot/boot/modload"
	"github.com/vtpmboot/vtpmboot/internal/target/report"
)

// Guest mode (e2e TestGuest): the target plays an installed system. With
// e2e.guest=1 on its command line it mounts the disk as a Debian system
// would (vda1 on /, vda2 on /boot, read-write), runs the disk's own
// /usr/local/bin/pcrsim in that tree (chroot), simulates a kernel update
// (the booted kernel file grows by 4096 zero bytes; grub.cfg's
// e2e.guest=1 becomes e2e.guest=2) and predicts the next boot. With
// e2e.guest=2 it mounts read-only and only verifies. Each command's exit
// status and output go into the report as extras.
const (
	sysroot = "/sysroot"
	pcrsim  = "/usr/local/bin/pcrsim"
)

var guestModules = []string{"virtio_pci", "virtio_blk", "ext4"}

func guest(r *report.Report, mode, kernel, banks string, fail func(string, ...any)) {
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	rel := string(bytes.TrimRight(uts.Release[:], "\x00"))
	if _, err := modload.LoadAll(filepath.Join("/lib/modules", rel), guestModules); err != nil {
		fail("load modules: %v", err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, err := os.Stat("/dev/vda2"); err == nil || time.Now().After(deadline) {
			break
		}
	}
	flags := uintptr(0)
	if mode != "1" {
		flags = unix.MS_RDONLY
	}
	mounts := []struct{ src, dir, typ string }{
		{"/dev/vda1", sysroot, "ext4"},
		{"/dev/vda2", sysroot + "/boot", "ext4"},
	}
	for _, m := range mounts {
		_ = os.MkdirAll(m.dir, 0o755)
		if err := unix.Mount(m.src, m.dir, m.typ, flags, ""); err != nil {
			fail("mount %s on %s: %v", m.src, m.dir, err)
			return
		}
	}
	for _, d := range []string{"/proc", "/sys", "/dev"} {
		if err := unix.Mount(d, sysroot+d, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			fail("bind %s: %v", d, err)
			return
		}
	}
	defer func() {
		unix.Sync()
		for _, d := range []string{"/dev", "/sys", "/proc", "/boot", ""} {
			if err := unix.Unmount(sysroot+d, unix.MNT_DETACH); err != nil {
				fail("unmount %s: %v", sysroot+d, err)
			}
		}
		unix.Sync()
	}()
	run(r, "verify-current", "verify", "--current")
	run(r, "verify-eventlog", "verify", "--current", "--eventlog", "/sys/kernel/security/tpm0/binary_bios_measurements")
	if mode != "1" {
		return
	}
	// The update: the booted kernel changes on disk, and the menu entry's
	// command line with it.
	k := filepath.Join(sysroot, kernel)
	f, err := os.OpenFile(k, os.O_WRONLY|os.O_APPEND, 0)
	if err == nil {
		_, err = f.Write(make([]byte, 4096))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fail("update %s: %v", k, err)
		return
	}
	cfg := filepath.Join(sysroot, "boot/grub/grub.cfg")
	b, err := os.ReadFile(cfg)
	if err == nil {
		err = os.WriteFile(cfg, bytes.ReplaceAll(b, []byte("e2e.guest=1"), []byte("e2e.guest=2")), 0o644)
	}
	if err != nil {
		fail("update %s: %v", cfg, err)
		return
	}
	unix.Sync()
	run(r, "verify-updated", "verify", "--current")
	run(r, "predict", "predict", "--root", "/", "--bank", banks, "--format", "json")
	// The installed hook, as the kernel package's postinst runs it.
	if _, err := os.Stat(filepath.Join(sysroot, hook)); err == nil {
		runIn(r, "hook", hook, "6.1.0-e2e", kernel)
		for _, f := range []string{"next-boot.json", "next-boot.policy.json"} {
			b, err := os.ReadFile(filepath.Join(sysroot, "var/lib/vtpmboot", f))
			if err != nil {
				fail("hook output: %v", err)
			}
			extra(r, "hook-"+f, string(b))
		}
	}
}

const hook = "/etc/kernel/postinst.d/zz-vtpmboot-predict"

// run runs pcrsim in the installed tree and records "<name>-exit" and
// "<name>-out" (stdout, then stderr).
func run(r *report.Report, name string, args ...string) { runIn(r, name, pcrsim, args...) }

func runIn(r *report.Report, name, prog string, args ...string) {
	cmd := exec.Command(prog, args...)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
	cmd.SysProcAttr = &unix.SysProcAttr{Chroot: sysroot}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		errb.WriteString(err.Error())
	}
	extra(r, name+"-exit", fmt.Sprint(code))
	extra(r, name+"-out", out.String())
	extra(r, name+"-err", errb.String())
}

// guestArgs reads e2e.guest=, e2e.kernel= and e2e.banks= from the command line.
func guestArgs(cmdline string) (mode, kernel, banks string) {
	for _, f := range strings.Fields(cmdline) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "e2e.guest":
			mode = v
		case "e2e.kernel":
			kernel = v
		case "e2e.banks":
			banks = v
		}
	}
	return
}
