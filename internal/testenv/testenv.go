// Package testenv lets tests demand the real parts they prove behaviour
// against (swtpm, tpm2-tools, QEMU, mkfs, the Debian kernel). A missing part
// fails the test: a skipped cross-check would let CI pass having proved
// nothing. Set VTPMBOOT_ALLOW_SKIP=1 to skip instead, e.g. on a laptop
// without swtpm; `make deps` installs everything.
package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// NeedCommands fails (or skips, see package doc) unless every command is on PATH.
func NeedCommands(t testing.TB, cmds ...string) {
	t.Helper()
	for _, c := range cmds {
		if _, err := exec.LookPath(c); err != nil {
			missing(t, c+" is not installed (run `make deps`)")
		}
	}
}

// NeedFile fails (or skips) unless path exists; hint says how to make it.
func NeedFile(t testing.TB, path, hint string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		missing(t, path+" is missing ("+hint+")")
	}
}

func missing(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("VTPMBOOT_ALLOW_SKIP") == "1" {
		t.Skip(why)
	}
	t.Fatal(why + "; set VTPMBOOT_ALLOW_SKIP=1 to skip instead")
}

// RepoRoot is the module root, found from this file's location so tests in
// any package can reach testdata/ and .cache/.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}
