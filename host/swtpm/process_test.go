package swtpm

import (
	"bytes"
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/vtpmboot/vtpmboot/internal/swtpmtest"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
	"github.com/vtpmboot/vtpmboot/tpmfront"
)

// A provisioned TPM 2.0 carries an ECC EK certificate in NV index
// 0x01c00016 (TCG EK Credential Profile 2.3 §2.2.1.5: the NIST P-384 EK
// certificate; swtpm_setup 0.7.1's --ecc makes a P-384 EK and says
// "created NVRAM area 0x1c00016 for ECC EK certificate")
// that chains to vtpmboot's CA: read with tpm2-tools from a separate
// swtpm on the same state, verified with openssl, what a verifier does.
func TestProvisionTPM20EKChain(t *testing.T) {
	testenv.NeedCommands(t, "swtpm_setup", "swtpm_localca", "tpm2_nvread", "openssl")
	root := t.TempDir()
	ca := &CA{Dir: filepath.Join(root, "ca")}
	state := filepath.Join(root, "tpm", "u")
	os.MkdirAll(filepath.Dir(state), 0o700)
	start := time.Now()
	if err := ca.Provision(state, true); err != nil {
		t.Fatal(err)
	}
	t.Logf("TPM 2.0 provisioning (ECC EK, CA created): %v", time.Since(start))
	st, err := os.Stat(ca.Dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("CA directory: %v %v", st.Mode(), err)
	}
	in := swtpmtest.StartTCPWithState(t, tpmfront.Version20, state)
	der := filepath.Join(root, "ek.der")
	out, err := exec.Command("tpm2_nvread", "-T", in.TCTI(), "-o", der, "0x01c00016").CombinedOutput()
	if err != nil {
		t.Fatalf("tpm2_nvread 0x01c00016: %v\n%s", err, out)
	}
	b, _ := os.ReadFile(der)
	// NV areas are padded; x509 wants the exact DER.
	cert, err := x509.ParseCertificate(trimDER(b))
	if err != nil {
		t.Fatalf("EK certificate: %v", err)
	}
	if cert.PublicKeyAlgorithm != x509.ECDSA {
		t.Errorf("EK certificate key %v, want ECDSA (ECC EK)", cert.PublicKeyAlgorithm)
	}
	pem := filepath.Join(root, "ek.pem")
	if out, err := exec.Command("openssl", "x509", "-inform", "DER", "-in", der, "-out", pem).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// -partial_chain is not used: the chain must end at the root.
	// The EK cert has a TPM-specific SAN extension openssl does not know
	// and marks critical (TCG EK profile); -ignore_critical is what a
	// verifier of EK certificates passes.
	out, err = exec.Command("openssl", "verify", "-ignore_critical", "-CAfile", ca.RootCert(), "-untrusted", ca.IssuerCert(), pem).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte(": OK")) {
		t.Fatalf("openssl verify: %v\n%s", err, out)
	}
	// A second vTPM reuses the same CA.
	if err := ca.Provision(filepath.Join(root, "tpm", "v"), true); err != nil {
		t.Fatal(err)
	}
}

// trimDER cuts a DER SEQUENCE to its encoded length.
func trimDER(b []byte) []byte {
	if len(b) < 4 || b[0] != 0x30 || b[1] != 0x82 {
		return b
	}
	n := int(b[2])<<8 | int(b[3]) + 4
	if n <= len(b) {
		return b[:n]
	}
	return b
}

// Start, reset, resume and stop a provisioned vTPM the way vtpmback
// does, both versions; provisioning leaves no half-made state on failure.
func TestStartProvisioned(t *testing.T) {
	testenv.NeedCommands(t, "swtpm", "swtpm_setup", "swtpm_localca")
	root := t.TempDir()
	ca := &CA{Dir: filepath.Join(root, "ca")}
	versions(t, func(t *testing.T, v tpmfront.Version) {
		tpm2 := v == tpmfront.Version20
		state := filepath.Join(root, v.String())
		start := time.Now()
		if err := ca.Provision(state, tpm2); err != nil {
			t.Fatal(err)
		}
		t.Logf("provisioning %v: %v", v, time.Since(start))
		run := t.TempDir()
		p := PathsIn(run, "u")
		pid, err := Start(StartOptions{State: state, TPM2: tpm2, Paths: p, Log: filepath.Join(run, "log")})
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			if Alive(pid) {
				exec.Command("kill", "-9", itoa(pid)).Run()
			}
		}()
		if !Alive(pid) {
			t.Fatalf("swtpm pid %d not alive after Start", pid)
		}
		c, err := DialCtrl(p.Ctrl)
		if err != nil {
			t.Fatal(err)
		}
		d, err := DialData(p.Data)
		if err != nil {
			t.Fatal(err)
		}
		got2, err := Reset(c, d)
		if err != nil || got2 != tpm2 {
			t.Fatalf("reset: %v %v", got2, err)
		}
		tg := target(t, d)
		a := bank(v)
		extendOnly(t, tg, a, []byte("x"))
		if tpm2 {
			banks, _ := tg.Banks()
			if len(banks) != 2 || banks[0] != tpmfront.SHA1 || banks[1] != tpmfront.SHA256 {
				t.Errorf("banks %v, want sha1 and sha256", banks)
			}
		}
		if err := c.StoreVolatile(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(VolatileStateFile(state, tpm2)); err != nil {
			t.Fatalf("no volatile state file after STORE_VOLATILE: %v", err)
		}
		if err := c.Shutdown(); err != nil {
			t.Fatal(err)
		}
		d.Close()
		if !WaitGone(pid, 10*time.Second) {
			t.Fatal("swtpm still running 10 s after CMD_SHUTDOWN")
		}
	})
	if err := ca.Provision(filepath.Join(root, "bad"), true); err != nil {
		t.Fatal(err)
	}
	ca.Setup = "false" // swtpm_setup failing
	if err := ca.Provision(filepath.Join(root, "failed"), true); err == nil {
		t.Fatal("a failing swtpm_setup provisioned")
	}
	for _, p := range []string{"failed", "failed.new"} {
		if _, err := os.Stat(filepath.Join(root, p)); err == nil {
			t.Errorf("%s left behind by a failed provisioning", p)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// BenchmarkProvision prints how long swtpm_setup takes per vTPM (the
// CA exists already, as after the first vTPM).
func BenchmarkProvision(b *testing.B) {
	root := b.TempDir()
	ca := &CA{Dir: filepath.Join(root, "ca")}
	if err := ca.Provision(filepath.Join(root, "first"), true); err != nil {
		b.Fatal(err)
	}
	for _, v := range []struct {
		name string
		tpm2 bool
	}{{"TPM1.2", false}, {"TPM2.0-ECC", true}} {
		b.Run(v.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if err := ca.Provision(filepath.Join(root, v.name+itoa(i)), v.tpm2); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
