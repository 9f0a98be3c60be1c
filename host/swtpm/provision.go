package swtpm

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// CA is vtpmboot's own certificate authority for EK and platform
// certificates: swtpm_localca's key and certificates under Dir (root
// only), configured by files vtpmboot writes there. Debian's default
// configuration keeps its CA in /var/lib/swtpm-localca, owned by the
// swtpm user; vtpmback runs swtpm as root and keeps its CA to itself.
type CA struct {
	Dir string
	// Setup and LocalCA are the tools; "" means from PATH
	// (/usr/bin/swtpm_localca on Debian).
	Setup, LocalCA string
}

// IssuerCert is the certificate that signs EK and platform
// certificates; RootCert signs it. swtpm_localca creates both on first
// use (its statedir without a signing key).
func (ca *CA) IssuerCert() string { return filepath.Join(ca.Dir, "issuercert.pem") }

// RootCert is the CA's self-signed root (swtpm_localca's
// swtpm-localca-rootca-cert.pem).
func (ca *CA) RootCert() string { return filepath.Join(ca.Dir, "swtpm-localca-rootca-cert.pem") }

func (ca *CA) configure() (string, error) {
	if err := os.MkdirAll(ca.Dir, 0o700); err != nil {
		return "", fmt.Errorf("CA directory: %w", err)
	}
	if err := os.Chmod(ca.Dir, 0o700); err != nil {
		return "", fmt.Errorf("CA directory: %w", err)
	}
	localca := ca.LocalCA
	if localca == "" {
		p, err := exec.LookPath("swtpm_localca")
		if err != nil {
			return "", fmt.Errorf("swtpm_localca: %w (install swtpm-tools)", err)
		}
		localca = p
	}
	// swtpm_localca(8) and swtpm-localca.conf(8): statedir, signingkey,
	// issuercert, certserial.
	files := map[string]string{
		"swtpm-localca.conf": fmt.Sprintf("statedir = %s\nsigningkey = %s\nissuercert = %s\ncertserial = %s\n",
			ca.Dir, filepath.Join(ca.Dir, "signkey.pem"), ca.IssuerCert(), filepath.Join(ca.Dir, "certserial")),
		"swtpm-localca.options": "--platform-manufacturer vtpmboot\n--platform-version 1\n--platform-model vtpmback\n",
	}
	files["swtpm_setup.conf"] = fmt.Sprintf("create_certs_tool = %s\ncreate_certs_tool_config = %s\ncreate_certs_tool_options = %s\n",
		localca, filepath.Join(ca.Dir, "swtpm-localca.conf"), filepath.Join(ca.Dir, "swtpm-localca.options"))
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(ca.Dir, name), []byte(content), 0o600); err != nil {
			return "", fmt.Errorf("CA configuration: %w", err)
		}
	}
	return filepath.Join(ca.Dir, "swtpm_setup.conf"), nil
}

// Provision creates a TPM's state in dir with swtpm_setup: an EK and its
// certificate, a platform certificate, NVRAM locked; TPM 2.0 with the
// sha1 and sha256 banks and an ECC EK (swtpm_setup 0.7.1's --ecc: NIST
// P-384, its certificate in NV index 0x01c00016), since RSA key
// generation takes long under nested emulation. The state is built in a
// sibling directory and renamed into place, so a failed or interrupted
// provisioning never leaves a half-made TPM that would be used later.
func (ca *CA) Provision(dir string, tpm2 bool) error {
	conf, err := ca.configure()
	if err != nil {
		return err
	}
	tmp := dir + ".new"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return fmt.Errorf("provision %s: %w", dir, err)
	}
	args := []string{"--tpmstate", tmp, "--config", conf,
		"--createek", "--create-ek-cert", "--create-platform-cert", "--lock-nvram", "--not-overwrite"}
	if tpm2 {
		args = append(args, "--tpm2", "--ecc", "--pcr-banks", "sha1,sha256")
	}
	setup := ca.Setup
	if setup == "" {
		setup = "swtpm_setup"
	}
	cmd := exec.Command(setup, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("provision %s: swtpm_setup %s: %v: %s", dir, strings.Join(args, " "), err, lastLines(out.String(), 5))
	}
	if _, err := os.Stat(PermanentStateFile(tmp, tpm2)); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("provision %s: swtpm_setup made no state: %w", dir, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("provision %s: %w", dir, err)
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
