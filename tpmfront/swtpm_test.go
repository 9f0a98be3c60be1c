package tpmfront_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	gotpm12 "github.com/google/go-tpm/tpm"
	"github.com/vtpmboot/vtpmboot/boot/measure"
	"github.com/vtpmboot/vtpmboot/internal/contract"
	"github.com/vtpmboot/vtpmboot/internal/swtpmtest"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
	"github.com/vtpmboot/vtpmboot/pcrbank"
	"github.com/vtpmboot/vtpmboot/tpmfront"
)

// h hashes with the contract oracle's map from bank to hash (straight
// from the standard library), so expected values do not go through
// pcrbank.Alg.
func h(t *testing.T, a pcrbank.Alg, parts ...[]byte) []byte {
	return contract.Digest(contract.Hash(a.String()), parts...)
}

type bootCase struct {
	name    string
	kernel  []byte
	initrds [][]byte
	cmdline string
}

func bootCases(r *rand.Rand) []bootCase {
	blob := func(min, max int) []byte {
		b := make([]byte, min+r.IntN(max-min))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	return []bootCase{
		{"no-initrd", blob(1, 600<<10), nil, "root=/dev/xvda1 ro console=hvc0"},
		{"two-initrds", blob(100<<10, 2<<20), [][]byte{blob(1, 300<<10), blob(1, 300<<10)}, "root=UUID=1234 quiet"},
		{"quotes-utf8", blob(1, 100<<10), [][]byte{blob(0, 10)},
			`root=LABEL="my root" init="/sbin/init --x" café=ünïcødé 日本語 'single' \"esc\"`},
	}
}

// expected is the contract oracle's PCRs 4 and 5 for bank a.
func expected(t *testing.T, a pcrbank.Alg, c bootCase) (pcr4, pcr5 []byte) {
	b := contract.Boot{Kernel: c.kernel, Initrds: c.initrds, Cmdline: c.cmdline}
	hh := contract.Hash(a.String())
	return b.PCR4(hh, nil), b.PCR5(hh, nil)
}

// measureInto runs the real plan on tg and, separately, on a Soft bank with
// the same banks, and returns the Soft results for comparison.
func measureInto(t *testing.T, tg pcrbank.Target, c bootCase) *pcrbank.Soft {
	t.Helper()
	banks, err := tg.Banks()
	if err != nil {
		t.Fatal(err)
	}
	in := measure.Inputs{Kernel: measure.BytesSource("vmlinuz", c.kernel), Cmdline: c.cmdline}
	for i, b := range c.initrds {
		in.Initrds = append(in.Initrds, measure.BytesSource(fmt.Sprintf("initrd%d", i), b))
	}
	plan, err := measure.Plan(banks, in, nil)
	if err != nil {
		t.Fatal(err)
	}
	steps, err := measure.Apply(tg, plan)
	if err != nil {
		t.Fatalf("apply on %v: %v", tg.Version(), err)
	}
	if len(steps) != 3 {
		t.Fatalf("applied %d steps, want 3", len(steps))
	}
	soft, err := pcrbank.NewSoft(banks)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := measure.Apply(soft, plan); err != nil {
		t.Fatal(err)
	}
	return soft
}

func checkPCR(t *testing.T, what string, a pcrbank.Alg, pcr int, got, want []byte, soft *pcrbank.Soft) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Errorf("%s %v PCR %d = %x, want %x", what, a, pcr, got, want)
	}
	sv, err := soft.ReadPCR(pcr, a)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sv, want) {
		t.Errorf("Soft %v PCR %d = %x, want %x", a, pcr, sv, want)
	}
}

func seed(t *testing.T) *rand.Rand {
	s := uint64(time.Now().UnixNano())
	if v := os.Getenv("VTPMBOOT_SEED"); v != "" {
		s, _ = strconv.ParseUint(v, 10, 64)
	}
	t.Logf("random inputs from VTPMBOOT_SEED=%d", s)
	return rand.New(rand.NewPCG(s, 0))
}

