package images

import (
	"fmt"
	"strings"
)

// XLOptions fill in the example xl domU config mkstub writes.
type XLOptions struct {
	Name    string // domain name
	Kernel  string // path of the stub kernel in dom0
	Ramdisk string // path of the stub initramfs in dom0
	Disk    string // xl disk spec of the guest's boot disk
	// VTPMBackend is the domain serving the guest's vTPM: "" gives
	// Domain-0, where cmd/vtpmback serves it from swtpm.
	VTPMBackend string
	// VTPMUUID names the guest's vTPM (vtpmback's <uuid>.sock); ""
	// writes ExampleUUID, to be replaced.
	VTPMUUID string
	MemoryMB int
}

// ExampleUUID stands in the example config for the vTPM's uuid.
const ExampleUUID = "00000000-0000-4000-8000-000000000000"

// XLConfig renders the example config, for guest type "hvm". PVH is
// refused with the reason: the stub's kexec needs Xen's soft reset, which
// xl performs only for HVM guests (docs/xen.md).
func XLConfig(kind string, o XLOptions) (string, error) {
	switch kind {
	case "hvm":
	case "pvh":
		return "", fmt.Errorf(`xl config: type %q: the stub's kexec needs Xen soft reset, which xl supports only for type="hvm" (libxl 4.17 destroys a PVH guest that kexecs); see docs/xen.md`, kind)
	default:
		return "", fmt.Errorf("xl config: unknown guest type %q (want hvm)", kind)
	}
	backend := o.VTPMBackend
	if backend == "" {
		backend = "Domain-0"
	}
	uuid, uuidNote := o.VTPMUUID, ""
	if uuid == "" {
		uuid, uuidNote = ExampleUUID, "\n# Replace the example uuid with this guest's own (uuidgen): it picks the\n# swtpm, so two guests with one uuid would share a TPM."
	}
	mem := o.MemoryMB
	if mem == 0 {
		// The stub holds the next kernel and initrds in memory before
		// kexec, next to its own initramfs: leave room for both.
		mem = 1024
	}
	var b strings.Builder
	fmt.Fprintf(&b, `# Example xl domU config booting a guest through the vtpmboot stub.
# The stub (kernel + initramfs below) finds the guest's boot config on its
# disk, measures the kernel (PCR 4), command line and initrds (PCR 5) into
# the vTPM and kexecs into exactly the measured bytes. docs/xen.md has the
# recipe this was tested with under Xen 4.17.
name = %q

# HVM, not PVH or PV: Linux's kexec asks Xen for a soft reset, and xl
# performs one only for HVM guests (on_soft_reset below). A PVH guest's
# kexec ends with xl destroying it, so the stub refuses PVH before reading
# the disk or measuring anything; PV guests cannot kexec at all.
type = "hvm"

# The stub, not the guest's kernel: it lives in dom0, so the guest cannot
# change what is measured first.
kernel = %q
ramdisk = %q
# console=: where the stub reports what it measured.
# vtpmboot.tpm=required: refuse to boot unmeasured if no vTPM shows up.
extra = "console=ttyS0 vtpmboot.tpm=required"

memory = %d
vcpus = 1

# The guest's own disk. The stub reads it in userspace and never writes it.
disk = [ %q ]

# The vTPM the measurements go to, reached through xen-tpmfront: with
# backend=Domain-0, vtpmback (running in dom0 before xl create) serves it
# from the swtpm listening on <socket-dir>/<uuid>.sock, TPM 1.2 or 2.0.%s
vtpm = [ "backend=%s,uuid=%s" ]

# Linux kexec in an HVM guest asks Xen for a soft reset; this keeps the
# domain (its memory, and its vTPM's PCRs) instead of destroying it. It is
# xl's default, spelled out because the stub depends on it.
on_soft_reset = "soft-reset"

# The soft reset restarts the device model, which re-creates the serial
# port: to keep the stub's log and the next kernel's in one file, give the
# serial port a file opened for appending instead of serial=:
# device_model_args_hvm = [ "-chardev", "file,id=con,path=/var/log/xen/%s.console,append=on", "-device", "isa-serial,chardev=con" ]
`, o.Name, o.Kernel, o.Ramdisk, mem, o.Disk, uuidNote, backend, uuid, o.Name)
	return b.String(), nil
}
