// Command mkstub builds the vtpmboot stub: it copies the kernel, builds the
// reproducible initramfs (/init plus the kernel modules the stub needs) and
// writes example xl configs, printing the SHA-256 of each output so the
// stub's own measurement can be published and checked.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"

	"github.com/vtpmboot/vtpmboot/host/buildinfo"
	"github.com/vtpmboot/vtpmboot/images"
)

// Exit codes.
const (
	exitOK    = 0
	exitBuild = 1 // inputs were fine, building failed
	exitUsage = 2 // bad flags or inputs
)

const usage = `usage: mkstub --kernel VMLINUZ --modules DIR -o OUTDIR [flags]
       mkstub --version

Builds the vtpmboot stub for Xen HVM guests:
  OUTDIR/vmlinuz           copy of --kernel
  OUTDIR/vtpmboot.cpio.gz  reproducible initramfs: /init and kernel modules
  OUTDIR/hvm.cfg           example xl domU config using them (HVM: the stub's
                           kexec needs Xen soft reset, which xl does only for
                           HVM; docs/xen.md)

The stub's /init is, in this order: --init PATH; built with go from --src
DIR (or --init-package); built with go from the current directory when it
is the vtpmboot source tree; the prebuilt one installed with mkstub:
  %s
The same /init and kernel give the same initramfs hash.

Exit status: 0 built, 1 building failed, 2 bad flags or inputs.

Flags:
`

// installedInit is where the Debian package (and make install) put the
// stub's prebuilt /init: PREFIX/lib/vtpmboot/init next to PREFIX/bin/mkstub.
var installedInit = func() string {
	exe, err := os.Executable()
	if err != nil {
		return "/usr/lib/vtpmboot/init"
	}
	if e, err := filepath.EvalSymlinks(exe); err == nil {
		exe = e
	}
	return filepath.Join(filepath.Dir(filepath.Dir(exe)), "lib", "vtpmboot", "init")
}

// modulePath identifies the source tree mkstub may build /init from.
const modulePath = "github.com/vtpmboot/vtpmboot"

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// config is mkstub's command line.
type config struct {
	kernel, modules, outDir, initPath, initPkg, srcDir, modList, vtpmBack, disk string
	noMods, showVer                                                             bool
	extra                                                                       stringList
}

func newFlags(c *config) *flag.FlagSet {
	fs := flag.NewFlagSet("mkstub", flag.ContinueOnError)
	// Parse errors are reported in the --flag spelling users type; the
	// flag package's own says "-flag".
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.kernel, "kernel", "", "kernel image `VMLINUZ` to boot the stub with (e.g. /boot/vmlinuz-$(uname -r))")
	fs.StringVar(&c.modules, "modules", "", "the kernel's modules, `DIR` = /lib/modules/<release> (must hold modules.dep)")
	fs.BoolVar(&c.noMods, "no-modules", false, "pack no kernel modules (a kernel with everything built in)")
	fs.StringVar(&c.outDir, "o", "", "output `DIR` (created if missing)")
	fs.StringVar(&c.initPath, "init", "", "prebuilt static `PATH` packed as /init (default: see above)")
	fs.StringVar(&c.initPkg, "init-package", "", "Go `PACKAGE` built as /init with go, in --src (default "+images.DefaultInitPackage+")")
	fs.StringVar(&c.srcDir, "src", "", "vtpmboot source tree `DIR` that go build runs in")
	fs.StringVar(&c.modList, "module-list", strings.Join(images.DefaultModules, ","), "comma-separated kernel `MODULES` to pack (dependencies are added)")
	fs.StringVar(&c.vtpmBack, "vtpm-backend", "", "`DOMAIN` serving the guest's vTPM in the example xl config (default Domain-0, where vtpmback runs)")
	fs.StringVar(&c.disk, "disk", "format=raw, vdev=xvda, access=rw, target=/dev/vg0/guest", "guest disk `SPEC` for the example xl configs")
	fs.BoolVar(&c.showVer, "version", false, "print the version and exit")
	fs.StringVar(&c.outDir, "output", "", "output `DIR` (same as -o)")
	fs.Var(&c.extra, "add", "extra file `HOSTPATH:ARCHIVEPATH` for the initramfs (repeatable)")
	return fs
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var c config
	fs := newFlags(&c)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stdout, usage, installedInit())
			printFlags(stdout, fs)
			return exitOK
		}
		fmt.Fprintf(stderr, "mkstub: %s (see --help)\n", flagError(err))
		return exitUsage
	}
	if c.showVer {
		fmt.Fprintln(stdout, buildinfo.Line("mkstub"))
		return exitOK
	}
	o, err := c.options(ctx, fs.Args())
	if err != nil {
		fmt.Fprintf(stderr, "mkstub: %v\n", err)
		return exitUsage
	}
	fmt.Fprintf(stdout, "init: %s\n", o.Init)
	if err := build(ctx, o, c.kernel, c.outDir, c.vtpmBack, c.disk, stdout); err != nil {
		fmt.Fprintf(stderr, "mkstub: %v\n", err)
		return exitBuild
	}
	return exitOK
}

