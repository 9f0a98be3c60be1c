package main

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/vtpmboot/vtpmboot/internal/swtpmtest"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// policyFixtures are n boots of the same kernel and initrd with different
// command lines, each predicted to a JSON file (zero starting values, as
// on a Xen vTPM), with the expected PCR values computed in the test.
func policyFixtures(t *testing.T, n int) ([]*fixture, []string) {
	t.Helper()
	base := newFixture(t, 5000, 333)
	var fs []*fixture
	var files []string
	for i := 0; i < n; i++ {
		f := *base
		f.cmdline = fmt.Sprintf("root=/dev/xvda1 ro boot=%d", i)
		f.compute()
		r := pcrsim(t, nil, append([]string{"predict"}, f.args("--format", "json")...)...)
		if r.code != 0 {
			t.Fatalf("predict: %s", r.stderr)
		}
		p := filepath.Join(f.dir, fmt.Sprintf("boot%d.json", i))
		os.WriteFile(p, []byte(r.stdout), 0o644)
		fs = append(fs, &f)
		files = append(files, p)
	}
	return fs, files
}

func expectedArgs(files []string) []string {
	var a []string
	for _, f := range files {
		a = append(a, "--expected", f)
	}
	return a
}

// tpm2Tool runs a tpm2-tools command against swtpm and returns stdout.
// With no resource manager between tpm2-tools and swtpm, what one tool
// loads stays in the TPM's few slots, so every transient object and
// session is flushed after each command (tools reload contexts from their
// files).
func tpm2Tool(t *testing.T, tcti string, args ...string) string {
	t.Helper()
	defer func() {
		for _, fl := range []string{"-t", "-l"} {
			c := exec.Command("tpm2_flushcontext", fl)
			c.Env = append(os.Environ(), "TPM2TOOLS_TCTI="+tcti)
			c.Run()
		}
	}()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "TPM2TOOLS_TCTI="+tcti)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	if err := cmd.Run(); err != nil {
		t.Fatalf("%q: %v\n%s%s", args, err, so.String(), se.String())
	}
	return so.String()
}