// TestMeasureTPM20 applies the plan to swtpm 2.0 and reads the PCRs back
// with tpm2-tools.
func TestMeasureTPM20(t *testing.T) {
	testenv.NeedCommands(t, "swtpm", "tpm2_pcrread")
	for _, c := range bootCases(seed(t)) {
		t.Run(c.name, func(t *testing.T) {
			in := swtpmtest.StartTCP(t, pcrbank.Version20)
			tg := in.Open()
			banks, _ := tg.Banks()
			soft := measureInto(t, tg, c)
			// swtpm serves one client at a time: let tpm2-tools in.
			tg.Close()
			got := pcrread(t, in, banks)
			for _, a := range banks {
				w4, w5 := expected(t, a, c)
				checkPCR(t, "tpm2_pcrread", a, 4, got[a][4], w4, soft)
				checkPCR(t, "tpm2_pcrread", a, 5, got[a][5], w5, soft)
			}
		})
	}
}

// pcrread runs tpm2_pcrread for PCRs 4 and 5 of banks and parses its YAML.
func pcrread(t *testing.T, in *swtpmtest.Instance, banks []pcrbank.Alg) map[pcrbank.Alg]map[int][]byte {
	t.Helper()
	var sel []string
	for _, a := range banks {
		sel = append(sel, a.String()+":4,5")
	}
	out, err := exec.Command("tpm2_pcrread", "-T", in.TCTI(), strings.Join(sel, "+")).CombinedOutput()
	if err != nil {
		t.Fatalf("tpm2_pcrread: %v\n%s", err, out)
	}
	res := map[pcrbank.Alg]map[int][]byte{}
	var cur pcrbank.Alg
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.TrimSpace(line)
		if a, err := pcrbank.ParseAlg(strings.TrimSuffix(f, ":")); err == nil && strings.HasSuffix(f, ":") {
			cur = a
			res[a] = map[int][]byte{}
			continue
		}
		k, v, ok := strings.Cut(f, ":")
		if !ok || cur == 0 {
			continue
		}
		n, err1 := strconv.Atoi(strings.TrimSpace(k))
		b, err2 := hex.DecodeString(strings.TrimPrefix(strings.TrimSpace(v), "0x"))
		if err1 != nil || err2 != nil {
			t.Fatalf("tpm2_pcrread line %q not understood", line)
		}
		res[cur][n] = b
	}
	for _, a := range banks {
		if len(res[a]) != 2 {
			t.Fatalf("tpm2_pcrread gave %v PCRs %v, want 4 and 5:\n%s", a, res[a], out)
		}
	}
	return res
}

// TestMeasureTPM12 applies the plan to swtpm 1.2 and reads the PCRs back
// with go-tpm's TPM 1.2 package, a separate implementation of PcrRead.
func TestMeasureTPM12(t *testing.T) {
	for _, c := range bootCases(seed(t)) {
		t.Run(c.name, func(t *testing.T) {
			in := swtpmtest.Start(t, pcrbank.Version12)
			tg := in.Open()
			if v := tg.Version(); v != pcrbank.Version12 {
				t.Fatalf("version %v, want TPM 1.2", v)
			}
			soft := measureInto(t, tg, c)
			tg.Close()
			rw, err := gotpm12.OpenTPM(in.ServerSock)
			if err != nil {
				t.Fatal(err)
			}
			defer rw.Close()
			w4, w5 := expected(t, pcrbank.SHA1, c)
			for pcr, want := range map[int][]byte{4: w4, 5: w5} {
				got, err := gotpm12.ReadPCR(rw, uint32(pcr))
				if err != nil {
					t.Fatal(err)
				}
				checkPCR(t, "go-tpm ReadPCR", pcrbank.SHA1, pcr, got, want, soft)
			}
		})
	}
}

// TestBanksTPM20 checks Banks against tpm2_getcap's view of the allocation.
func TestBanksTPM20(t *testing.T) {
	testenv.NeedCommands(t, "swtpm", "tpm2_getcap")
	in := swtpmtest.StartTCP(t, pcrbank.Version20)
	out, err := exec.Command("tpm2_getcap", "-T", in.TCTI(), "pcrs").CombinedOutput()
	if err != nil {
		t.Fatalf("tpm2_getcap: %v\n%s", err, out)
	}
	var want []string
	for _, line := range strings.Split(string(out), "\n") {
		// "  - sha256: [ 0, 1, ... ]"; an empty selection is "[  ]".
		name, sel, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(line), "- "), ":")
		if ok && strings.Trim(sel, " []") != "" {
			want = append(want, name)
		}
	}
	tg := in.Open()
	banks, err := tg.Banks()
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(banks); got != fmt.Sprint(want) {
		t.Errorf("Banks() = %s, tpm2_getcap says %v", got, want)
	}
}

