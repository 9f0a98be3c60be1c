package loader

import (
	"fmt"
	"io"
	"strings"

	"github.com/vtpmboot/vtpmboot/boot/discover"
	"github.com/vtpmboot/vtpmboot/boot/disks"
)

// MaxCmdline is the longest command line the loader hands libxl. A PV
// guest gets its command line through start_info.cmd_line, which libxc
// truncates to MAX_GUEST_CMDLINE-1 = 1023 bytes (xg_dom_x86.c,
// start_info_x86_64: strncpy then a NUL at 1023); a longer one would be
// measured whole and received cut. PVH has no such cut, but one rule for
// both keeps a guest's PCR 5 from depending on its type.
const MaxCmdline = 1023

// Choose reads the boot disk (disk index 0 of the guest, named vdev) with
// the stub's reader and applies the stub's selection rules: vtpmboot.disk=
// (disks.Select), the rule for unreadable volumes and vtpmboot.entry=
// (discover.Choose). pcrsim predicts loader guests through this function too.
func Choose(r io.ReaderAt, size int64, path, vdev string, opts ChooseOptions) (*discover.Choice, error) {
	vols, err := disks.Read(0, disks.Disk{Linux: vdev, Path: path, R: r, Size: size})
	if err != nil {
		return nil, fmt.Errorf("read disk %s: %w", path, err)
	}
	sel := disks.Select(vols, opts.Disk)
	if len(sel) == 0 {
		var have []string
		for _, v := range vols {
			have = append(have, v.Name)
		}
		if opts.Disk == "" {
			return nil, fmt.Errorf("disk %s: no partitions or filesystems", path)
		}
		return nil, fmt.Errorf("disk %s: nothing matches vtpmboot.disk=%s; volumes: %s", path, opts.Disk, strings.Join(have, ", "))
	}
	s := discover.Choose(sel, opts.Entry)
	if s.Err != nil {
		return nil, fmt.Errorf("disk %s: choose boot entry: %w", path, s.Err)
	}
	return s.Choice, nil
}

// ChooseOptions are the stub options selection uses.
type ChooseOptions struct{ Entry, Disk string }

// FinalCmdline is the command line the guest's kernel receives when the
// chosen entry says entryArgs and libxl passed --args=extra: pygrub's rule
// (run_grub: the entry's args, then " " and --args when set), then what
// libxl does with the "args" line (bootloader_result_command skips the
// white space after the keyword, so leading white space of the command
// line never reaches the guest; libxl__build_pv/PVH pass the rest as
// is). Unrepresentable command lines are refused.
func FinalCmdline(entryArgs, extra string) (string, error) {
	c := entryArgs
	if extra != "" {
		c += " " + extra
	}
	c = strings.TrimLeft(c, " \t\n\v\f\r")
	if strings.ContainsRune(c, 0) {
		return "", fmt.Errorf("command line has a NUL byte, which would end libxl's simple0 item early")
	}
	if len(c) > MaxCmdline {
		return "", fmt.Errorf("command line is %d bytes; a Xen PV guest receives at most %d (libxc truncates start_info.cmd_line), so the measured and the received command line would differ", len(c), MaxCmdline)
	}
	return c, nil
}
