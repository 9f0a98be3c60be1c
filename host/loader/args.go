// Package loader is vtpmboot's measuring bootloader for xl's bootloader=
// (PV and PVH guests): libxl runs it in dom0 before the guest exists, it
// reads the guest's first disk with the stub's own reader and selector
// (boot/disks, boot/discover), measures the chosen kernel, command line
// and initrd image with the one plan (boot/measure) into the guest's vTPM,
// and hands libxl those very bytes in pygrub's simple0 format. No second
// kernel, no kexec, no soft reset.
//
// The calling convention is libxl's, read in Xen 4.17.7
// tools/libs/light/libxl_bootloader.c (make_bootloader_args): the program,
// then --kernel=/--ramdisk=/--args= when the config sets them, then in
// restricted mode --runas=UID --quiet, then --output=FILE
// --output-format=simple0 --output-directory=DIR, then the config's
// bootloader_args, then the boot disk's local path. libxl never passes
// --entry.
package loader

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/vtpmboot/vtpmboot/config"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// Args is one invocation of the loader.
type Args struct {
	// Output is the file libxl reads the result from
	// (/var/lib/xen/bootloader.<domid>.out); OutputDir is where the
	// kernel and ramdisk files go (/var/lib/xen/bootloader.<domid>.d).
	Output, OutputDir string
	// DomID comes from Output's name; -1 when it does not follow libxl's
	// pattern (a hand-run loader).
	DomID int
	// RunAs is the uid libxl's restricted mode asks for (--runas=); -1
	// when it was not given.
	RunAs int
	Quiet bool
	// Extra is libxl's --args=: the xl config's cmdline=, or root= and
	// extra= joined as xl_parse.c's parse_cmdline joins them.
	Extra string
	// Opts are the stub's options, from bootloader_args.
	Opts config.StubOptions
	// Warnings are the options parser's (unknown vtpmboot.* keys).
	Warnings []string
	// VTPMUUID is the guest's vTPM (--vtpm-uuid=); VTPMSocketDir the
	// directory of admin-started swtpms (--vtpm-socket-dir=); without
	// it the vTPM is vtpmback's, reached through its control socket
	// (--vtpmback-socket=, default vtpmctl.DefaultSocket).
	VTPMUUID, VTPMSocketDir, VTPMBackSocket string
	// VTPMBanks are the vtpmback vTPM's banks (--vtpm-banks=).
	VTPMBanks []pcrbank.Alg
	// StateDir keeps a copy of each boot's event log per vTPM
	// (--state-dir=, default DefaultStateDir); "" disables it.
	StateDir string
	// VDev is the guest's name for the boot disk (--vdev=, default
	// "xvda"): libxl hands the bootloader the xl config's first disk,
	// which a Linux guest sees as xvda unless vdev= says otherwise. It
	// names partitions for vtpmboot.disk= and in messages.
	VDev string
	// Disk is the boot disk's local path, libxl's last argument.
	Disk string
}

// DefaultStateDir holds the per-vTPM copies of the event logs.
const DefaultStateDir = "/var/lib/vtpmboot/loader"

// DefaultVDev is the guest's name for the disk libxl hands the loader.
const DefaultVDev = "xvda"

var (
	outputName = regexp.MustCompile(`^bootloader\.([0-9]+)\.out$`)
	uuidRE     = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	vdevRE     = regexp.MustCompile(`^[a-z]+[0-9a-z]*$`)
)

// ErrUsage wraps every argument error.
var ErrUsage = errors.New("bad arguments")

func usage(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrUsage, fmt.Sprintf(format, a...))
}