func allDigests(t *testing.T, tg pcrbank.Target, b []byte) pcrbank.Digests {
	banks, err := tg.Banks()
	if err != nil {
		t.Fatal(err)
	}
	d := pcrbank.Digests{}
	for _, a := range banks {
		d[a] = h(t, a, b)
	}
	return d
}

var versions = []pcrbank.Version{pcrbank.Version12, pcrbank.Version20}

var extendName = map[pcrbank.Version]string{
	pcrbank.Version12: "TPM_ORD_Extend", pcrbank.Version20: "TPM2_PCR_Extend",
}

func TestKilledBeforeExtend(t *testing.T) {
	for _, v := range versions {
		t.Run(v.String(), func(t *testing.T) {
			in := swtpmtest.Start(t, v)
			tg := in.Open()
			d := allDigests(t, tg, []byte("kernel"))
			in.Kill()
			err := tg.Extend(4, d)
			if err == nil || !strings.Contains(err.Error(), extendName[v]) {
				t.Fatalf("Extend on a dead TPM: %v, want an error naming %s", err, extendName[v])
			}
			t.Log(err)
			var te *tpmfront.TPMError
			if errors.As(err, &te) {
				t.Errorf("a dead TPM is not a TPM response code: %v", err)
			}
		})
	}
}

// killAfter is a Target that kills its swtpm after n extends, so the plan
// meets a TPM that dies between two measurements.
type killAfter struct {
	pcrbank.Target
	in *swtpmtest.Instance
	n  int
}

func (k *killAfter) Extend(pcr int, d pcrbank.Digests) error {
	err := k.Target.Extend(pcr, d)
	if k.n--; k.n == 0 {
		k.in.Kill()
	}
	return err
}

func TestKilledMidway(t *testing.T) {
	for _, v := range versions {
		t.Run(v.String(), func(t *testing.T) {
			in := swtpmtest.Start(t, v)
			tg := &killAfter{Target: in.Open(), in: in, n: 1}
			banks, _ := tg.Banks()
			plan, err := measure.Plan(banks, measure.Inputs{Kernel: measure.BytesSource("k", []byte("kernel")), Cmdline: "x"}, nil)
			if err != nil {
				t.Fatal(err)
			}
			steps, err := measure.Apply(tg, plan)
			if err == nil {
				t.Fatal("Apply succeeded on a TPM that died after the first extend")
			}
			t.Log(err)
			if len(steps) != 0 && len(steps) != 1 {
				t.Errorf("Apply reported %d steps done", len(steps))
			}
			// The reads after the kernel extend already hit the dead TPM.
			if !strings.Contains(err.Error(), "TPM") {
				t.Errorf("error does not name the TPM command: %v", err)
			}
		})
	}
}

