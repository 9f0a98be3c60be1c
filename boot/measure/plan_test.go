package measure

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand"
	"strings"
	"testing"

	"github.com/vtpmboot/vtpmboot/internal/contract"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// The expected values here are computed with crypto/sha1 and crypto/sha256
// directly from the contract in shared/design-notes.md, not with any code
// of this package.
func TestPlanMatchesContract(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	kernel := make([]byte, 3<<20+17) // not a multiple of the chunk size
	rng.Read(kernel)
	i1 := make([]byte, 1<<20)
	rng.Read(i1)
	i2 := []byte("second initrd")
	cmdline := `root=/dev/xvda1 ro quiet msg="héllo wörld" 'x'`

	for _, tc := range []struct {
		name    string
		initrds [][]byte
	}{
		{"no initrd", nil},
		{"one initrd", [][]byte{i1}},
		{"two initrds", [][]byte{i1, i2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := Inputs{Kernel: BytesSource("/boot/vmlinuz", kernel), Cmdline: cmdline}
			for i, b := range tc.initrds {
				in.Initrds = append(in.Initrds, BytesSource("/boot/initrd"+string(rune('0'+i)), b))
			}
			for _, chunk := range []int{0, 4096, 1000003} {
				ms, err := Plan(pcrbank.DefaultAlgs, in, StreamHasher{ChunkSize: chunk})
				if err != nil {
					t.Fatal(err)
				}
				soft, _ := pcrbank.NewSoft(pcrbank.DefaultAlgs)
				if _, err := Apply(soft, ms); err != nil {
					t.Fatal(err)
				}
				b := contract.Boot{Kernel: kernel, Initrds: tc.initrds, Cmdline: cmdline}
				want1 := [2][]byte{b.PCR4(crypto.SHA1, nil), b.PCR5(crypto.SHA1, nil)}
				want256 := [2][]byte{b.PCR4(crypto.SHA256, nil), b.PCR5(crypto.SHA256, nil)}
				for pcr, w := range map[int][]byte{4: want1[0], 5: want1[1]} {
					got, _ := soft.ReadPCR(pcr, pcrbank.SHA1)
					if !bytes.Equal(got, w) {
						t.Errorf("chunk %d: sha1 PCR %d = %x, want %x", chunk, pcr, got, w)
					}
				}
				for pcr, w := range map[int][]byte{4: want256[0], 5: want256[1]} {
					got, _ := soft.ReadPCR(pcr, pcrbank.SHA256)
					if !bytes.Equal(got, w) {
						t.Errorf("chunk %d: sha256 PCR %d = %x, want %x", chunk, pcr, got, w)
					}
				}
				if ms[0].Kind != KindKernel || ms[1].Kind != KindCmdline || ms[2].Kind != KindInitrd {
					t.Errorf("order = %s %s %s", ms[0].Kind, ms[1].Kind, ms[2].Kind)
				}
			}
		})
	}
}

type failingSource struct{ after int }

func (f failingSource) Name() string { return "/boot/broken" }
func (f failingSource) Open() (io.ReadCloser, error) {
	return io.NopCloser(io.MultiReader(bytes.NewReader(make([]byte, f.after)), errReader{})), nil
}

type errReader struct{}

var errDisk = errors.New("I/O error")

func (errReader) Read([]byte) (int, error) { return 0, errDisk }

func TestPlanReadErrorNamesFile(t *testing.T) {
	for _, algs := range [][]pcrbank.Alg{{pcrbank.SHA1}, pcrbank.DefaultAlgs} {
		_, err := Plan(algs, Inputs{Kernel: failingSource{after: 5 << 20}}, nil)
		if !errors.Is(err, errDisk) {
			t.Fatalf("err = %v, want the read error", err)
		}
		if !bytes.Contains([]byte(err.Error()), []byte("/boot/broken")) {
			t.Errorf("error %q does not name the file", err)
		}
	}
}

func TestApplyRefusesPartialBanks(t *testing.T) {
	soft, _ := pcrbank.NewSoft([]pcrbank.Alg{pcrbank.SHA1, pcrbank.SHA256})
	ms, err := Plan([]pcrbank.Alg{pcrbank.SHA256}, Inputs{Kernel: BytesSource("k", []byte("k"))}, nil)
	if err != nil {
		t.Fatal(err)
	}
	steps, err := Apply(soft, ms)
	if !errors.Is(err, pcrbank.ErrBankMismatch) || len(steps) != 0 {
		t.Fatalf("Apply with a missing bank: steps %d, err %v", len(steps), err)
	}
	got, _ := soft.ReadPCR(4, pcrbank.SHA256)
	if !bytes.Equal(got, make([]byte, 32)) {
		t.Errorf("PCR 4 changed although the plan was refused")
	}
}

