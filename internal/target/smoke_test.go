package target

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/vtpmboot/vtpmboot/images"
	"github.com/vtpmboot/vtpmboot/internal/qemutest"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// targetInitramfs builds an initramfs holding only targetinit as /init.
func targetInitramfs(t *testing.T) string {
	t.Helper()
	testenv.NeedCommands(t, "go")
	bin, err := images.GoBuild{Package: "./internal/target/targetinit", Dir: testenv.RepoRoot()}.Binary(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ir := &images.Initramfs{}
	ir.AddData("init", bin, 0o755)
	p := filepath.Join(t.TempDir(), "target.cpio.gz")
	if err := ir.WriteFile(p); err != nil {
		t.Fatal(err)
	}
	return p
}

// replaySHA1Log replays a TPM 1.2 (SHA-1 format) event log, independently
// of boot/eventlog: TCG_PCR_EVENT is pcr u32, type u32, digest[20],
// size u32, data (little-endian).
func replaySHA1Log(t *testing.T, log []byte) map[int][]byte {
	pcrs := map[int][]byte{}
	for off := 0; off < len(log); {
		if off+32 > len(log) {
			t.Fatalf("event log truncated at %d", off)
		}
		pcr := int(binary.LittleEndian.Uint32(log[off:]))
		digest := log[off+8 : off+28]
		size := int(binary.LittleEndian.Uint32(log[off+28:]))
		off += 32 + size
		if off > len(log) || pcr >= 24 {
			t.Fatalf("bad event (pcr %d, size %d)", pcr, size)
		}
		if pcr == 0 && size == 0 && allZero(digest) {
			continue
		}
		old, ok := pcrs[pcr]
		if !ok {
			old = make([]byte, 20)
		}
		h := sha1.New()
		h.Write(old)
		h.Write(digest)
		pcrs[pcr] = h.Sum(nil)
	}
	return pcrs
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// TestSmoke boots the Debian kernel with targetinit under TPM 1.2 and 2.0
// and checks the harness end to end: the report arrives intact, the
// command line is exactly what QEMU passed, PCRs and the firmware event
// log are there. Under 1.2 the SHA-1 log is replayed here and must give
// the PCRs the TPM reports.
func TestSmoke(t *testing.T) {
	testenv.NeedCommands(t, "qemu-system-x86_64", "swtpm")
	kernel := filepath.Join(testenv.RepoRoot(), ".cache", "kernel", "vmlinuz")
	testenv.NeedFile(t, kernel, "run scripts/fetch-kernel.sh")
	initrd := targetInitramfs(t)
	for _, v := range []pcrbank.Version{pcrbank.Version12, pcrbank.Version20} {
		t.Run(v.String(), func(t *testing.T) {
			t.Parallel()
			cmdline := "console=ttyS0 panic=-1 quiet loglevel=4 vtpmboot.smoke=" + map[pcrbank.Version]string{pcrbank.Version12: "12", pcrbank.Version20: "20"}[v]
			res, err := qemutest.Boot(context.Background(), qemutest.Options{
				Kernel: kernel, Initrd: initrd, Append: cmdline, TPM: v,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%v boot took %v, console %d bytes", v, res.Duration, len(res.Console))
			if res.ExitErr != nil {
				t.Fatalf("qemu: %v\n%s", res.ExitErr, res.Tail(3000))
			}
			r, err := qemutest.ParseTarget(res.Console)
			if err != nil {
				t.Fatalf("%v\n%s", err, res.Tail(3000))
			}
			if len(r.Errors) != 0 {
				t.Errorf("target reported errors: %q", r.Errors)
			}
			if r.Version != v {
				t.Errorf("target saw %v, booted with %v", r.Version, v)
			}
			// The kernel appends nothing but a newline to what QEMU passed.
			if r.Cmdline != cmdline+"\n" {
				t.Errorf("/proc/cmdline = %q, want %q", r.Cmdline, cmdline+"\n")
			}
			if len(r.EventLog) == 0 {
				t.Error("no firmware event log")
			}
			// The ACPI table and the used part of its log area, as the
			// target read them; VTPMBOOT_CAPTURE_ACPI=DIR saves them as
			// boot/acpilog's testdata (seabios-tpm12.table, ...).
			table, area := r.Extra["acpi-table"], r.Extra["acpi-area"]
			if table == "" || area == "" {
				t.Errorf("no ACPI TPM table or log area in the report (errors %q)", r.Errors)
			}
			// Linux found its log at the address the table gives: what it
			// shows is exactly the used part of that area.
			if area != string(r.EventLog) {
				t.Errorf("the ACPI log area's %d used bytes are not binary_bios_measurements (%d bytes)", len(area), len(r.EventLog))
			}
			if dir := os.Getenv("VTPMBOOT_CAPTURE_ACPI"); dir != "" {
				name := map[pcrbank.Version]string{pcrbank.Version12: "seabios-tpm12", pcrbank.Version20: "seabios-tpm20"}[v]
				for ext, b := range map[string]string{".table": table, ".area": area} {
					if err := os.WriteFile(filepath.Join(dir, name+ext), []byte(b), 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			var banks []pcrbank.Alg
			for a, pcrs := range r.PCRs {
				banks = append(banks, a)
				if len(pcrs) != 10 {
					t.Errorf("%v bank has %d PCRs, want 0-9", a, len(pcrs))
				}
			}
			pcrbank.SortAlgs(banks)
			t.Logf("%v banks %v, event log %d bytes", v, banks, len(r.EventLog))
			if v == pcrbank.Version12 {
				want := replaySHA1Log(t, r.EventLog)
				for i := 0; i <= 9; i++ {
					exp, ok := want[i]
					if !ok {
						exp = make([]byte, 20)
					}
					if got := r.PCRs[pcrbank.SHA1][i]; string(got) != string(exp) {
						t.Errorf("PCR %d = %x, event log replay gives %x", i, got, exp)
					}
				}
			} else if r.PCRs[pcrbank.SHA256] == nil {
				t.Error("TPM 2.0 without a sha256 bank")
			} else if z := sha256.Size; len(r.PCRs[pcrbank.SHA256][4]) != z || allZero(r.PCRs[pcrbank.SHA256][4]) {
				// SeaBIOS measures into PCR 4 before Linux runs.
				t.Errorf("sha256 PCR 4 = %x, want SeaBIOS's measurements", r.PCRs[pcrbank.SHA256][4])
			}
			if dir := os.Getenv("VTPMBOOT_E2E_CONSOLES"); dir != "" {
				os.WriteFile(filepath.Join(dir, "smoke-"+map[pcrbank.Version]string{pcrbank.Version12: "tpm12", pcrbank.Version20: "tpm20"}[v]+".console"), []byte(res.Console), 0o644)
			}
		})
	}
}
