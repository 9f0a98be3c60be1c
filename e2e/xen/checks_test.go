package xen

import (
	"crypto/sha1"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/vtpmboot/vtpmboot/internal/target/report"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// recorder keeps what a check reports instead of failing the test, so
// that the checks themselves can be shown to fail.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Errorf(f string, a ...any) { r.errs = append(r.errs, fmt.Sprintf(f, a...)) }
func (r *recorder) Fatalf(f string, a ...any) { r.Errorf(f, a...); runtime.Goexit() }

func runCheck(t *testing.T, f func(tb testing.TB)) []string {
	r := &recorder{TB: t}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); f(r) }()
	wg.Wait()
	return r.errs
}

// The rebooting guest's checks catch issue 16's bug: a second boot
// measured on top of the first (vtpmback never reset the TPM) reads
// PCR 4 = SHA-1(boot 1's PCR 4 || SHA-1(kernel)), and likewise PCR 5.
func TestRebootChecksCatchNoReset(t *testing.T) {
	g := guest{name: "hvm-tpm12", typ: "hvm", tpm: "1.2", reboot: true}
	kernel, initrd := []byte("kernel bytes"), []byte("initrd bytes")
	want := expected(t, []string{"sha1"}, kernel, initrd, wantCmdline)
	h := func(parts ...[]byte) []byte { return sum(sha1.New, parts...) }
	boot1 := map[int][]byte{}
	boot2 := map[int][]byte{}
	for i := 0; i <= 9; i++ {
		boot1[i], boot2[i] = want["sha1"][i], want["sha1"][i]
	}
	boot2[4] = h(boot1[4], h(kernel))
	boot2[5] = h(h(boot1[5], h([]byte(wantCmdline))), h(initrd))
	notes := "xentarget: /dev/tpm0 present: true\nxentarget: /dev/tpmrm0 present: false\nxentarget: sysfs tpm_version_major: 1\n"
	var console strings.Builder
	for _, pcrs := range []map[int][]byte{boot1, boot2} {
		console.WriteString("vtpmboot: booting /boot/vmlinuz\n" + notes)
		r := &report.Report{Version: pcrbank.Version12, Cmdline: wantCmdline + "\n", PCRs: map[pcrbank.Alg]map[int][]byte{pcrbank.SHA1: pcrs}}
		console.WriteString(r.Format())
	}
	reps := splitReports(console.String())
	if len(reps) != 2 {
		t.Fatalf("splitReports: %d pieces, want 2", len(reps))
	}
	for n, c := range reps {
		errs := runCheck(t, func(tb testing.TB) {
			rep, err := report.Parse(c)
			checkTarget(tb, g, c, rep, err, want)
		})
		switch {
		case n == 0 && len(errs) != 0:
			t.Errorf("boot 1 (right values) failed the check: %q", errs)
		case n == 1 && (len(errs) != 2 || !strings.Contains(errs[0]+errs[1], "PCR 4") || !strings.Contains(errs[0]+errs[1], "PCR 5")):
			t.Errorf("boot 2 measured on top of boot 1: check said %q, want PCR 4 and PCR 5 wrong", errs)
		}
	}
}