// The initrd image rule, written out by hand: each file but the last is
// followed by zeros up to a multiple of 4, as GRUB2's grub_initrd_load
// lays out several initrds.
func TestInitrdPaddingBetweenFiles(t *testing.T) {
	a := []byte("12345")    // 5 bytes: 3 zeros follow
	b := []byte("abcdefgh") // 8 bytes: aligned, nothing follows
	c := []byte("xyz")      // last: never padded
	image := append(append(append(append([]byte{}, a...), 0, 0, 0), b...), c...)
	ms, err := Plan([]pcrbank.Alg{pcrbank.SHA256}, Inputs{
		Kernel:  BytesSource("k", []byte("k")),
		Initrds: []Source{BytesSource("/a", a), BytesSource("/b", b), BytesSource("/c", c)},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(image)
	if !bytes.Equal(ms[2].Digests[pcrbank.SHA256], want[:]) {
		t.Errorf("initrd digest %x, want sha256 of the padded image %x", ms[2].Digests[pcrbank.SHA256], want)
	}
	if ms[2].Source != "/a /b /c" {
		t.Errorf("initrd source %q", ms[2].Source)
	}
	// One file is the image itself: pv-grub's single initrd is unchanged.
	ms, _ = Plan([]pcrbank.Alg{pcrbank.SHA256}, Inputs{Kernel: BytesSource("k", nil), Initrds: []Source{BytesSource("/a", a)}}, nil)
	if w := sha256.Sum256(a); !bytes.Equal(ms[2].Digests[pcrbank.SHA256], w[:]) {
		t.Errorf("single initrd was padded")
	}
	for size, pad := range map[int64]int64{0: 0, 1: 3, 2: 2, 3: 1, 4: 0, 4097: 3} {
		if got := InitrdPadding(size); got != pad {
			t.Errorf("InitrdPadding(%d) = %d, want %d", size, got, pad)
		}
	}
}

// skipBank is a TPM that lies: it reports success but leaves one bank
// alone. A mock, because no real TPM can be made to lie; the check it
// proves is arithmetic on values Apply reads back from any Target.
type skipBank struct {
	*pcrbank.Soft
	skip pcrbank.Alg
}

func (s skipBank) Extend(pcr int, d pcrbank.Digests) error {
	keep := pcrbank.Digests{}
	for a, v := range d {
		if a == s.skip {
			v = make([]byte, a.Size()) // extend zeros instead
		}
		keep[a] = v
	}
	return s.Soft.Extend(pcr, keep)
}

// wrongAnswer extends correctly but answers with a wrong new value, as a
// TPM 1.2 outDigest could.
type wrongAnswer struct{ *pcrbank.Soft }

func (w wrongAnswer) ExtendResult(pcr int, d pcrbank.Digests) (pcrbank.Digests, error) {
	if err := w.Soft.Extend(pcr, d); err != nil {
		return nil, err
	}
	return pcrbank.Digests{pcrbank.SHA1: make([]byte, 20)}, nil
}

func TestApplyCatchesALyingTPM(t *testing.T) {
	banks := []pcrbank.Alg{pcrbank.SHA1, pcrbank.SHA256}
	in := Inputs{Kernel: BytesSource("/k", []byte("kernel")), Cmdline: "x"}
	ms, err := Plan(banks, in, nil)
	if err != nil {
		t.Fatal(err)
	}
	soft, _ := pcrbank.NewSoft(banks)
	steps, err := Apply(skipBank{soft, pcrbank.SHA256}, ms)
	var me *ExtendMismatchError
	if !errors.As(err, &me) || !errors.Is(err, ErrTPMInconsistent) || me.Alg != pcrbank.SHA256 || me.PCR != 4 || len(steps) != 0 {
		t.Errorf("skipped bank: steps %d, err %v", len(steps), err)
	}
	soft, _ = pcrbank.NewSoft([]pcrbank.Alg{pcrbank.SHA1})
	ms1, _ := Plan([]pcrbank.Alg{pcrbank.SHA1}, in, nil)
	if _, err := Apply(wrongAnswer{soft}, ms1); !errors.As(err, &me) || !strings.Contains(err.Error(), "extend command's answer") {
		t.Errorf("wrong answer: %v", err)
	}
	// An honest TPM passes the same checks.
	soft, _ = pcrbank.NewSoft(banks)
	if steps, err := Apply(soft, ms); err != nil || len(steps) != 3 {
		t.Errorf("honest: %d steps, %v", len(steps), err)
	}
}