// TestFrozenTimesOut: a TPM that stops answering (swtpm stopped with
// SIGSTOP, sockets still open) gives a timeout error, not a hang.
func TestFrozenTimesOut(t *testing.T) {
	for _, v := range versions {
		t.Run(v.String(), func(t *testing.T) {
			in := swtpmtest.Start(t, v)
			tg, err := tpmfront.Dial("unix", in.ServerSock, 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer tg.Close()
			d := allDigests(t, tg, []byte("kernel"))
			in.Freeze()
			err = tg.Extend(4, d)
			if !errors.Is(err, os.ErrDeadlineExceeded) || !strings.Contains(err.Error(), extendName[v]) {
				t.Fatalf("Extend on a frozen TPM: %v, want a deadline error naming %s", err, extendName[v])
			}
		})
	}
}

func TestBankMismatch(t *testing.T) {
	for _, v := range versions {
		t.Run(v.String(), func(t *testing.T) {
			in := swtpmtest.Start(t, v)
			tg := in.Open()
			good := allDigests(t, tg, []byte("x"))
			short := good.Clone()
			short[pcrbank.SHA1] = short[pcrbank.SHA1][:19]
			extra := good.Clone()
			extra[pcrbank.SHA256] = make([]byte, 32)
			extra[pcrbank.SHA512] = make([]byte, 64)
			extra[pcrbank.SHA384] = make([]byte, 48)
			extra[pcrbank.SHA1] = make([]byte, 20)
			if v == pcrbank.Version20 {
				delete(extra, pcrbank.SHA512) // still "wrong": one bank missing
			}
			for name, d := range map[string]pcrbank.Digests{"short": short, "wrong-banks": extra, "none": {}} {
				if err := tg.Extend(4, d); !errors.Is(err, pcrbank.ErrBankMismatch) {
					t.Errorf("%s: Extend = %v, want ErrBankMismatch", name, err)
				}
			}
			// Nothing reached the TPM.
			got, err := tg.ReadPCR(4, pcrbank.SHA1)
			if err != nil || !bytes.Equal(got, make([]byte, 20)) {
				t.Errorf("PCR 4 after refused extends = %x, %v; want zeros", got, err)
			}
		})
	}
}

func TestBadPCRIndex(t *testing.T) {
	wantCode := map[pcrbank.Version]uint32{
		pcrbank.Version12: 0x2,   // TPM_BADINDEX
		pcrbank.Version20: 0x184, // TPM_RC_VALUE, handle 1
	}
	wantText := map[pcrbank.Version]string{
		pcrbank.Version12: "TPM 1.2 error 0x2 (TPM_BADINDEX) in TPM_ORD_Extend",
		pcrbank.Version20: "TPM 2.0 error 0x00000184 (TPM_RC_VALUE",
	}
	for _, v := range versions {
		t.Run(v.String(), func(t *testing.T) {
			in := swtpmtest.Start(t, v)
			tg := in.Open()
			d := allDigests(t, tg, []byte("x"))
			err := tg.Extend(30, d)
			var te *tpmfront.TPMError
			if !errors.As(err, &te) || te.Code != wantCode[v] || te.Version != v || te.Command != extendName[v] {
				t.Fatalf("Extend(30) = %v, want TPMError code 0x%x", err, wantCode[v])
			}
			if !strings.Contains(err.Error(), wantText[v]) {
				t.Errorf("error %q does not contain %q", err, wantText[v])
			}
			if _, err := tg.ReadPCR(30, pcrbank.SHA1); err == nil {
				t.Error("ReadPCR(30) succeeded")
			}
			for _, pcr := range []int{-1, 256, 1 << 40} {
				if err := tg.Extend(pcr, d); err == nil {
					t.Errorf("Extend(%d) succeeded", pcr)
				}
			}
			// The connection survives a refused command.
			if err := tg.Extend(4, d); err != nil {
				t.Errorf("Extend(4) after a refusal: %v", err)
			}
		})
	}
}

func TestClosed(t *testing.T) {
	for _, v := range versions {
		t.Run(v.String(), func(t *testing.T) {
			in := swtpmtest.Start(t, v)
			tg := in.Open()
			d := allDigests(t, tg, []byte("x"))
			if err := tg.Close(); err != nil {
				t.Fatal(err)
			}
			if err := tg.Extend(4, d); !errors.Is(err, tpmfront.ErrClosed) {
				t.Errorf("Extend after Close = %v, want ErrClosed", err)
			}
			if _, err := tg.ReadPCR(4, pcrbank.SHA1); !errors.Is(err, tpmfront.ErrClosed) {
				t.Errorf("ReadPCR after Close = %v, want ErrClosed", err)
			}
			if err := tg.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
		})
	}
}

// trickle hands the TPM's responses over one byte per Read, the worst a
// socket may do.
type trickle struct{ net.Conn }

func (c trickle) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return c.Conn.Read(p)
}

