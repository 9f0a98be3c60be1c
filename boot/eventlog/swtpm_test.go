package eventlog

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/vtpmboot/vtpmboot/internal/swtpmtest"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// TestReplayIntoSwtpm writes the log a stub would print for a real TPM 1.2
// and 2.0 (format from FormatFor, banks from the TPM), parses it back and
// replays it into that TPM: the TPM's own PCR arithmetic must land on the
// contract's values computed here with crypto/sha*.
func TestReplayIntoSwtpm(t *testing.T) {
	boot := sampleBoots["two-initrds"]
	for _, v := range []pcrbank.Version{pcrbank.Version12, pcrbank.Version20} {
		t.Run(v.String(), func(t *testing.T) {
			tg := swtpmtest.Start(t, v).Open()
			banks, err := tg.Banks()
			if err != nil {
				t.Fatal(err)
			}
			f := FormatFor(tg.Version())
			if want := map[pcrbank.Version]Format{pcrbank.Version12: SHA1Log, pcrbank.Version20: CryptoAgile}[v]; f != want {
				t.Fatalf("FormatFor(%v) = %v, want %v", tg.Version(), f, want)
			}
			b, err := Marshal(f, banks, boot.plan(t, banks))
			if err != nil {
				t.Fatal(err)
			}
			l, err := Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Replay(tg); err != nil {
				t.Fatal(err)
			}
			for a, pcrs := range boot.expectPCRs(banks) {
				for pcr, want := range pcrs {
					got, err := tg.ReadPCR(pcr, a)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got, want) {
						t.Errorf("%v PCR %d = %x after replay, want %x", a, pcr, got, want)
					}
				}
			}
		})
	}
}

// TestFirmwareLogIntoSwtpm replays SeaBIOS's logs into fresh swtpm TPMs of
// the same version and checks the TPM's resulting PCRs with the
// independent replays: tpm2_eventlog for the TPM 2.0 log (every bank),
// go-eventlog for both.
func TestFirmwareLogIntoSwtpm(t *testing.T) {
	for _, tc := range []struct {
		v    pcrbank.Version
		file string
	}{
		{pcrbank.Version12, "seabios-tpm12.bin"},
		{pcrbank.Version20, "seabios-tpm20.bin"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			raw := firmwareLog(t, tc.file)
			l, err := Parse(raw)
			if err != nil {
				t.Fatal(err)
			}
			tg := swtpmtest.Start(t, tc.v).Open()
			banks, err := tg.Banks()
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Replay(tg); err != nil {
				t.Fatal(err)
			}
			tpmPCRs := map[pcrbank.Alg]map[int][]byte{}
			for _, a := range banks {
				tpmPCRs[a] = map[int][]byte{}
				for pcr := range 8 {
					if tpmPCRs[a][pcr], err = tg.ReadPCR(pcr, a); err != nil {
						t.Fatal(err)
					}
				}
			}
			goEventlogVerify(t, raw, only(tpmPCRs, goEventlogBanks))
			if tc.v != pcrbank.Version20 {
				return
			}
			theirs := tpm2EventlogPCRs(t, filepath.Join(testenv.RepoRoot(), "testdata", "eventlog", tc.file))
			for _, a := range banks {
				for pcr, v := range tpmPCRs[a] {
					if !bytes.Equal(v, theirs[a][pcr]) {
						t.Errorf("%v PCR %d: swtpm has %x after replay, tpm2_eventlog replays %x", a, pcr, v, theirs[a][pcr])
					}
				}
			}
		})
	}
}