// ParseArgs parses the loader's command line (without the program name)
// as libxl builds it. Anything the loader cannot honour exactly is an
// error: a bootloader that ignores an option boots something other than
// what the config says.
func ParseArgs(argv []string) (*Args, error) {
	a := &Args{DomID: -1, RunAs: -1, StateDir: DefaultStateDir, VDev: DefaultVDev}
	var opts []string
	var positional []string
	seen := map[string]bool{}
	for _, arg := range argv {
		if arg == "" {
			return nil, usage("an empty argument (an empty bootloader_args item?)")
		}
		if !strings.HasPrefix(arg, "--") {
			if strings.HasPrefix(arg, config.Prefix) {
				opts = append(opts, arg)
			} else {
				positional = append(positional, arg)
			}
			continue
		}
		name, val, hasVal := strings.Cut(arg, "=")
		if seen[name] {
			return nil, usage("%s given twice", name)
		}
		seen[name] = true
		needVal := func() error {
			if !hasVal || val == "" {
				return usage("%s needs a value (%s=...)", name, name)
			}
			return nil
		}
		var err error
		switch name {
		case "--quiet", "-q":
			a.Quiet = true
		case "--output":
			err = needVal()
			a.Output = val
		case "--output-directory":
			err = needVal()
			a.OutputDir = val
		case "--output-format":
			if val != "simple0" {
				err = usage("--output-format=%q: only simple0 (what libxl asks for) is written", val)
			}
		case "--runas":
			if err = needVal(); err == nil {
				uid, perr := strconv.Atoi(val)
				if perr != nil || uid <= 0 || uid > 1<<31-2 {
					err = usage("--runas=%q: want a uid other than root", val)
				}
				a.RunAs = uid
			}
		case "--args":
			a.Extra = val
		case "--kernel", "--ramdisk":
			// xl passes these when the config sets kernel=/ramdisk= next
			// to bootloader=; pygrub then loads that path from the guest
			// disk instead of the menu's. The loader boots what the
			// guest's own boot configuration says, chosen as the stub
			// chooses it, so a second way to name a kernel is refused.
			err = usage("%s=%q: remove kernel=/ramdisk= from the xl config; the loader boots the entry the guest's boot configuration names (choose one with bootloader_args=[\"vtpmboot.entry=...\"])", name, val)
		case "--entry":
			err = usage("--entry=%q: use vtpmboot.entry=%s in bootloader_args (the stub's option, the same meaning)", val, val)
		case "--vtpm-uuid":
			if err = needVal(); err == nil && !uuidRE.MatchString(val) {
				err = usage("--vtpm-uuid=%q: not a UUID", val)
			}
			a.VTPMUUID = strings.ToLower(val)
		case "--vtpm-socket-dir":
			err = needVal()
			a.VTPMSocketDir = val
		case "--vtpmback-socket":
			err = needVal()
			a.VTPMBackSocket = val
		case "--vtpm-banks":
			if err = needVal(); err == nil {
				var perr error
				if a.VTPMBanks, perr = pcrbank.ParseAlgList(val); perr != nil {
					err = usage("--vtpm-banks=%q: %v", val, perr)
				}
			}
		case "--state-dir":
			a.StateDir = val
		case "--vdev":
			if err = needVal(); err == nil && !vdevRE.MatchString(val) {
				err = usage("--vdev=%q: want a disk name such as xvda", val)
			}
			a.VDev = val
		default:
			err = usage("unknown option %s", arg)
		}
		if err != nil {
			return nil, err
		}
	}
	if a.Output == "" || a.OutputDir == "" {
		return nil, usage("--output= and --output-directory= are required (libxl always passes them)")
	}
	if !seen["--output-format"] {
		return nil, usage("--output-format=simple0 is required (libxl always passes it)")
	}
	switch len(positional) {
	case 0:
		return nil, usage("no disk: libxl passes the boot disk's path last")
	case 1:
		a.Disk = positional[0]
	default:
		return nil, usage("more than one disk or stray argument: %q", positional)
	}
	if m := outputName.FindStringSubmatch(filepath.Base(a.Output)); m != nil {
		if id, err := strconv.Atoi(m[1]); err == nil {
			a.DomID = id
		}
	}
	o, warnings, err := ParseOptions(opts)
	if err != nil {
		return nil, err
	}
	a.Opts, a.Warnings = o, warnings
	// The guest's own command line must not carry the loader's options:
	// there they would be both obeyed here and measured into PCR 5 as if
	// the guest's kernel had a use for them.
	for _, p := range config.SplitCmdline(a.Extra) {
		if strings.HasPrefix(p.Name, config.Prefix) {
			return nil, usage("%s is in the guest's command line (xl extra=/cmdline=): put it in bootloader_args instead", p.Name)
		}
	}
	if a.VTPMSocketDir != "" && a.VTPMUUID == "" {
		return nil, usage("--vtpm-socket-dir needs --vtpm-uuid= (the swtpm is DIR/UUID.sock)")
	}
	if a.VTPMSocketDir != "" && (a.VTPMBackSocket != "" || a.VTPMBanks != nil) {
		return nil, usage("--vtpm-socket-dir (an admin's swtpm) and --vtpmback-socket/--vtpm-banks (vtpmback's vTPM) exclude each other")
	}
	if a.VTPMUUID == "" && (a.VTPMBackSocket != "" || a.VTPMBanks != nil) {
		return nil, usage("--vtpmback-socket and --vtpm-banks need --vtpm-uuid=")
	}
	return a, nil
}

// ParseOptions reads vtpmboot.* options given as separate bootloader_args
// with the stub's parser (config.ParseStubOptions), so they mean what
// they mean on the stub's command line. Each must be one parameter: a
// space inside one would split it differently here and in the stub.
func ParseOptions(args []string) (config.StubOptions, []string, error) {
	var line []string
	for _, a := range args {
		if ps := config.SplitCmdline(a); len(ps) != 1 || strings.ContainsAny(a, "\"") {
			return config.StubOptions{}, nil, usage("bootloader_args item %q: want one vtpmboot.key=value without spaces or quotes", a)
		}
		line = append(line, a)
	}
	o, w, err := config.ParseStubOptions(strings.Join(line, " "))
	if err != nil {
		return o, w, fmt.Errorf("%w: %w", ErrUsage, err)
	}
	if o.Timeout != config.DefaultTimeout {
		w = append(w, "vtpmboot.timeout= has no effect on the loader (libxl has attached the disk before it runs)")
	}
	return o, w, nil
}

// ArgsFor parses what libxl would pass the loader for an xl config:
// --args= with xl's command line (cmdline=, or root= and extra=) when it
// is non-empty (make_bootloader_args skips an empty one), the config's
// bootloader_args, and the boot disk. pcrsim predicts loader guests from
// the result, so it reads the arguments with the loader's own parser.
func ArgsFor(cmdline string, bootloaderArgs []string, disk string) (*Args, error) {
	var argv []string
	if cmdline != "" {
		argv = append(argv, "--args="+cmdline)
	}
	argv = append(argv, "--output=/nonexistent/bootloader.0.out", "--output-format=simple0", "--output-directory=/nonexistent")
	argv = append(argv, bootloaderArgs...)
	return ParseArgs(append(argv, disk))
}

// IsLoader reports whether an xl bootloader= setting runs this loader.
func IsLoader(bootloader string) bool {
	return filepath.Base(bootloader) == "vtpmboot-loader"
}
