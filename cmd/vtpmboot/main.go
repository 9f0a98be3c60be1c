//go:build linux

// Command vtpmboot is the stub's /init: it finds the guest's boot entry,
// measures the kernel, command line and initrds into the vTPM and kexecs
// them. It runs as PID 1 from the stub initramfs; see docs/stub.md.
package main

import (
	"io"
	"os"

	"github.com/vtpmboot/vtpmboot/boot/stub"
)

func main() {
	m := &stub.Machine{}
	stub.Run(m, console{})
	// Run ends in kexec or power-off; reaching here means both failed.
	m.PowerOff()
}

// console writes to /dev/console once devtmpfs is mounted, stdout before:
// the kernel gives PID 1 the console as stdout only if the initramfs has a
// /dev/console node, and the stub must be heard either way.
type console struct{}

var out io.Writer

func (console) Write(p []byte) (int, error) {
	if out == nil {
		if f, err := os.OpenFile("/dev/console", os.O_WRONLY, 0); err == nil {
			out = f
		}
	}
	if out == nil {
		return os.Stdout.Write(p)
	}
	return out.Write(p)
}