// options checks the command line and resolves it into what the
// builder takes; its errors are usage errors.
func (c *config) options(ctx context.Context, rest []string) (images.StubOptions, error) {
	o := images.StubOptions{ModulesDir: c.modules}
	switch {
	case len(rest) != 0:
		return o, fmt.Errorf("unexpected arguments %q (see --help)", rest)
	case c.kernel == "" || c.outDir == "":
		return o, errors.New("--kernel and -o DIR are required (see --help)")
	case (c.modules == "") == !c.noMods:
		return o, errors.New("give exactly one of --modules DIR and --no-modules")
	}
	if err := checkKernel(c.kernel); err != nil {
		return o, err
	}
	if c.modules != "" {
		if _, err := os.Stat(filepath.Join(c.modules, "modules.dep")); err != nil {
			return o, fmt.Errorf("modules directory %s: %v", c.modules, images.ErrNoModulesDep)
		}
		o.Modules = splitList(c.modList)
	}
	var err error
	if o.Extra, err = extraFiles(c.extra); err != nil {
		return o, err
	}
	init, err := chooseInit(c.initPath, c.initPkg, c.srcDir)
	if err != nil {
		return o, err
	}
	// A prebuilt /init is an input: refuse a wrong one before building.
	if p, ok := init.(images.Prebuilt); ok {
		if _, err := p.Binary(ctx); err != nil {
			return o, err
		}
	}
	o.Init = init
	return o, nil
}

func checkKernel(path string) error {
	if st, err := os.Stat(path); err != nil {
		return fmt.Errorf("kernel: %v", err)
	} else if !st.Mode().IsRegular() {
		return fmt.Errorf("kernel %s: not a regular file", path)
	}
	return nil
}

// extraFiles resolves the --add HOSTPATH:ARCHIVEPATH values.
func extraFiles(extra []string) ([]images.File, error) {
	var out []images.File
	for _, a := range extra {
		host, arch, ok := strings.Cut(a, ":")
		if !ok || host == "" || arch == "" {
			return nil, fmt.Errorf("--add %q: want HOSTPATH:ARCHIVEPATH", a)
		}
		st, err := os.Stat(host)
		if err != nil {
			return nil, fmt.Errorf("--add: %v", err)
		}
		if !st.Mode().IsRegular() {
			return nil, fmt.Errorf("--add %s: not a regular file", host)
		}
		out = append(out, images.File{Path: arch, Source: host, Mode: st.Mode().Perm()})
	}
	return out, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func build(ctx context.Context, o images.StubOptions, kernel, outDir, vtpmBack, disk string, stdout io.Writer) error {
	sd, err := images.WriteStubDir(ctx, o, images.DirOptions{Kernel: kernel, Disk: disk, VTPMBackend: vtpmBack}, outDir)
	if err != nil {
		return err
	}
	if ms := sd.Modules; ms != nil {
		builtin := ""
		if len(ms.Builtin) > 0 {
			builtin = " (built in, skipped: " + strings.Join(ms.Builtin, " ") + ")"
		}
		fmt.Fprintf(stdout, "modules: %d for kernel %s%s\n", len(ms.Modules), ms.Release, builtin)
	}
	for _, f := range sd.Files {
		fmt.Fprintf(stdout, "%x  %s  (%d bytes)\n", f.SHA256, f.Path, f.Size)
	}
	return nil
}

// chooseInit picks where /init comes from (the order the usage gives).
func chooseInit(initPath, initPkg, srcDir string) (images.InitSource, error) {
	if initPath != "" {
		if initPkg != "" || srcDir != "" {
			return nil, errors.New("give --init PATH (a prebuilt /init) or --src/--init-package (build one), not both")
		}
		return images.Prebuilt{Path: initPath}, nil
	}
	if initPkg != "" || srcDir != "" {
		if initPkg == "" {
			initPkg = images.DefaultInitPackage
		}
		if srcDir == "" {
			srcDir = "."
		}
		return images.GoBuild{Package: initPkg, Dir: srcDir}, nil
	}
	if isSourceTree(".") {
		return images.GoBuild{Package: images.DefaultInitPackage, Dir: "."}, nil
	}
	p := installedInit()
	if _, err := os.Stat(p); err != nil {
		return nil, fmt.Errorf("no /init to pack: %s is missing and the current directory is not the vtpmboot source tree (give --init PATH or --src DIR)", p)
	}
	return images.Prebuilt{Path: p}, nil
}

// isSourceTree reports whether dir holds vtpmboot's go.mod: a developer
// running mkstub there gets the stub built from the tree in front of them.
func isSourceTree(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`) == modulePath
		}
	}
	return false
}

// flagError turns the flag package's "-name" spellings into "--name".
func flagError(err error) string {
	msg := err.Error()
	for _, p := range []string{"flag provided but not defined: -", "flag needs an argument: -"} {
		if rest, ok := strings.CutPrefix(msg, p); ok {
			what := "unknown flag"
			if strings.HasPrefix(p, "flag needs") {
				what = "flag needs a value"
			}
			return what + " " + dashes(rest)
		}
	}
	return msg
}

func dashes(name string) string {
	name = strings.TrimLeft(name, "-")
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// printFlags lists the flags the way users type them (--kernel VMLINUZ),
// which flag.PrintDefaults does not: it prints one dash.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		line := "  " + dashes(f.Name)
		if name != "" {
			line += " " + name
		}
		fmt.Fprintf(w, "%s\n    \t%s", line, usage)
		if f.DefValue != "" && f.DefValue != "false" {
			fmt.Fprintf(w, " (default %q)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
}
