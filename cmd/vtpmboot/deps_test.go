package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The stub is PID 1 of a guest and the first code to touch guest bytes.
// The layout carries the rule: host-only code (predictions, policies, PCR
// reading files, xl configs, dom0's Xen backends) lives under host/, test
// harnesses under internal/, and the stub imports neither tree. What it
// does import is the guest runtime and the contract it shares with pcrsim
// (boot/, config, pcrbank, tpmfront, xen/xenstore).
var forbiddenTrees = []string{"host/", "internal/", "cmd/pcrsim", "cmd/mkstub", "cmd/vtpmback", "e2e", "images"}

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
		for _, tree := range forbiddenTrees {
			if rel == strings.TrimSuffix(tree, "/") || strings.HasPrefix(rel, tree) {
				t.Errorf("the stub imports %s, which is under %s (host-only or test-only)", rel, tree)
			}
		}
	}
	// The one plan, the one selector and the one reader of guest disks are
	// what the stub and pcrsim share; a stub without them has forked them.
	for _, need := range []string{"boot/diskimage", "boot/disks", "boot/measure", "boot/discover"} {
		if !seen[need] {
			t.Errorf("the stub does not import %s", need)
		}
	}
}
