package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vtpmboot/vtpmboot/internal/testenv"
)

// TestMakeInstall runs the real `make install` into a DESTDIR with
// PREFIX=/usr and checks each file is where Debian looks for it and
// works: the binary runs, man(1) renders the page, bash parses the
// completion and the hook, the hook names the installed binary, and the
// completion completes a subcommand.
func TestMakeInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds pcrsim; skipped with -short")
	}
	testenv.NeedCommands(t, "make", "man", "bash", "gzip")
	dest := t.TempDir()
	cmd := exec.Command("make", "-s", "install", "DESTDIR="+dest, "PREFIX=/usr")
	cmd.Dir = testenv.RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	for _, f := range []string{
		"usr/bin/pcrsim", "usr/share/man/man1/pcrsim.1.gz", "usr/share/bash-completion/completions/pcrsim",
		"etc/kernel/postinst.d/zz-vtpmboot-predict", "etc/kernel/postrm.d/zz-vtpmboot-predict",
		"etc/default/vtpmboot-predict", "usr/lib/systemd/system/vtpmboot-predict.service", "usr/lib/systemd/system/vtpmboot-predict.path",
	} {
		if _, err := os.Stat(filepath.Join(dest, f)); err != nil {
			t.Errorf("not installed: %v", err)
		}
	}
	out, err := exec.Command(filepath.Join(dest, "usr/bin/pcrsim"), "--help").Output()
	if err != nil || !strings.Contains(string(out), "eventlog") {
		t.Errorf("installed pcrsim --help: %v\n%s", err, out)
	}
	man, err := exec.Command("man", "-l", filepath.Join(dest, "usr/share/man/man1/pcrsim.1.gz")).CombinedOutput()
	if err != nil || !strings.Contains(string(man), "verify --current") {
		t.Errorf("man -l: %v\n%s", err, man)
	}
	hook := filepath.Join(dest, "etc/kernel/postinst.d/zz-vtpmboot-predict")
	b, _ := os.ReadFile(hook)
	if !strings.Contains(string(b), "/usr/bin/pcrsim predict --root /") {
		t.Errorf("hook does not call the installed pcrsim:\n%s", b)
	}
	for _, f := range []string{hook, filepath.Join(dest, "usr/share/bash-completion/completions/pcrsim")} {
		if out, err := exec.Command("bash", "-n", f).CombinedOutput(); err != nil {
			t.Errorf("bash -n %s: %v %s", f, err, out)
		}
	}
	// Completion offers the subcommands.
	comp := `source ` + filepath.Join(dest, "usr/share/bash-completion/completions/pcrsim") + `; COMP_WORDS=(pcrsim ev); COMP_CWORD=1; _pcrsim; echo "${COMPREPLY[@]}"`
	if out, err := exec.Command("bash", "-c", comp).Output(); err != nil || strings.TrimSpace(string(out)) != "eventlog" {
		t.Errorf("completion of 'pcrsim ev': %q %v", out, err)
	}
}
