package images

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

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

// StubOptions says what goes into a stub initramfs.
type StubOptions struct {
	// Init builds /init; Init.Package defaults to DefaultInitPackage.
	Init GoBuild
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
	if o.Init.Package == "" {
		o.Init.Package = DefaultInitPackage
	}
	bin, err := o.Init.Binary(ctx)
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
