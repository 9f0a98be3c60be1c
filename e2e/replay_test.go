package e2e

import (
	"bytes"
	"crypto/sha1"
	"os"
	"path/filepath"
	"testing"

	"github.com/vtpmboot/vtpmboot/internal/target/report"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// TestReplayFirmwareCaptured checks the independent replay on consoles
// captured from real QEMU boots (testdata/e2e, TPM 1.2 and 2.0): replaying
// SeaBIOS's log must give exactly the PCRs the booted kernel read, for
// every bank and PCR 0-9. Without this, a replay bug would show up in the
// boot tests as a stub bug.
func TestReplayFirmwareCaptured(t *testing.T) {
	testenv.NeedCommands(t, "tpm2_eventlog")
	for _, name := range []string{"smoke-tpm12", "smoke-tpm20"} {
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "testdata", "e2e", name+".console"))
			if err != nil {
				t.Fatal(err)
			}
			r, err := report.Parse(string(b))
			if err != nil {
				t.Fatal(err)
			}
			rp, err := ReplayFirmware(r.EventLog)
			if err != nil {
				t.Fatal(err)
			}
			if len(rp.PCRs) != len(r.PCRs) {
				t.Errorf("replay has banks %v, the TPM %d banks", rp.PCRs.Banks(), len(r.PCRs))
			}
			for a, pcrs := range r.PCRs {
				t.Logf("%v by %s", a, rp.By[a])
				for i, want := range pcrs {
					if got := rp.Value(a, i); !bytes.Equal(got, want) {
						t.Errorf("%v PCR %d: replay %x, TPM %x", a, i, got, want)
					}
				}
			}
			// Both tools must have checked the banks go-eventlog knows.
			if a := pcrbank.SHA1; rp.By[a] != "go-eventlog+tpm2_eventlog" {
				t.Errorf("sha1 replayed by %q only", rp.By[a])
			}
			// A corrupted digest must change the replay, or the comparison
			// above proves nothing: flip a bit of the last separator's
			// SHA-1 digest (PCR 7 in both logs).
			sep := sha1.Sum([]byte{0xff, 0xff, 0xff, 0xff})
			bad := bytes.Clone(r.EventLog)
			at := bytes.LastIndex(bad, sep[:])
			if at < 0 {
				t.Fatal("no separator digest in the log")
			}
			bad[at] ^= 1
			rp2, err := ReplayFirmware(bad)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(rp2.Value(pcrbank.SHA1, 7), rp.Value(pcrbank.SHA1, 7)) {
				t.Error("a changed event digest did not change the replayed PCR 7")
			}
		})
	}
}

func TestParseTPM2EventlogPCRs(t *testing.T) {
	y := "events:\n- x: 1\npcrs:\n  sha1:\n    4  : 0x" + string(bytes.Repeat([]byte("ab"), 20)) + "\n  sm3_256:\n    0  : 0x00\n"
	p, err := parseTPM2EventlogPCRs([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	if v := p.Get(pcrbank.SHA1, 4); len(v) != 20 || v[0] != 0xab {
		t.Errorf("sha1 PCR 4 = %x", v)
	}
	if _, err := parseTPM2EventlogPCRs([]byte("events:\n")); err == nil {
		t.Error("no pcrs section: no error")
	}
}
