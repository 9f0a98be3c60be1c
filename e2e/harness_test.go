package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vtpmboot/vtpmboot/internal/contract"
	"github.com/vtpmboot/vtpmboot/internal/guestdisk"
	"github.com/vtpmboot/vtpmboot/internal/qemutest"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// The parts are built once for the whole package and removed by TestMain.
var (
	partsOnce sync.Once
	partsDir  string
	parts     *Parts
	partsErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if partsDir != "" {
		os.RemoveAll(partsDir)
	}
	os.Exit(code)
}

// needParts skips under -short, demands every real tool, and builds the
// stub, target initrds and pcrsim once.
func needParts(t *testing.T) *Parts {
	t.Helper()
	if testing.Short() {
		t.Skip("boots QEMU; skipped with -short")
	}
	testenv.NeedCommands(t, "go", "qemu-system-x86_64", "swtpm", "tpm2_eventlog",
		"mkfs.ext4", "mkfs.vfat", "mcopy", "sfdisk", "debugfs", "dumpe2fs")
	root := testenv.RepoRoot()
	testenv.NeedFile(t, filepath.Join(KernelDir(root), "vmlinuz"), "run scripts/fetch-kernel.sh")
	partsOnce.Do(func() {
		start := time.Now()
		partsDir, partsErr = os.MkdirTemp("", "vtpmboot-e2e-")
		if partsErr == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
			defer cancel()
			parts, partsErr = Build(ctx, root, partsDir, nil)
		}
		t.Logf("built the stub, target initrds and pcrsim in %v", time.Since(start).Round(time.Millisecond))
	})
	if partsErr != nil {
		t.Fatalf("building the parts: %v", partsErr)
	}
	return parts
}

// boot runs one VM in a slot. The console is kept in
// $VTPMBOOT_E2E_CONSOLES/<test>.console when that is set.
func boot(t *testing.T, o qemutest.Options) *qemutest.Result {
	t.Helper()
	// qemutest.Boot holds a machine boot slot (qemutest.LockMachine), the
	// one throttle every emulated boot of every test process goes through.
	res, err := qemutest.Boot(context.Background(), o)
	if dir := os.Getenv("VTPMBOOT_E2E_CONSOLES"); dir != "" && res != nil {
		name := strings.ReplaceAll(t.Name(), "/", "_") + ".console"
		if werr := os.WriteFile(filepath.Join(dir, name), []byte(res.Console), 0o644); werr != nil {
			t.Log(werr)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("QEMU ran %v (TPM %v)", res.Duration.Round(time.Millisecond), o.TPM)
	return res
}

// buildDisk writes the guest disk and returns its path and SHA-256.
func buildDisk(t *testing.T, d guestdisk.Disk) (string, [32]byte) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	if err := guestdisk.Build(d, p); err != nil {
		t.Fatal(err)
	}
	return p, fileSum(t, p)
}

func fileSum(t *testing.T, p string) [32]byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s
}

// checkDiskUnchanged is check (e): nothing the stub did wrote the image.
func checkDiskUnchanged(t *testing.T, p string, before [32]byte) {
	t.Helper()
	if after := fileSum(t, p); after != before {
		t.Errorf("guest disk %s changed during the boot: sha256 %x, was %x", p, after, before)
	}
}

// pcrsimPredict runs the pcrsim binary on the disk image, as an operator
// would, and returns its "banks" (final PCR 4 and 5 per bank).
func pcrsimPredict(t *testing.T, pcrsim, disk string, banks []pcrbank.Alg, init func(pcrbank.Alg, int) []byte) PCRs {
	t.Helper()
	var names []string
	args := []string{"predict", "--disk", disk, "--format", "json"}
	for _, a := range banks {
		names = append(names, a.String())
		for _, i := range []int{4, 5} {
			args = append(args, "--pcr-init", fmt.Sprintf("%d:%v:%x", i, a, init(a, i)))
		}
	}
	args = append(args, "--bank", strings.Join(names, ","))
	var stderr bytes.Buffer
	cmd := exec.Command(pcrsim, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("pcrsim %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	var doc struct {
		Banks map[string]map[string]string `json:"banks"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("pcrsim output: %v\n%s", err, out)
	}
	got := PCRs{}
	for name, pcrs := range doc.Banks {
		a, err := pcrbank.ParseAlg(name)
		if err != nil {
			t.Fatalf("pcrsim bank %q: %v", name, err)
		}
		for idx, hx := range pcrs {
			i, err := strconv.Atoi(idx)
			if err != nil {
				t.Fatalf("pcrsim PCR %q: %v", idx, err)
			}
			v, err := hex.DecodeString(hx)
			if err != nil || len(v) != a.Size() {
				t.Fatalf("pcrsim %v PCR %d = %q: %v", a, i, hx, err)
			}
			got.set(a, i, v)
		}
	}
	return got
}

// expectPCRs is the contract oracle's value (internal/contract, crypto/sha*
// only) for the files the test put on the disk and the command line it
// wrote by hand.
func expectPCRs(t *testing.T, a pcrbank.Alg, init4, init5 []byte, kernel string, initrds []string, cmdline string) (pcr4, pcr5 []byte) {
	t.Helper()
	read := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	b := contract.Boot{Kernel: read(kernel), Cmdline: cmdline}
	for _, p := range initrds {
		b.Initrds = append(b.Initrds, read(p))
	}
	h := contract.Hash(a.String())
	return b.PCR4(h, init4), b.PCR5(h, init5)
}

// neverRan checks that the stub stopped the boot: exactly one FATAL line
// containing every want, the power-off, and no sign of a second kernel.
func neverRan(t *testing.T, res *qemutest.Result, want ...string) string {
	t.Helper()
	fatals := FatalLines(res.Console)
	if len(fatals) != 1 {
		t.Fatalf("want exactly one FATAL line, got %d: %q\n%s", len(fatals), fatals, res.Tail(4000))
	}
	for _, w := range want {
		if !strings.Contains(fatals[0], w) {
			t.Errorf("FATAL line %q lacks %q", fatals[0], w)
		}
	}
	if res.ExitErr != nil {
		t.Errorf("QEMU exit %v: the stub should have powered off", res.ExitErr)
	}
	stub := strings.Join(StubLines(res.Console), "\n")
	if !strings.Contains(stub, "vtpmboot: powering off") {
		t.Errorf("no power-off line")
	}
	if strings.Contains(stub, "vtpmboot: booting ") || strings.Contains(res.Console, "==== VTPMBOOT TARGET REPORT") {
		t.Errorf("a target ran after the FATAL line:\n%s", res.Tail(3000))
	}
	t.Logf("%s", fatals[0])
	return fatals[0]
}
