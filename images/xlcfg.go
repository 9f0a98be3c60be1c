package images

import (
	"fmt"
	"strings"
)

// XLOptions fill in the example xl domU configs mkstub writes.
type XLOptions struct {
	Name    string // domain name
	Kernel  string // path of the stub kernel in dom0
	Ramdisk string // path of the stub initramfs in dom0
	Disk    string // xl disk spec of the guest's boot disk
	// VTPMBackend is the name of the vtpm-stubdom domain serving this
	// guest's vTPM; "" gives "<Name>-vtpm".
	VTPMBackend string
	MemoryMB    int
}

// XLConfig renders an example config for guest type "pvh" or "hvm".
func XLConfig(kind string, o XLOptions) (string, error) {
	var console, typeNote string
	switch kind {
	case "pvh":
		console = "hvc0"
		typeNote = `# PVH: no emulated devices, the kernel is entered directly. Not PV: kexec
# does not work in Xen PV guests, so the stub cannot hand over there. Kexec
# in PVH guests is not verified anywhere public yet: try HVM if it fails.`
	case "hvm":
		console = "ttyS0"
		typeNote = `# HVM: kexec goes through Xen's soft reset (on_soft_reset below).`
	default:
		return "", fmt.Errorf("xl config: unknown guest type %q (want pvh or hvm)", kind)
	}
	backend := o.VTPMBackend
	if backend == "" {
		backend = o.Name + "-vtpm"
	}
	mem := o.MemoryMB
	if mem == 0 {
		// The stub holds the next kernel and initrds in memory before
		// kexec, next to its own initramfs: leave room for both.
		mem = 1024
	}
	var b strings.Builder
	fmt.Fprintf(&b, `# Example xl domU config booting a guest through the vtpmboot stub (%s).
# The stub (kernel + initramfs below) finds the guest's boot config on its
# disk, measures the kernel (PCR 4), command line and initrds (PCR 5) into
# the vTPM and kexecs into exactly the measured bytes.
name = %q
%s
type = %q

# The stub, not the guest's kernel: it lives in dom0, so the guest cannot
# change what is measured first.
kernel = %q
ramdisk = %q
# console=: where the stub reports what it measured.
# vtpmboot.tpm=required: refuse to boot unmeasured if no vTPM shows up.
extra = "console=%s vtpmboot.tpm=required"

memory = %d
vcpus = 1

# The guest's own disk. The stub mounts it read-only (ro,noload for ext4)
# and never writes it.
disk = [ %q ]

# The vTPM the measurements go to: the guest's own vtpm-stubdom (a TPM 1.2
# emulator the guest reaches through xen-tpmfront), started before the
# guest. That domain's config, not this one, carries the vTPM's uuid and
# names the vTPM manager: vtpm = [ "backend=vtpmmgr,uuid=..." ].
vtpm = [ "backend=%s" ]
`, kind, o.Name, typeNote, kind, o.Kernel, o.Ramdisk, console, mem, o.Disk, backend)
	if kind == "hvm" {
		b.WriteString(`
# Linux kexec in an HVM guest asks Xen for a soft reset; this keeps the
# domain (and its vTPM) instead of destroying it. It is xl's default,
# spelled out because the stub depends on it.
on_soft_reset = "soft-reset"
`)
	}
	return b.String(), nil
}
