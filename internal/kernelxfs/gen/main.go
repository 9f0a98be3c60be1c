// Command gen regenerates boot/diskimage/testdata/xfs: XFS images written
// by the Linux kernel in a QEMU guest, with what that kernel read back.
// Run it from the module root (the boot takes one of qemutest's machine
// boot slots):
//
//	go run ./internal/kernelxfs/gen
//
// With -seeds it only rewrites FuzzXFS's seeds (mkfs.xfs, no QEMU).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vtpmboot/vtpmboot/internal/kernelxfs"
)

func main() {
	seeds := flag.Bool("seeds", false, "only write the fuzz seeds")
	flag.Parse()
	root, err := os.Getwd()
	out := filepath.Join(root, "boot", "diskimage", "testdata", "xfs")
	if err == nil {
		err = kernelxfs.FuzzSeeds(out)
	}
	if err == nil && !*seeds {
		err = kernelxfs.Generate(context.Background(), root, filepath.Join(root, ".cache", "kernel"), out)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}
