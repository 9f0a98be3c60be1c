// Command vtpmboot-loader is vtpmboot's measuring bootloader for xl's
// bootloader= (PV and PVH guests); see docs/loader.md. It is a thin main
// over host/loader.
package main

import (
	"os"

	"github.com/vtpmboot/vtpmboot/host/loader"
)

func main() {
	os.Exit(loader.Main(os.Args, os.Stdout, os.Stderr))
}
