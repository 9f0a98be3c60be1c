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

	"github.com/vtpmboot/vtpmboot/images"
)

// Exit codes.
const (
	exitOK    = 0
	exitBuild = 1 // inputs were fine, building failed
	exitUsage = 2 // bad flags or inputs
)

const usage = `usage: mkstub --kernel VMLINUZ --modules DIR -o OUTDIR [flags]

Builds the vtpmboot stub for Xen HVM guests:
  OUTDIR/vmlinuz           copy of --kernel
  OUTDIR/vtpmboot.cpio.gz  reproducible initramfs: /init and kernel modules
  OUTDIR/hvm.cfg           example xl domU config using them (HVM: the stub's
                           kexec needs Xen soft reset, which xl does only for
                           HVM; docs/xen.md)

Flags:
`

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("mkstub", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	var (
		kernel   = fs.String("kernel", "", "kernel image to boot the stub with (e.g. /boot/vmlinuz-$(uname -r))")
		modules  = fs.String("modules", "", "the kernel's module directory, /lib/modules/<release> (must hold modules.dep)")
		noMods   = fs.Bool("no-modules", false, "pack no kernel modules (a kernel with everything built in)")
		outDir   = fs.String("o", "", "output directory (created if missing)")
		initPkg  = fs.String("init", images.DefaultInitPackage, "Go package built as /init")
		srcDir   = fs.String("src", ".", "`DIR` that go build runs in (the vtpmboot source tree)")
		modList  = fs.String("module-list", strings.Join(images.DefaultModules, ","), "comma-separated kernel modules to pack (dependencies are added)")
		vtpmBack = fs.String("vtpm-backend", "", "domain serving the guest's vTPM in the example xl config (default Domain-0, where vtpmback runs)")
		disk     = fs.String("disk", "format=raw, vdev=xvda, access=rw, target=/dev/vg0/guest", "guest disk spec for the example xl configs")
		extra    stringList
	)
	fs.Var(&extra, "add", "extra file `HOSTPATH:ARCHIVEPATH` for the initramfs (repeatable)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "mkstub: "+format+"\n", a...)
		return exitUsage
	}
	if fs.NArg() != 0 {
		return usageErr("unexpected arguments %q (see --help)", fs.Args())
	}
	if *kernel == "" || *outDir == "" {
		return usageErr("--kernel and -o are required (see --help)")
	}
	if (*modules == "") == !*noMods {
		return usageErr("give exactly one of --modules DIR and --no-modules")
	}
	if err := checkKernel(*kernel); err != nil {
		return usageErr("%v", err)
	}
	o := images.StubOptions{Init: images.GoBuild{Package: *initPkg, Dir: *srcDir}, ModulesDir: *modules}
	if *modules != "" {
		if _, err := os.Stat(filepath.Join(*modules, "modules.dep")); err != nil {
			return usageErr("modules directory %s: %v", *modules, images.ErrNoModulesDep)
		}
		o.Modules = splitList(*modList)
	}
	var err error
	if o.Extra, err = extraFiles(extra); err != nil {
		return usageErr("%v", err)
	}

	if err := build(ctx, o, *kernel, *outDir, *vtpmBack, *disk, stdout); err != nil {
		fmt.Fprintf(stderr, "mkstub: %v\n", err)
		return exitBuild
	}
	return exitOK
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