func TestPartialReads(t *testing.T) {
	c := bootCases(seed(t))[1]
	for _, v := range versions {
		t.Run(v.String(), func(t *testing.T) {
			in := swtpmtest.Start(t, v)
			nc, err := net.Dial("unix", in.ServerSock)
			if err != nil {
				t.Fatal(err)
			}
			tg, err := tpmfront.OpenReadWriter(trickle{nc})
			if err != nil {
				t.Fatal(err)
			}
			defer tg.Close()
			soft := measureInto(t, tg, c)
			banks, _ := tg.Banks()
			for _, a := range banks {
				w4, w5 := expected(t, a, c)
				g4, err := tg.ReadPCR(4, a)
				if err != nil {
					t.Fatal(err)
				}
				g5, err := tg.ReadPCR(5, a)
				if err != nil {
					t.Fatal(err)
				}
				checkPCR(t, "ReadPCR", a, 4, g4, w4, soft)
				checkPCR(t, "ReadPCR", a, 5, g5, w5, soft)
			}
		})
	}
}

func TestOpenSpecs(t *testing.T) {
	in := swtpmtest.StartTCP(t, pcrbank.Version12)
	tg, err := tpmfront.Open(in.Spec())
	if err != nil {
		t.Fatal(err)
	}
	if tg.Version() != pcrbank.Version12 {
		t.Errorf("TCP swtpm 1.2 opened as %v", tg.Version())
	}
	tg.Close()
	in2 := swtpmtest.Start(t, pcrbank.Version20)
	// A socket path given as a device is dialled.
	tg, err = tpmfront.OpenDevice(in2.ServerSock)
	if err != nil {
		t.Fatal(err)
	}
	if tg.Version() != pcrbank.Version20 {
		t.Errorf("unix swtpm 2.0 opened as %v", tg.Version())
	}
	tg.Close()
	for _, bad := range []string{"swtpm:", "swtpm:foo:bar", "swtpm:unix:" + t.TempDir() + "/nope", "/nonexistent/tpm0"} {
		if _, err := tpmfront.Open(bad); err == nil {
			t.Errorf("Open(%q) succeeded", bad)
		} else {
			t.Logf("Open(%q): %v", bad, err)
		}
	}
}

// TestBanksFollowAllocation deallocates all banks but sha256 with
// tpm2_pcrallocate (the usual swtpm_setup layout), power-cycles the TPM,
// and measures: only sha256 is extended, and tpm2_pcrread agrees.
func TestBanksFollowAllocation(t *testing.T) {
	testenv.NeedCommands(t, "swtpm", "tpm2_pcrallocate", "tpm2_pcrread")
	in := swtpmtest.StartTCP(t, pcrbank.Version20)
	out, err := exec.Command("tpm2_pcrallocate", "-T", in.TCTI(), "sha1:none+sha256:all+sha384:none+sha512:none").CombinedOutput()
	if err != nil {
		t.Fatalf("tpm2_pcrallocate: %v\n%s", err, out)
	}
	in.Restart()
	tg := in.Open()
	banks, err := tg.Banks()
	if err != nil || fmt.Sprint(banks) != "[sha256]" {
		t.Fatalf("Banks() after allocating only sha256 = %v, %v", banks, err)
	}
	if _, err := tg.ReadPCR(4, pcrbank.SHA1); err == nil {
		t.Error("ReadPCR of the deallocated sha1 bank succeeded")
	}
	c := bootCases(seed(t))[1]
	soft := measureInto(t, tg, c)
	tg.Close()
	got := pcrread(t, in, banks)
	w4, w5 := expected(t, pcrbank.SHA256, c)
	checkPCR(t, "tpm2_pcrread", pcrbank.SHA256, 4, got[pcrbank.SHA256][4], w4, soft)
	checkPCR(t, "tpm2_pcrread", pcrbank.SHA256, 5, got[pcrbank.SHA256][5], w5, soft)
}

// BenchmarkExtend measures one Extend of every active bank plus a read of
// one bank, the per-measurement cost Apply pays, over swtpm's Unix socket.
func BenchmarkExtend(b *testing.B) {
	for _, v := range versions {
		b.Run(v.String(), func(b *testing.B) {
			in := swtpmtest.Start(b, v)
			tg := in.Open()
			banks, _ := tg.Banks()
			d := pcrbank.Digests{}
			for _, a := range banks {
				d[a] = make([]byte, a.Size())
			}
			for b.Loop() {
				if err := tg.Extend(4, d); err != nil {
					b.Fatal(err)
				}
				if _, err := tg.ReadPCR(4, banks[0]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
