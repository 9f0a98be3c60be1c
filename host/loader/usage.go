package loader

// Usage is what --help prints. libxl never passes --help; an admin
// trying the loader by hand does.
const Usage = `usage: vtpmboot-loader [libxl's bootloader arguments] DISK
       vtpmboot-loader --help | --version

xl's bootloader= for Xen PV and PVH guests (docs/loader.md): reads the
guest's first disk in a deprivileged child, chooses the entry the
vtpmboot stub would, measures kernel -> PCR 4 and command line, initrd
image -> PCR 5 into the guest's vTPM through vtpmback, writes the bytes
it hashed for libxl and answers in libxl's simple0 format.

In the guest's xl config:
  bootloader      = "/usr/lib/vtpmboot/vtpmboot-loader"
  bootloader_args = [ "--vtpm-uuid=UUID" ]   # the uuid of its vtpm= line
  vtpm            = [ "backend=Domain-0,uuid=UUID" ]

bootloader_args items:
  --vtpm-uuid=U            the guest's vTPM, served by vtpmback
  --vtpmback-socket=PATH   vtpmback's control socket (default /run/vtpmboot/vtpmback.sock)
  --vtpm-banks=LIST        the vTPM's banks (default sha1,sha256; sha1 for a TPM 1.2)
  --vtpm-socket-dir=DIR    an admin-started swtpm at DIR/U.sock instead of vtpmback
  --vdev=NAME              the guest's name for the boot disk (default xvda)
  --state-dir=DIR          keep each boot's event log as DIR/U.log (default /var/lib/vtpmboot/loader)
  vtpmboot.entry=E, vtpmboot.disk=D, vtpmboot.tpm=required|optional
                           the stub's options, with the stub's meaning

libxl adds --args=, --output=, --output-format=simple0,
--output-directory=, --runas= (restricted mode) and the disk itself.
A refusal is one line on stderr, which libxl writes to
/var/log/xen/bootloader.DOMID.log; nothing is written for libxl then.

Exit status: 0 booted, 1 refused, 2 bad arguments.
`
