package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The unit vtpmback ships with: ordered around Debian's SysV Xen
// scripts, swtpms outside the stop/restart kill, /run/vtpmboot kept; and
// systemd itself accepts it (systemd-analyze verify, with the binary
// where the unit says).
func TestSystemdUnit(t *testing.T) {
	b, err := os.ReadFile("../../packaging/systemd/vtpmback.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	for _, want := range []string{"\nAfter=xen.service", "\nBefore=xendomains.service", "\nKillMode=process\n",
		"\nRuntimeDirectory=vtpmboot\n", "\nRuntimeDirectoryPreserve=yes\n", "\nStateDirectoryMode=0700\n",
		"\nDeviceAllow=/dev/xen/privcmd rw\n", "\nExecStart=@SBINDIR@/vtpmback\n"} {
		if !strings.Contains(unit, want) {
			t.Errorf("unit lacks %q", strings.TrimSpace(want))
		}
	}
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Log("no systemd-analyze here; syntax not checked")
		return
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "vtpmback")
	os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755)
	p := filepath.Join(dir, "vtpmback.service")
	os.WriteFile(p, []byte(strings.ReplaceAll(unit, "@SBINDIR@", dir)), 0o644)
	out, err := exec.Command("systemd-analyze", "verify", "--man=no", p).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
