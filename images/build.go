package images

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// InitSource gives the bytes of the initramfs's /init: GoBuild compiles it
// from a source tree, Prebuilt reads one built earlier (the installed
// package's). The initramfs depends only on these bytes, so the same
// binary and the same kernel give the same initramfs hash either way.
type InitSource interface {
	Binary(ctx context.Context) ([]byte, error)
	// String names the source for messages ("go build ./cmd/vtpmboot in
	// DIR", "/usr/lib/vtpmboot/init").
	String() string
}

// GoBuild describes a static Go binary for the initramfs.
type GoBuild struct {
	// Package is the Go package to build, e.g. "./cmd/vtpmboot".
	Package string
	// Dir is the directory go runs in (the module root for "./..." paths);
	// "" means the current directory.
	Dir string
	// Env adds or overrides environment variables (e.g. GOCACHE).
	Env []string
}

func (g GoBuild) String() string {
	dir := g.Dir
	if dir == "" {
		dir = "."
	}
	return fmt.Sprintf("go build %s in %s", g.Package, dir)
}

// DefaultInitPackage is the stub's /init.
const DefaultInitPackage = "./cmd/vtpmboot"

// buildEnv pins everything that changes the output binary, so the digest
// of the stub depends only on the source tree and the Go toolchain.
var buildEnv = []string{
	"CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOAMD64=v1",
	"GOFLAGS=", "GOEXPERIMENT=", "GOTOOLCHAIN=local",
}

// Binary builds the package as a static linux/amd64 executable with no
// paths, build ID or VCS stamp in it, and returns its bytes.
func (g GoBuild) Binary(ctx context.Context) ([]byte, error) {
	if g.Package == "" {
		return nil, fmt.Errorf("go build: no package given")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		return nil, fmt.Errorf("go build %s: %w", g.Package, err)
	}
	tmp, err := os.MkdirTemp("", "images-gobuild-")
	if err != nil {
		return nil, fmt.Errorf("go build %s: %w", g.Package, err)
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, "init")
	cmd := exec.CommandContext(ctx, goTool, "build", "-trimpath", "-buildvcs=false",
		"-ldflags=-s -w -buildid=", "-o", out, g.Package)
	cmd.Dir = g.Dir
	cmd.Env = append(append(os.Environ(), buildEnv...), g.Env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Stdout = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go build %s: %w\n%s", g.Package, err, strings.TrimSpace(stderr.String()))
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("go build %s: %w", g.Package, err)
	}
	return b, nil
}

// Prebuilt is an /init binary built earlier, e.g. the stub's
// /usr/lib/vtpmboot/init that the Debian package ships so that mkstub needs
// neither Go nor the source tree.
type Prebuilt struct {
	Path string
}

func (p Prebuilt) String() string { return p.Path }

// maxInitSize bounds what Prebuilt reads: the stub's /init is about 7 MB,
// and the whole initramfs has a 4 MiB compressed budget.
const maxInitSize = 64 << 20

// Binary reads the file and refuses what cannot run as PID 1 of the stub's
// initramfs: anything but a static x86-64 Linux ELF executable. A
// dynamically linked /init finds no loader there and the kernel panics
// ("No working init found") before anything is measured, so that is said
// here, on the host, instead.
func (p Prebuilt) Binary(context.Context) ([]byte, error) {
	f, err := os.Open(p.Path)
	if err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("init %s: not a regular file", p.Path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxInitSize+1))
	if err != nil {
		return nil, fmt.Errorf("init: read %s: %w", p.Path, err)
	}
	if len(b) > maxInitSize {
		return nil, fmt.Errorf("init %s: larger than %d MiB, not a stub /init", p.Path, maxInitSize>>20)
	}
	if err := CheckInit(b); err != nil {
		return nil, fmt.Errorf("init %s: %w", p.Path, err)
	}
	return b, nil
}

// ErrNotStaticInit says a file cannot be the stub's /init.
var ErrNotStaticInit = errors.New("not a static x86-64 Linux executable")

// CheckInit reports whether b can run as the initramfs's /init on the
// stub's x86-64 kernel: an ELF executable for EM_X86_64 with no program
// interpreter (PT_INTERP), which is what CGO_ENABLED=0 go build gives.
func CheckInit(b []byte) error {
	ef, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNotStaticInit, err)
	}
	defer ef.Close()
	if ef.Class != elf.ELFCLASS64 || ef.Machine != elf.EM_X86_64 {
		return fmt.Errorf("%w: ELF for %v %v", ErrNotStaticInit, ef.Class, ef.Machine)
	}
	if ef.Type != elf.ET_EXEC && ef.Type != elf.ET_DYN {
		return fmt.Errorf("%w: ELF type %v", ErrNotStaticInit, ef.Type)
	}
	if ef.OSABI != elf.ELFOSABI_NONE && ef.OSABI != elf.ELFOSABI_LINUX {
		return fmt.Errorf("%w: OS ABI %v", ErrNotStaticInit, ef.OSABI)
	}
	for _, ph := range ef.Progs {
		if ph.Type == elf.PT_INTERP {
			return fmt.Errorf("%w: dynamically linked (it asks for a program interpreter, which the stub's initramfs does not have)", ErrNotStaticInit)
		}
	}
	return nil
}

// StubOptions says what goes into a stub initramfs.
type StubOptions struct {
	// Init gives /init; nil means GoBuild{Package: DefaultInitPackage} in
	// the current directory, and a GoBuild's empty Package means
	// DefaultInitPackage.
	Init InitSource
	// ModulesDir is the kernel's /lib/modules/<release>; "" packs no modules.
	ModulesDir string
	// Modules to pack (with dependencies); nil means DefaultModules.
	Modules []string
	// Extra files are added last and win over generated ones.
	Extra []File
}

// Stub assembles the stub initramfs: /init, the modules, and the empty
// mount points the stub uses. The returned ModuleSet is nil without
// ModulesDir.
func Stub(ctx context.Context, o StubOptions) (*Initramfs, *ModuleSet, error) {
	ir := &Initramfs{}
	var ms *ModuleSet
	if o.ModulesDir != "" {
		names := o.Modules
		if names == nil {
			names = DefaultModules
		}
		var err error
		if ms, err = ResolveModules(o.ModulesDir, names); err != nil {
			return nil, nil, err
		}
		ms.AddTo(ir)
	}
	init := o.Init
	if init == nil {
		init = GoBuild{}
	}
	if g, ok := init.(GoBuild); ok && g.Package == "" {
		g.Package = DefaultInitPackage
		init = g
	}
	bin, err := init.Binary(ctx)
	if err != nil {
		return nil, nil, err
	}
	ir.AddData("init", bin, 0o755)
	for _, d := range []string{"dev", "proc", "sys", "tmp", "mnt", "run"} {
		ir.Add(File{Path: d, Dir: true})
	}
	for _, f := range o.Extra {
		ir.Add(f)
	}
	return ir, ms, nil
}
