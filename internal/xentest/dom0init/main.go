// Command dom0init is the /init of the Xen test harness's dom0 initramfs
// (internal/xentest). dom0 has no disk: its userspace is this machine's
// own root, shared read-only by QEMU over 9p (tag "hostroot") under a tmpfs
// overlay, so xl, oxenstored and swtpm are the host's Debian packages. A
// second, writable share (tag "xenout") is mounted at the same absolute
// path it has on the host, so paths in the plan mean the same on both
// sides. dom0init then runs the plan script, xentest.sh, as PID 1's child
// and powers off when it ends: the test waits for QEMU to exit.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vtpmboot/vtpmboot/boot/modload"
)

func main() {
	err := run()
	if err != nil {
		fmt.Fprintf(os.Stderr, "dom0init: FATAL: %v\n", err)
	}
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}

func run() error {
	for _, m := range []struct{ src, dir, typ string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
	} {
		os.MkdirAll(m.dir, 0o755)
		if err := unix.Mount(m.src, m.dir, m.typ, 0, ""); err != nil && err != unix.EBUSY {
			return fmt.Errorf("mount %s: %w", m.dir, err)
		}
	}
	var uts unix.Utsname
	unix.Uname(&uts)
	loaded, err := modload.LoadAll("/lib/modules/"+unix.ByteSliceToString(uts.Release[:]), nil)
	if err != nil {
		return fmt.Errorf("modules: %w", err)
	}
	for _, l := range loaded {
		if l.Err != nil {
			fmt.Fprintf(os.Stderr, "dom0init: module %s: %v\n", l.Name, l.Err)
		}
	}
	args, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return err
	}
	out := param(string(args), "xentest.out")
	if out == "" {
		return fmt.Errorf("no xentest.out= on the command line %q", args)
	}
	for _, d := range []string{"/host", "/rw", "/newroot"} {
		os.MkdirAll(d, 0o755)
	}
	// msize: 9p's default 8 KiB makes every file read a crawl under TCG.
	if err := unix.Mount("hostroot", "/host", "9p", unix.MS_RDONLY, "trans=virtio,version=9p2000.L,msize=524288,cache=loose"); err != nil {
		return fmt.Errorf("mount host root over 9p: %w", err)
	}
	if err := unix.Mount("tmpfs", "/rw", "tmpfs", 0, "size=512m"); err != nil {
		return fmt.Errorf("mount tmpfs: %w", err)
	}
	os.MkdirAll("/rw/upper", 0o755)
	os.MkdirAll("/rw/work", 0o755)
	if err := unix.Mount("overlay", "/newroot", "overlay", 0, "lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work"); err != nil {
		return fmt.Errorf("mount overlay: %w", err)
	}
	if err := os.MkdirAll("/newroot"+out, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("xenout", "/newroot"+out, "9p", 0, "trans=virtio,version=9p2000.L,msize=524288"); err != nil {
		return fmt.Errorf("mount %s over 9p: %w", out, err)
	}
	for _, d := range []string{"proc", "sys", "dev"} {
		if err := unix.Mount("/"+d, "/newroot/"+d, "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("move /%s: %w", d, err)
		}
	}
	if err := unix.Chroot("/newroot"); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	if err := os.Chdir("/"); err != nil {
		return err
	}
	console, err := os.OpenFile("/dev/console", os.O_RDWR, 0)
	if err != nil {
		console = os.Stdout
	}
	cmd := exec.Command("/bin/bash", out+"/xentest.sh")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, console, console
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "XENTEST_OUT=" + out, "TERM=dumb"}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("xentest.sh: %w", err)
	}
	return nil
}

func param(cmdline, name string) string {
	for _, f := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(f, name+"="); ok {
			return v
		}
	}
	return ""
}
