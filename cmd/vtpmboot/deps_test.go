package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The stub is PID 1 of a guest and the first code to touch guest bytes:
// it may import only what the boot needs. This list is deliberate; a new
// package of ours in the stub must be added here with a reason, and
// host-only code (boot/predict, tpmfront/pcrfile, config/xl, the test
// harnesses) never belongs. The one reader of guest disks must be there.
var stubPackages = map[string]bool{
	"boot/bls": true, "boot/discover": true, "boot/diskimage": true, "boot/disks": true,
	"boot/entry": true, "boot/eventlog": true, "boot/grub2": true, "boot/grub2/grubenv": true,
	"boot/grublegacy": true, "boot/kexec": true, "boot/measure": true, "boot/modload": true,
	"boot/stub": true, "boot/syslinux": true, "boot/termsafe": true, "config": true, "tpmfront": true, "cmd/vtpmboot": true,
	// Appends the stub's events to the firmware's ACPI log area before
	// kexec (docs/measurements.md); reads only ACPI tables and /dev/mem.
	"boot/acpilog": true,
}

const module = "github.com/vtpmboot/vtpmboot/"

func TestStubImportsNothingHostOnly(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	seen := map[string]bool{}
	for _, p := range strings.Fields(string(out)) {
		rel, ours := strings.CutPrefix(p, module)
		if !ours {
			continue
		}
		seen[rel] = true
		if !stubPackages[rel] {
			t.Errorf("the stub imports %s, which is not on its list", rel)
		}
	}
	for _, need := range []string{"boot/diskimage", "boot/disks", "boot/measure", "boot/discover"} {
		if !seen[need] {
			t.Errorf("the stub does not import %s", need)
		}
	}
}