// TestPolicyAgainstTPM2Tools checks the TPM 2.0 policy digests and the
// values file against tpm2-tools talking to a real TPM (swtpm):
// tpm2_createpolicy --policy-pcr over a values file the test writes from
// its own computation gives the expected PolicyPCR digest, tpm2_policypcr
// reads pcrsim's values file to the same digest, and tpm2_policyor over
// those leaves (in a trial session) gives the PolicyOR and, beyond 8, the
// tree's root.
func TestPolicyAgainstTPM2Tools(t *testing.T) {
	testenv.NeedCommands(t, "swtpm", "tpm2_createpolicy", "tpm2_policypcr", "tpm2_policyor", "tpm2_startauthsession", "tpm2_flushcontext")
	tpm := swtpmtest.StartTCP(t, pcrbank.Version20)
	tcti := tpm.TCTI()
	dir := t.TempDir()
	fs, files := policyFixtures(t, 10)

	// One boot, each bank: tpm2_createpolicy over the test's own values.
	leaf := make([][]byte, len(fs))
	for _, a := range []pcrbank.Alg{pcrbank.SHA1, pcrbank.SHA256} {
		for i, f := range fs {
			own := filepath.Join(dir, fmt.Sprintf("own-%v-%d.bin", a, i))
			os.WriteFile(own, append(append([]byte{}, f.expectedPCRs[a][4]...), f.expectedPCRs[a][5]...), 0o644)
			out := filepath.Join(dir, fmt.Sprintf("leaf-%v-%d.bin", a, i))
			tpm2Tool(t, tcti, "tpm2_createpolicy", "--policy-pcr", "-l", a.String()+":4,5", "-f", own, "-L", out)
			want, _ := os.ReadFile(out)
			if a == pcrbank.SHA256 {
				leaf[i] = want
			}
			if i > 1 {
				continue
			}
			r := pcrsim(t, nil, "policy", "--expected", files[i], "--format", "tpm2-policy", "--policy-bank", a.String())
			if r.code != 0 || r.stdout != string(want) {
				t.Errorf("%v boot %d: pcrsim tpm2-policy %x (exit %d %s), tpm2_createpolicy %x", a, i, r.stdout, r.code, r.stderr, want)
			}
			// pcrsim's values file, read by tpm2_policypcr in a trial
			// session, gives the same digest.
			r = pcrsim(t, nil, "policy", "--expected", files[i], "--format", "tpm2-pcrs", "--policy-bank", a.String())
			if r.code != 0 || !strings.Contains(r.stderr, "-l "+a.String()+":4,5") {
				t.Fatalf("tpm2-pcrs: exit %d %s", r.code, r.stderr)
			}
			vals := filepath.Join(dir, "pcrsim.pcrvalues")
			os.WriteFile(vals, []byte(r.stdout), 0o644)
			sess := filepath.Join(dir, "trial.ctx")
			tpm2Tool(t, tcti, "tpm2_startauthsession", "-S", sess)
			got := filepath.Join(dir, "policypcr.bin")
			tpm2Tool(t, tcti, "tpm2_policypcr", "-S", sess, "-l", a.String()+":4,5", "-f", vals, "-L", got)
			tpm2Tool(t, tcti, "tpm2_flushcontext", sess)
			if g, _ := os.ReadFile(got); !bytes.Equal(g, want) {
				t.Errorf("%v: tpm2_policypcr -f <pcrsim file> = %x, want %x", a, g, want)
			}
		}
	}

	policyOR := func(digests [][]byte) []byte {
		t.Helper()
		var names []string
		for i, d := range digests {
			p := filepath.Join(dir, fmt.Sprintf("or-in-%d.bin", i))
			os.WriteFile(p, d, 0o644)
			names = append(names, p)
		}
		sess := filepath.Join(dir, "trial-or.ctx")
		out := filepath.Join(dir, "or-out.bin")
		tpm2Tool(t, tcti, "tpm2_startauthsession", "-S", sess)
		tpm2Tool(t, tcti, "tpm2_policyor", "-S", sess, "-L", out, "-l", "sha256:"+strings.Join(names, ","))
		tpm2Tool(t, tcti, "tpm2_flushcontext", sess)
		b, _ := os.ReadFile(out)
		return b
	}
	// Three boots: one PolicyOR.
	r := pcrsim(t, nil, append([]string{"policy", "--format", "tpm2-policy"}, expectedArgs(files[:3])...)...)
	if want := policyOR(leaf[:3]); r.code != 0 || r.stdout != string(want) {
		t.Errorf("3 boots: pcrsim %x (exit %d %s), tpm2_policyor %x", r.stdout, r.code, r.stderr, want)
	}
	// Ten boots: more than one PolicyOR takes. The documented tree: groups
	// as even as possible (5 and 5), then a PolicyOR of the two.
	r = pcrsim(t, nil, append([]string{"policy", "--format", "tpm2-policy"}, expectedArgs(files)...)...)
	want := policyOR([][]byte{policyOR(leaf[:5]), policyOR(leaf[5:])})
	if r.code != 0 || r.stdout != string(want) {
		t.Errorf("10 boots: pcrsim %x (exit %d %s), tpm2_policyor tree %x", r.stdout, r.code, r.stderr, want)
	}
	r = pcrsim(t, nil, append([]string{"policy", "--format", "tpm2-policy", "--policy-or", "flat"}, expectedArgs(files[:9])...)...)
	if r.code != 2 || !strings.HasPrefix(r.stderr, "pcrsim policy: --policy-or: ") || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("9 boots, flat: exit %d %q", r.code, r.stderr)
	}
}

