package swtpmtest

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/vtpmboot/vtpmboot/internal/testenv"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

func TestKillEndsProcess(t *testing.T) {
	for _, v := range []pcrbank.Version{pcrbank.Version12, pcrbank.Version20} {
		in := Start(t, v)
		if got := in.Open().Version(); got != v {
			t.Errorf("started %v, opened %v", v, got)
		}
		in.Kill()
		if in.cmd.ProcessState == nil {
			t.Errorf("%v: swtpm still running after Kill", v)
		}
		in.Kill() // again: no-op
	}
}

// TestTCTI proves tpm2-tools 5.x reaches a StartTCP instance through the
// swtpm TCTI, and documents the default allocation of a fresh swtpm state.
func TestTCTI(t *testing.T) {
	testenv.NeedCommands(t, "tpm2_getcap")
	in := StartTCP(t, pcrbank.Version20)
	out, err := exec.Command("tpm2_getcap", "-T", in.TCTI(), "pcrs").CombinedOutput()
	if err != nil {
		t.Fatalf("tpm2_getcap -T %s: %v\n%s", in.TCTI(), err, out)
	}
	for _, bank := range []string{"sha1", "sha256", "sha384", "sha512"} {
		if !strings.Contains(string(out), bank+": [ 0, 1, 2,") {
			t.Errorf("fresh swtpm 2.0 has no %s bank allocated (see package doc):\n%s", bank, out)
		}
	}
}
