// Package buildinfo names the build of vtpmboot's host commands for
// their --version: one rule for pcrsim, mkstub, vtpmback and the loader,
// so a package's four binaries cannot disagree about what they are.
package buildinfo

import (
	"fmt"
	"runtime/debug"

	"github.com/vtpmboot/vtpmboot/boot/measure"
)

// Version is set at build time by the Makefile and debian/rules
// (-ldflags -X github.com/vtpmboot/vtpmboot/host/buildinfo.Version=...);
// empty in a plain go build, where the module's build info names it.
var Version string

// String is the build: Version, else the module version and VCS
// revision Go recorded, else "(devel)".
func String() string {
	if Version != "" {
		return Version
	}
	v := "(devel)"
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if bi.Main.Version != "" {
		v = bi.Main.Version
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " " + s.Value[:12]
		}
	}
	return v
}

// Line is a command's --version line. The measurement contract is in it
// because it, not the build, decides whether two builds measure and
// predict the same values.
func Line(command string) string {
	return fmt.Sprintf("%s %s, measurement contract %d", command, String(), measure.ContractVersion)
}