// TestPolicyUnsealThroughTree seals a secret on swtpm with the root of a
// 10-boot PolicyOR tree, makes the TPM's PCRs those of boot 7 by extending
// the measurements the test computes itself, and unseals through
// PolicyPCR and the two PolicyOR levels pcrsim's JSON lists. One more
// extend and the TPM refuses.
func TestPolicyUnsealThroughTree(t *testing.T) {
	testenv.NeedCommands(t, "swtpm", "tpm2_createprimary", "tpm2_create", "tpm2_load", "tpm2_unseal",
		"tpm2_startauthsession", "tpm2_policypcr", "tpm2_policyor", "tpm2_pcrextend", "tpm2_flushcontext")
	tpm := swtpmtest.StartTCP(t, pcrbank.Version20)
	tcti := tpm.TCTI()
	dir := t.TempDir()
	fs, files := policyFixtures(t, 10)
	r := pcrsim(t, nil, append([]string{"policy", "--format", "json", "--bank", "sha256"}, expectedArgs(files)...)...)
	if r.code != 0 {
		t.Fatalf("policy: %s", r.stderr)
	}
	var doc struct {
		Contract int `json:"contract"`
		TPM2     map[string]struct {
			PolicyDigest string       `json:"policy_digest"`
			ORLevels     [][][]string `json:"or_levels"`
			Branches     []struct {
				PolicyPCR string `json:"policy_pcr"`
			} `json:"branches"`
		} `json:"tpm2"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatal(err)
	}
	p := doc.TPM2["sha256"]
	if doc.Contract != 1 || len(p.ORLevels) != 2 || len(p.Branches) != 10 {
		t.Fatalf("policy document: %s", r.stdout)
	}
	write := func(name string, hx string) string {
		b, err := hex.DecodeString(hx)
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(dir, name)
		os.WriteFile(f, b, 0o644)
		return f
	}
	policyFile := write("policy.bin", p.PolicyDigest)
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte("sealed to boot 7 of 10\n"), 0o600)
	prim, pub, priv, obj := filepath.Join(dir, "prim.ctx"), filepath.Join(dir, "seal.pub"), filepath.Join(dir, "seal.priv"), filepath.Join(dir, "seal.ctx")
	tpm2Tool(t, tcti, "tpm2_createprimary", "-C", "o", "-G", "ecc", "-c", prim)
	tpm2Tool(t, tcti, "tpm2_create", "-C", prim, "-L", policyFile, "-a", "fixedtpm|fixedparent", "-i", secret, "-u", pub, "-r", priv)
	tpm2Tool(t, tcti, "tpm2_load", "-C", prim, "-u", pub, "-r", priv, "-c", obj)

	// Boot 7 "happens": the contract's three extends, computed here.
	f := fs[7]
	k, c, i := sha256.Sum256(f.kb), sha256.Sum256([]byte(f.cmdline)), sha256.Sum256(f.ib)
	for _, e := range []string{fmt.Sprintf("4:sha256=%x", k), fmt.Sprintf("5:sha256=%x", c), fmt.Sprintf("5:sha256=%x", i)} {
		tpm2Tool(t, tcti, "tpm2_pcrextend", e)
	}
	unseal := func() (string, error) {
		sess := filepath.Join(dir, "policy.ctx")
		tpm2Tool(t, tcti, "tpm2_startauthsession", "--policy-session", "-S", sess)
		defer tpm2Tool(t, tcti, "tpm2_flushcontext", sess)
		tpm2Tool(t, tcti, "tpm2_policypcr", "-S", sess, "-l", "sha256:4,5")
		cur := p.Branches[7].PolicyPCR
		for lvl, groups := range p.ORLevels {
			var list []string
			for _, g := range groups {
				if slices.Contains(g, cur) {
					for j, d := range g {
						list = append(list, write(fmt.Sprintf("l%d-%d.bin", lvl, j), d))
					}
				}
			}
			if list == nil {
				t.Fatalf("level %d has no group holding %s", lvl, cur)
			}
			out := filepath.Join(dir, "after-or.bin")
			tpm2Tool(t, tcti, "tpm2_policyor", "-S", sess, "-L", out, "-l", "sha256:"+strings.Join(list, ","))
			b, _ := os.ReadFile(out)
			cur = hex.EncodeToString(b)
		}
		if cur != p.PolicyDigest {
			t.Errorf("session digest after the tree %s, policy %s", cur, p.PolicyDigest)
		}
		cmd := exec.Command("tpm2_unseal", "-c", obj, "-p", "session:"+sess)
		cmd.Env = append(os.Environ(), "TPM2TOOLS_TCTI="+tcti)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := unseal(); err != nil || out != "sealed to boot 7 of 10\n" {
		t.Fatalf("unseal at boot 7's PCRs: %v %q", err, out)
	}
	// Anything extended after the boot: PolicyPCR records other values and
	// the first PolicyOR already refuses (tpm2_policyor fails inside the
	// helper), so run that step by hand.
	tpm2Tool(t, tcti, "tpm2_pcrextend", fmt.Sprintf("5:sha256=%x", sha256.Sum256([]byte("later"))))
	sess := filepath.Join(dir, "policy2.ctx")
	tpm2Tool(t, tcti, "tpm2_startauthsession", "--policy-session", "-S", sess)
	tpm2Tool(t, tcti, "tpm2_policypcr", "-S", sess, "-l", "sha256:4,5")
	var list []string
	for j, d := range p.ORLevels[0][1] {
		list = append(list, write(fmt.Sprintf("n-%d.bin", j), d))
	}
	cmd := exec.Command("tpm2_policyor", "-S", sess, "-l", "sha256:"+strings.Join(list, ","))
	cmd.Env = append(os.Environ(), "TPM2TOOLS_TCTI="+tcti)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "0x1c4") && !strings.Contains(string(out), "value is out of range") {
		t.Errorf("PolicyOR after a later extend: %v %s (want TPM_RC_VALUE: the digest is in no branch)", err, out)
	} else {
		t.Logf("later extend refused: %s", strings.TrimSpace(string(out)))
	}
}

// TestPolicyCryptenroll checks --format cryptenroll against the grammar
// systemd's parser accepts (src/shared/tpm2-util.c:
// tpm2_pcr_values_from_string splits on '+' or ','; each entry
// INDEX:HASH=HEX, hex optionally 0x-prefixed; tpm2_pcr_values_valid wants
// them sorted by index, unique, and each value the size of its hash;
// systemd-cryptenroll takes one bank). Debian 12's systemd 252 predates the
// value syntax and rejects it, so the real binary cannot be the judge here.
func TestPolicyCryptenroll(t *testing.T) {
	fs, files := policyFixtures(t, 2)
	r := pcrsim(t, nil, append([]string{"policy", "--format", "cryptenroll"}, expectedArgs(files)...)...)
	if r.code != 0 {
		t.Fatalf("exit %d %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("want one line per allowed boot:\n%s", r.stdout)
	}
	entry := regexp.MustCompile(`^([0-9]{1,2}):(sha1|sha256|sha384|sha512)=(?:0x)?([0-9a-f]+)$`)
	for i, l := range lines {
		arg, ok := strings.CutPrefix(l, "--tpm2-pcrs=")
		if !ok {
			t.Fatalf("line %q", l)
		}
		last := -1
		for j, e := range strings.Split(arg, "+") {
			m := entry.FindStringSubmatch(e)
			if m == nil {
				t.Fatalf("entry %q does not parse as INDEX:HASH=HEX", e)
			}
			idx, _ := strconv.Atoi(m[1])
			v, _ := hex.DecodeString(m[3])
			if idx <= last || m[2] != "sha256" || len(v) != 32 {
				t.Errorf("entry %q: unsorted, another bank or wrong size", e)
			}
			last = idx
			if want := fs[i].expectedPCRs[pcrbank.SHA256][[]int{4, 5}[j]]; !bytes.Equal(v, want) {
				t.Errorf("line %d PCR %d = %x, want %x", i, idx, v, want)
			}
		}
	}
}

// TestPolicyKeylime checks --format keylime against Keylime's parser
// (keylime/tpm/tpm_util.py readPolicy: every key a decimal PCR number up to
// 24 and neither 10 nor 16, values a string or a list of strings it
// lower-cases) and against its check (tpm_main.py check_pcrs: the quote's
// value, bytes.hex(), must be in the PCR's list).
func TestPolicyKeylime(t *testing.T) {
	fs, files := policyFixtures(t, 3)
	r := pcrsim(t, nil, append([]string{"policy", "--format", "keylime"}, expectedArgs(files)...)...)
	if r.code != 0 {
		t.Fatalf("exit %d %s", r.code, r.stderr)
	}
	var pol map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &pol); err != nil {
		t.Fatal(err)
	}
	if len(pol) != 2 {
		t.Errorf("keys %v, want 4 and 5 only (no mask: readPolicy refuses it)", pol)
	}
	for k, v := range pol {
		n, err := strconv.Atoi(k)
		if err != nil || n > 24 || n == 10 || n == 16 || strconv.Itoa(n) != k {
			t.Errorf("key %q", k)
		}
		list, ok := v.([]any)
		if !ok {
			t.Fatalf("%s: %T, want a list", k, v)
		}
		var got []string
		for _, x := range list {
			s, ok := x.(string)
			if !ok || s != strings.ToLower(s) {
				t.Errorf("%s: value %v", k, x)
			}
			got = append(got, s)
		}
		// PCR 4 is the same kernel in all three boots; PCR 5 differs.
		var want []string
		for _, f := range fs {
			h := hex.EncodeToString(f.expectedPCRs[pcrbank.SHA256][n])
			if !slices.Contains(want, h) {
				want = append(want, h)
			}
		}
		sort.Strings(want)
		if !slices.Equal(got, want) {
			t.Errorf("PCR %s: %v, want %v", k, got, want)
		}
	}
	r = pcrsim(t, nil, "policy", "--expected", files[0], "--format", "keylime", "--pcrs", "4,10", "--bank", "sha256")
	if r.code != 2 || !strings.Contains(r.stderr, "PCR 10") {
		t.Errorf("PCR 10: exit %d %q", r.code, r.stderr)
	}
}

// TestPolicyPcrlock checks --format pcrlock against systemd-pcrlock's
// reader (src/pcrlock/pcrlock.c event_log_record_parse_json: "records" an
// array; each "pcr" an unsigned integer below 24 and "digests" an array of
// {"hashAlg": a name tpm2_hash_alg_from_string knows, "digest": hex}) and
// replays the records as event_log_calculate_pcrs does, from the reset
// value, to the PCRs the test computes. systemd 252 has no pcrlock, so no
// real pcrlock reads them here.
func TestPolicyPcrlock(t *testing.T) {
	fs, files := policyFixtures(t, 2)
	out := filepath.Join(t.TempDir(), "650-vtpmboot.pcrlock.d")
	os.Mkdir(out, 0o755)
	r := pcrsim(t, nil, append([]string{"policy", "--format", "pcrlock", "--output-dir", out, "--bank", "sha1,sha256"}, expectedArgs(files)...)...)
	if r.code != 0 {
		t.Fatalf("exit %d %s", r.code, r.stderr)
	}
	for i, f := range fs {
		b, err := os.ReadFile(filepath.Join(out, fmt.Sprintf("%03d.pcrlock", i)))
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]json.RawMessage
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatal(err)
		}
		var recs []struct {
			PCR     json.Number `json:"pcr"`
			Digests []struct {
				HashAlg string `json:"hashAlg"`
				Digest  string `json:"digest"`
			} `json:"digests"`
		}
		dec := json.NewDecoder(bytes.NewReader(doc["records"]))
		dec.UseNumber()
		if err := dec.Decode(&recs); err != nil {
			t.Fatalf("records: %v\n%s", err, b)
		}
		pcr := map[string]map[int][]byte{"sha1": {4: make([]byte, 20), 5: make([]byte, 20)}, "sha256": {4: make([]byte, 32), 5: make([]byte, 32)}}
		for _, rec := range recs {
			n, err := strconv.ParseUint(string(rec.PCR), 10, 32)
			if err != nil || n >= 24 {
				t.Fatalf("pcr %q", rec.PCR)
			}
			if len(rec.Digests) != 2 {
				t.Errorf("record has %d banks, want every predicted bank", len(rec.Digests))
			}
			for _, d := range rec.Digests {
				v, err := hex.DecodeString(d.Digest)
				if err != nil {
					t.Fatal(err)
				}
				switch d.HashAlg {
				case "sha1":
					h := sha1.Sum(append(pcr["sha1"][int(n)], v...))
					pcr["sha1"][int(n)] = h[:]
				case "sha256":
					h := sha256.Sum256(append(pcr["sha256"][int(n)], v...))
					pcr["sha256"][int(n)] = h[:]
				default:
					t.Fatalf("hashAlg %q", d.HashAlg)
				}
			}
		}
		for _, a := range []pcrbank.Alg{pcrbank.SHA1, pcrbank.SHA256} {
			for _, n := range []int{4, 5} {
				if !bytes.Equal(pcr[a.String()][n], f.expectedPCRs[a][n]) {
					t.Errorf("variant %d %v PCR %d replays to %x, want %x", i, a, n, pcr[a.String()][n], f.expectedPCRs[a][n])
				}
			}
		}
	}
	// Two variants need a directory; a file already there is not replaced.
	r = pcrsim(t, nil, append([]string{"policy", "--format", "pcrlock"}, expectedArgs(files)...)...)
	if r.code != 2 || !strings.Contains(r.stderr, "--output-dir") {
		t.Errorf("two variants to stdout: exit %d %q", r.code, r.stderr)
	}
	r = pcrsim(t, nil, append([]string{"policy", "--format", "pcrlock", "--output-dir", out}, expectedArgs(files)...)...)
	if r.code != 2 || !strings.Contains(r.stderr, "file exists") {
		t.Errorf("overwrite: exit %d %q", r.code, r.stderr)
	}
}

// TestPolicyTPM12Composite checks the composite against the TPM 1.2
// structures written out here: SHA-1 over TPM_PCR_SELECTION (sizeOfSelect
// 3), valueSize and the values.
func TestPolicyTPM12Composite(t *testing.T) {
	fs, files := policyFixtures(t, 1)
	r := pcrsim(t, nil, "policy", "--expected", files[0], "--format", "json")
	var doc struct {
		TPM12 struct {
			Composites []struct {
				DigestAtRelease string `json:"digest_at_release"`
			} `json:"composites"`
		} `json:"tpm12"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || len(doc.TPM12.Composites) != 1 {
		t.Fatalf("%v %s", err, r.stdout)
	}
	var b []byte
	b = binary.BigEndian.AppendUint16(b, 3)
	b = append(b, 0x30, 0, 0)
	b = binary.BigEndian.AppendUint32(b, 40)
	b = append(append(b, fs[0].expectedPCRs[pcrbank.SHA1][4]...), fs[0].expectedPCRs[pcrbank.SHA1][5]...)
	if want := sha1.Sum(b); doc.TPM12.Composites[0].DigestAtRelease != hex.EncodeToString(want[:]) {
		t.Errorf("composite %s, want %x", doc.TPM12.Composites[0].DigestAtRelease, want)
	}
}

// TestPolicyFromInputs: the prediction sources other than --expected, the
// starting values, and a PCR outside the plan given a fixed value.
func TestPolicyFromInputs(t *testing.T) {
	f := newFixture(t, 1000, 10)
	f.init4s256 = bytes.Repeat([]byte{0x42}, 32)
	f.compute()
	seven := strings.Repeat("77", 32)
	r := pcrsim(t, nil, append([]string{"policy"}, f.args("--bank", "sha256", "--pcrs", "4,5,7",
		"--pcr-init", "4:sha256="+hexOf(f.init4s256), "--pcr-init", "7:sha256="+seven, "--format", "tpm2-pcrs")...)...)
	if r.code != 0 {
		t.Fatalf("exit %d %s", r.code, r.stderr)
	}
	want := append(append(append([]byte{}, f.expectedPCRs[pcrbank.SHA256][4]...), f.expectedPCRs[pcrbank.SHA256][5]...), bytes.Repeat([]byte{0x77}, 32)...)
	if r.stdout != string(want) {
		t.Errorf("values %x, want %x", r.stdout, want)
	}
	r = pcrsim(t, nil, append([]string{"policy"}, f.args("--bank", "sha256", "--pcr-init", "4:sha256:"+hexOf(f.init4s256), "--format", "json")...)...)
	var doc struct {
		Allowed []struct {
			Init map[string]map[string]string `json:"init"`
		} `json:"allowed"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || len(doc.Allowed) != 1 || doc.Allowed[0].Init["sha256"]["4"] != hexOf(f.init4s256) {
		t.Errorf("starting values not recorded: %v %s", err, r.stdout)
	}
}

func TestPolicyBadInput(t *testing.T) {
	f := newFixture(t, 100)
	_, files := policyFixtures(t, 1)
	dir := t.TempDir()
	sha1Only := filepath.Join(dir, "sha1.json")
	r := pcrsim(t, nil, append([]string{"predict"}, f.args("--bank", "sha1", "--format", "json")...)...)
	os.WriteFile(sha1Only, []byte(r.stdout), 0o644)
	old := filepath.Join(dir, "old.json")
	os.WriteFile(old, []byte(`{"banks":{"sha1":{"4":"`+strings.Repeat("00", 20)+`"}}}`), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{f.args("--pcrs", "4,24"), "--pcrs"},
		{f.args("--pcrs", "4,x"), "--pcrs"},
		{f.args("--pcrs", "4,7"), "--pcr-init 7:sha1=HEX"},
		{f.args("--bank", "md5"), "--bank"},
		{f.args("--policy-bank", "sha384", "--format", "cryptenroll"), "--policy-bank"},
		{f.args("--policy-alg", "md5"), "--policy-alg"},
		{f.args("--policy-or", "bushy"), "--policy-or"},
		{f.args("--format", "yaml"), "--format"},
		{f.args("--output-dir", dir), "--output-dir"},
		{f.args("--all-entries"), "--all-entries"},
		{[]string{"--expected", files[0], "--expected", sha1Only}, "mixed banks"},
		{[]string{"--expected", old}, "older pcrsim"},
		{[]string{"--expected", files[0], "--pcr-init", "4:sha1=" + strings.Repeat("00", 20)}, "--pcr-init"},
		{[]string{"--expected", files[0], "--kernel", f.kernel}, "one source"},
	} {
		r := pcrsim(t, nil, append([]string{"policy"}, tc.args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("pcrsim policy %q: exit %d, stderr %q; want exit 2 and one line with %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
}

// TestConventions: PCR:BANK=HEX is accepted, --format eventlog refuses
// starting values, --version names the contract, help shows --flags, and
// predict takes one --entry.
func TestConventions(t *testing.T) {
	f := newFixture(t, 100)
	a := pcrsim(t, nil, append([]string{"predict"}, f.args("--pcr-init", "4:sha1="+strings.Repeat("ab", 20), "--format", "json")...)...)
	b := pcrsim(t, nil, append([]string{"predict"}, f.args("--pcr-init", "4:sha1:"+strings.Repeat("AB", 20), "--format", "json")...)...)
	if a.code != 0 || a.stdout != b.stdout || !strings.Contains(a.stdout, `"init":{"sha1":{"4":"`+strings.Repeat("ab", 20)+`"}}`) {
		t.Errorf("PCR:BANK=HEX: exit %d %s\n%s", a.code, a.stderr, a.stdout)
	}
	r := pcrsim(t, nil, append([]string{"predict"}, f.args("--pcr-init", "4:sha1="+strings.Repeat("ab", 20), "--format", "eventlog")...)...)
	if r.code != 2 || !strings.HasPrefix(r.stderr, "pcrsim predict: --pcr-init: ") || strings.Count(r.stderr, "\n") != 1 || r.stdout != "" {
		t.Errorf("eventlog with --pcr-init: exit %d %q", r.code, r.stderr)
	}
	r = pcrsim(t, nil, "--version")
	if r.code != 0 || !regexp.MustCompile(`^pcrsim .*measurement contract 1\n$`).MatchString(r.stdout) {
		t.Errorf("--version: %d %q", r.code, r.stdout)
	}
	for _, cmd := range []string{"predict", "verify", "policy"} {
		r = pcrsim(t, nil, cmd, "--help")
		if r.code != 0 || !strings.Contains(r.stdout, "\n  --bank BANKS\n") || strings.Contains(r.stdout, "\n  -bank") {
			t.Errorf("%s --help does not show --bank:\n%s", cmd, r.stdout)
		}
	}
	r = pcrsim(t, nil, append([]string{"predict"}, f.args("--entry", "1", "--entry", "2")...)...)
	if r.code != 2 || !strings.Contains(r.stderr, "--entry") {
		t.Errorf("two --entry for predict: %d %q", r.code, r.stderr)
	}
}

// TestPolicyGuestSources: several allowed boots from one real guest disk
// (--entry repeated, --all-entries) and from an xl fleet; the allowed
// values are the test's own computation for each entry.
func TestPolicyGuestSources(t *testing.T) {
	needDiskTools(t)
	tc := formatCases()[0]
	img := buildDisk(t, tc.disk)
	first := want{tc.want.kernel, tc.want.initrds[:1], "BOOT_IMAGE=/boot/vmlinuz root=/dev/xvda1 ro quiet"}
	wantVals := func(ws ...want) []string {
		var out []string
		for _, w := range ws {
			out = append(out, w.pcrs()["sha256"]["5"])
		}
		sort.Strings(out)
		return out
	}
	keylime := func(args ...string) map[string][]string {
		t.Helper()
		r := pcrsim(t, nil, append([]string{"policy", "--format", "keylime"}, args...)...)
		if r.code != 0 {
			t.Fatalf("policy %q: exit %d %s", args, r.code, r.stderr)
		}
		var k map[string][]string
		if err := json.Unmarshal([]byte(r.stdout), &k); err != nil {
			t.Fatal(err)
		}
		return k
	}
	both := wantVals(first, tc.want)
	if k := keylime("--disk", img, "--entry", "0", "--entry", "rescue"); !slices.Equal(k["5"], both) {
		t.Errorf("--entry 0 --entry rescue: PCR 5 %v, want %v", k["5"], both)
	}
	if k := keylime("--disk", img, "--all-entries"); !slices.Equal(k["5"], both) {
		t.Errorf("--all-entries: PCR 5 %v, want %v", k["5"], both)
	}
	if k := keylime("--disk", img); !slices.Equal(k["5"], wantVals(tc.want)) {
		t.Errorf("default entry: PCR 5 %v, want %v", k["5"], wantVals(tc.want))
	}

	cfgs := t.TempDir()
	write := func(name, extra, target string) {
		os.WriteFile(filepath.Join(cfgs, name+".cfg"), []byte(fmt.Sprintf(
			"name = %q\ntype = \"hvm\"\nkernel = \"/var/lib/vtpmboot/vmlinuz\"\nextra = %q\ndisk = [ \"format=raw, vdev=xvda, access=rw, target=%s\" ]\n",
			name, extra, target)), 0o644)
	}
	write("a", "console=hvc0", img)
	write("b", "console=hvc0 vtpmboot.entry=debian", img)
	write("c", "console=hvc0", img) // the same boot as a: one branch
	if k := keylime("--xl-config", cfgs); !slices.Equal(k["5"], both) {
		t.Errorf("fleet: PCR 5 %v, want %v", k["5"], both)
	}
	r := pcrsim(t, nil, "policy", "--xl-config", cfgs, "--format", "json")
	var doc struct {
		Allowed []struct{ Label string } `json:"allowed"`
		TPM2    map[string]struct {
			Branches []struct{ Boots []string } `json:"branches"`
		} `json:"tpm2"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || len(doc.Allowed) != 3 || len(doc.TPM2["sha256"].Branches) != 2 {
		t.Errorf("fleet json: %v %s", err, r.stdout)
	}
	write("d", "console=hvc0", filepath.Join(cfgs, "missing.img"))
	r = pcrsim(t, nil, "policy", "--xl-config", cfgs)
	if r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, "guest d") || !strings.Contains(r.stderr, "no policy written") {
		t.Errorf("a guest that cannot be predicted: exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
}
