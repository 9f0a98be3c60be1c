//go:build linux

// Command kernelinit is the /init of the initramfs that e2e/loader boots
// under a real Linux kernel, to cross-check the observer: it prints, on
// COM1, /proc/cmdline in hex (the exact bytes) and the marker files that
// each initrd archive brought, then powers the VM off.
package main

import (
	"encoding/hex"
	"fmt"
	"os"
	"sort"
	"syscall"
)

func main() {
	_ = os.MkdirAll("/proc", 0o755)
	_ = os.MkdirAll("/dev", 0o755)
	_ = syscall.Mount("proc", "/proc", "proc", 0, "")
	_ = syscall.Mount("devtmpfs", "/dev", "devtmpfs", 0, "")
	out, err := os.OpenFile("/dev/ttyS0", os.O_WRONLY, 0)
	if err != nil {
		out = os.Stdout
	}
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		fmt.Fprintf(out, "\nVTPMKERNEL error=%v\n", err)
	}
	// The kernel ends /proc/cmdline with a newline of its own.
	if n := len(cmdline); n > 0 && cmdline[n-1] == '\n' {
		cmdline = cmdline[:n-1]
	}
	var names []string
	if ents, err := os.ReadDir("/vtpm"); err == nil {
		for _, e := range ents {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	fmt.Fprintf(out, "\nVTPMKERNEL cmdline=%s\n", hex.EncodeToString(cmdline))
	for _, n := range names {
		fmt.Fprintf(out, "VTPMKERNEL initrd-file=%s\n", n)
	}
	fmt.Fprintf(out, "VTPMKERNEL end\n")
	syscall.Sync()
	_ = syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}
