package e2e

import (
	"bytes"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	tpm12 "github.com/google/go-tpm/tpm"

	"github.com/vtpmboot/vtpmboot/internal/guestdisk"
	"github.com/vtpmboot/vtpmboot/internal/qemutest"
	"github.com/vtpmboot/vtpmboot/internal/swtpmtest"
	"github.com/vtpmboot/vtpmboot/internal/target/report"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// TestSeal is predict → seal → boot → unseal (docs/sealing.md), under TPM
// 2.0 and TPM 1.2, three boots each:
//
//  1. a reference boot of the guest, whose firmware event log (replayed by
//     go-eventlog and tpm2_eventlog) gives what SeaBIOS puts in PCRs 4
//     and 5 before the stub: deterministic for this QEMU and SeaBIOS, so
//     a seal before the next boot can use it;
//  2. on the host, before the next boot, a secret is sealed into the
//     guest's own swtpm state to the policy pcrsim computes from the disk
//     image with those starting values (TPM 2.0: tpm2-tools, tpm2_create
//     -L; TPM 1.2: go-tpm's Reseal, checked against pcrsim's composite);
//     the expected digests come from tpm2_createpolicy over values the
//     test computes itself, and from the TPM 1.2 structure written out
//     here;
//  3. the guest boots through the stub and its target initrd unseals the
//     secret from inside and prints it; the same disk with one byte of the
//     kernel changed boots too, and the TPM refuses to unseal.
func TestSeal(t *testing.T) {
	t.Parallel()
	p := needParts(t)
	testenv.NeedCommands(t, "swtpm_setup", "tpm2_createprimary", "tpm2_create", "tpm2_load", "tpm2_evictcontrol",
		"tpm2_createpolicy", "tpm2_shutdown", "tpm2_flushcontext")
	for _, v := range []pcrbank.Version{pcrbank.Version20, pcrbank.Version12} {
		v := v
		t.Run(map[pcrbank.Version]string{pcrbank.Version20: "tpm20", pcrbank.Version12: "tpm12"}[v], func(t *testing.T) {
			t.Parallel()
			sealCase(t, p, v)
		})
	}
}

func sealCase(t *testing.T, p *Parts, v pcrbank.Version) {
	bank := pcrbank.SHA256
	if v == pcrbank.Version12 {
		bank = pcrbank.SHA1
	}
	tag := map[pcrbank.Version]string{pcrbank.Version20: "20", pcrbank.Version12: "12"}[v]
	// no_timer_check: on a host loaded far past its cores, the kexec'd
	// kernel's IO-APIC timer check can fail under TCG and panic ("IO-APIC
	// + timer doesn't work"), which says nothing about sealing.
	opts := "console=ttyS0 panic=-1 quiet no_timer_check " + report.UnsealFlag + " e2e.case=seal-" + tag
	cmdline := "BOOT_IMAGE=/boot/vmlinuz " + opts // GRUB 2 prepends BOOT_IMAGE (docs/config-grub2.md)
	disk := func(kernel string) guestdisk.Disk {
		return guestdisk.Disk{Table: "mbr", Partitions: []guestdisk.Partition{{FS: "ext4", SizeMB: 64, Files: []guestdisk.File{
			{Path: "/boot/grub/grub.cfg", Data: []byte("set timeout=5\nmenuentry 'vtpmboot e2e: sealed' {\n\tlinux /boot/vmlinuz " + opts + "\n\tinitrd /boot/target.img\n}\n")},
			{Path: "/boot/vmlinuz", Source: kernel}, {Path: "/boot/target.img", Source: p.Target},
		}}}}
	}
	// The tampered kernel differs in its last byte, inside the signature
	// Debian appends: the kernel still boots (kexec_file_load does not
	// enforce signatures here), only its measurement changes.
	kb, err := os.ReadFile(p.Kernel)
	if err != nil {
		t.Fatal(err)
	}
	kb[len(kb)-1] ^= 0xff
	tampered := filepath.Join(t.TempDir(), "vmlinuz-tampered")
	if err := os.WriteFile(tampered, kb, 0o644); err != nil {
		t.Fatal(err)
	}
	good, goodSum := buildDisk(t, disk(p.Kernel))
	bad, badSum := buildDisk(t, disk(tampered))

	// One TPM state for everything, as the guest has one vTPM: TPM 1.2
	// needs an owner for TPM_Seal's SRK.
	base := t.TempDir()
	if v == pcrbank.Version12 {
		own12(t, base)
	}

	// 1. The reference boot: nothing is sealed yet.
	ref := copyState(t, base)
	r, fw := sealBoot(t, p, good, ref, v)
	checkDiskUnchanged(t, good, goodSum)
	if _, ok := r.Extra[report.ExtraUnsealError]; !ok {
		t.Errorf("reference boot unsealed %q with nothing sealed", r.Extra[report.ExtraUnsealed])
	}
	init4, init5 := fw.Value(bank, 4), fw.Value(bank, 5)
	want4, want5 := expectPCRs(t, bank, init4, init5, p.Kernel, []string{p.Target}, cmdline)
	if !bytes.Equal(r.PCRs[bank][4], want4) || !bytes.Equal(r.PCRs[bank][5], want5) {
		t.Fatalf("reference boot %v PCR 4/5 %x %x, crypto/sha computes %x %x", bank, r.PCRs[bank][4], r.PCRs[bank][5], want4, want5)
	}
	t.Logf("firmware starting values (%s): %v PCR 4 %x, PCR 5 %x", fw.By[bank], bank, init4, init5)

	// 2. Seal on the host, into the guest's TPM state, before its next boot.
	secret := []byte(fmt.Sprintf("vtpmboot e2e secret for TPM %v\n", v))
	policyArgs := []string{"policy", "--disk", good, "--bank", bank.String(),
		"--pcr-init", fmt.Sprintf("4:%v=%x", bank, init4), "--pcr-init", fmt.Sprintf("5:%v=%x", bank, init5)}
	sealed := copyState(t, base)
	if v == pcrbank.Version20 {
		seal20(t, p, sealed, policyArgs, want4, want5, secret)
	} else {
		seal12(t, p, sealed, policyArgs, want4, want5, secret)
	}

	// 3. Boot the guest, and the tampered one, each on a copy of the
	// sealed state.
	for _, c := range []struct {
		name string
		disk string
		sum  [32]byte
	}{{"good", good, goodSum}, {"tampered-kernel", bad, badSum}} {
		c := c
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r, rp := sealBoot(t, p, c.disk, copyState(t, sealed), v)
			checkDiskUnchanged(t, c.disk, c.sum)
			if !bytes.Equal(rp.Value(bank, 4), init4) || !bytes.Equal(rp.Value(bank, 5), init5) {
				t.Errorf("firmware PCR 4/5 differ from the reference boot's: %x %x, were %x %x (the seal assumed them)",
					rp.Value(bank, 4), rp.Value(bank, 5), init4, init5)
			}
			if c.name == "good" {
				if !bytes.Equal(r.PCRs[bank][4], want4) || !bytes.Equal(r.PCRs[bank][5], want5) {
					t.Errorf("%v PCR 4/5 %x %x, want %x %x", bank, r.PCRs[bank][4], r.PCRs[bank][5], want4, want5)
				}
				got, ok := r.Extra[report.ExtraUnsealed]
				if !ok || got != string(secret) {
					t.Fatalf("the booted guest could not unseal: %q (got %q)", r.Extra[report.ExtraUnsealError], got)
				}
				t.Logf("the guest unsealed %q", got)
				return
			}
			bad4, _ := expectPCRs(t, bank, init4, init5, tampered, []string{p.Target}, cmdline)
			if !bytes.Equal(r.PCRs[bank][4], bad4) || !bytes.Equal(r.PCRs[bank][5], want5) {
				t.Errorf("tampered boot %v PCR 4/5 %x %x, want %x (the tampered kernel) %x", bank, r.PCRs[bank][4], r.PCRs[bank][5], bad4, want5)
			}
			refusal := map[pcrbank.Version]string{
				pcrbank.Version20: "TPM_RC_POLICY_FAIL",
				pcrbank.Version12: "the named PCR value does not match the current PCR value", // TPM_WRONGPCRVAL
			}[v]
			got, unsealed := r.Extra[report.ExtraUnsealed]
			if unsealed || !strings.Contains(r.Extra[report.ExtraUnsealError], refusal) {
				t.Fatalf("tampered kernel: unsealed %q, error %q; want the TPM's refusal %q", got, r.Extra[report.ExtraUnsealError], refusal)
			}
			t.Logf("tampered kernel: the TPM refused: %s", r.Extra[report.ExtraUnsealError])
		})
	}
}

// sealBoot boots the guest and returns the target's report and the
// firmware's part of its event log, replayed by go-eventlog and
// tpm2_eventlog: the log the booted kernel shows is SeaBIOS's followed by
// the stub's three events (appended to the ACPI log area), which are split
// off first.
func sealBoot(t *testing.T, p *Parts, disk, state string, v pcrbank.Version) (*qemutest.TargetReport, *Replay) {
	t.Helper()
	res := boot(t, qemutest.Options{Kernel: p.Kernel, Initrd: p.Stub, Append: StubAppend("quiet"),
		Disks: []qemutest.Disk{{Path: disk}}, TPM: v, TPMStateDir: state})
	if f := FatalLines(res.Console); len(f) > 0 || res.ExitErr != nil {
		t.Fatalf("stub failed (QEMU exit %v): %q\n%s", res.ExitErr, f, res.Tail(6000))
	}
	r, err := qemutest.ParseTarget(res.Console)
	if err != nil {
		t.Fatalf("no target report: %v\n%s", err, res.Tail(6000))
	}
	if len(r.Errors) > 0 {
		t.Errorf("target reported errors: %q", r.Errors)
	}
	stubLog, err := StubEventLog(res.Console)
	if err != nil {
		t.Fatal(err)
	}
	fwLog, err := SplitAppended(r.EventLog, stubLog, v)
	if err != nil {
		t.Fatal(err)
	}
	fw, err := ReplayFirmware(fwLog)
	if err != nil {
		t.Fatalf("replaying the firmware's part of the event log: %v", err)
	}
	return r, fw
}

// seal20 seals with tpm2-tools over the swtpm socket: a persistent
// primary, then tpm2_create -L with pcrsim's policy digest, the object
// made persistent where targetinit looks for it.
func seal20(t *testing.T, p *Parts, state string, policyArgs []string, want4, want5, secret []byte) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.digest")
	out, err := pcrsimRun(p, append(policyArgs, "--format", "tpm2-policy")...)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(pol, out, 0o644)
	tpm := swtpmtest.StartTCPWithState(t, pcrbank.Version20, state)
	tcti := tpm.TCTI()
	tool := func(args ...string) {
		t.Helper()
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = append(os.Environ(), "TPM2TOOLS_TCTI="+tcti)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%q: %v\n%s", args, err, b)
		}
		// No resource manager: free the TPM's object slots between tools.
		f := exec.Command("tpm2_flushcontext", "-t")
		f.Env = cmd.Env
		f.Run()
	}
	// The independent expectation: tpm2_createpolicy over the values this
	// test computed.
	own, exp := filepath.Join(dir, "own.pcrvalues"), filepath.Join(dir, "expected.digest")
	os.WriteFile(own, append(append([]byte{}, want4...), want5...), 0o644)
	tool("tpm2_createpolicy", "--policy-pcr", "-l", "sha256:4,5", "-f", own, "-L", exp)
	if e, _ := os.ReadFile(exp); !bytes.Equal(e, out) {
		t.Fatalf("pcrsim policy digest %x, tpm2_createpolicy %x", out, e)
	}
	t.Logf("policy digest %x (= tpm2_createpolicy)", out)
	prim, pub, priv, obj, sec := filepath.Join(dir, "prim.ctx"), filepath.Join(dir, "seal.pub"), filepath.Join(dir, "seal.priv"), filepath.Join(dir, "seal.ctx"), filepath.Join(dir, "secret")
	os.WriteFile(sec, secret, 0o600)
	tool("tpm2_createprimary", "-C", "o", "-G", "ecc", "-c", prim)
	tool("tpm2_evictcontrol", "-C", "o", "-c", prim, fmt.Sprintf("%#x", report.SealedPrimary2))
	// No userwithauth: only the policy can release it.
	tool("tpm2_create", "-C", fmt.Sprintf("%#x", report.SealedPrimary2), "-L", pol, "-a", "fixedtpm|fixedparent", "-i", sec, "-u", pub, "-r", priv)
	tool("tpm2_load", "-C", fmt.Sprintf("%#x", report.SealedPrimary2), "-u", pub, "-r", priv, "-c", obj)
	tool("tpm2_evictcontrol", "-C", "o", "-c", obj, fmt.Sprintf("%#x", report.SealedObject2))
	tool("tpm2_shutdown", "-c")
	tpm.Kill()
}

// seal12 seals with go-tpm's TPM 1.2 package to the PCR values pcrsim
// predicts, checks the sealed blob's digestAtRelease against pcrsim's
// composite and against the structure written out here, and leaves the
// blob in NV for targetinit.
func seal12(t *testing.T, p *Parts, state string, policyArgs []string, want4, want5, secret []byte) {
	out, err := pcrsimRun(p, append(policyArgs, "--format", "json")...)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		TPM12 struct {
			Composites []struct {
				DigestAtRelease string            `json:"digest_at_release"`
				Values          map[string]string `json:"values"`
			} `json:"composites"`
		} `json:"tpm12"`
	}
	if err := json.Unmarshal(out, &doc); err != nil || len(doc.TPM12.Composites) != 1 {
		t.Fatalf("pcrsim policy json: %v\n%s", err, out)
	}
	c := doc.TPM12.Composites[0]
	composite, _ := hex.DecodeString(c.DigestAtRelease)
	// TPM 1.2 Part 2: TPM_PCR_COMPOSITE = TPM_PCR_SELECTION (UINT16 3,
	// 0x30 0x00 0x00), UINT32 valueSize, values; its SHA-1.
	var b []byte
	b = binary.BigEndian.AppendUint16(b, 3)
	b = append(b, 0x30, 0, 0)
	b = binary.BigEndian.AppendUint32(b, 40)
	b = append(append(b, want4...), want5...)
	if w := sha1.Sum(b); !bytes.Equal(composite, w[:]) {
		t.Fatalf("pcrsim composite %x, the structure gives %x", composite, w)
	}
	v4, _ := hex.DecodeString(c.Values["4"])
	v5, _ := hex.DecodeString(c.Values["5"])

	tpm := swtpmtest.StartWithState(t, pcrbank.Version12, state)
	rw, err := tpm12.OpenTPM(tpm.ServerSock)
	if err != nil {
		t.Fatal(err)
	}
	srkAuth := make([]byte, 20) // own12's well-known SRK secret
	// go-tpm v0.9.8's Reseal appends the values in Go map order, so with
	// two PCRs it seals to the wrong composite about half the time: seal
	// until the blob carries pcrsim's digestAtRelease (its bytes 42-62:
	// TPM_STORED_DATA12 tag, et, sealInfoSize, then TPM_PCR_INFO_LONG's
	// tag, two localities, two 5-byte selections, digestAtCreation).
	var blob []byte
	for try := 0; ; try++ {
		blob, err = tpm12.Reseal(rw, tpm12.LocZero, map[int][]byte{4: v4, 5: v5}, secret, srkAuth)
		if err != nil {
			t.Fatalf("TPM_Seal: %v", err)
		}
		if len(blob) < 62 {
			t.Fatalf("sealed blob of %d bytes", len(blob))
		}
		if bytes.Equal(blob[42:62], composite) {
			t.Logf("sealed (try %d): digestAtRelease %x = pcrsim's composite; digestAtCreation %x", try+1, blob[42:62], blob[22:42])
			break
		}
		if try == 31 {
			t.Fatalf("go-tpm never sealed to digestAtRelease %x (last %x)", composite, blob[42:62])
		}
	}
	nv := binary.BigEndian.AppendUint16(nil, uint16(len(blob)))
	nv = append(nv, blob...)
	nvDefine12(t, rw, report.SealedNV12, len(nv))
	// TPM_NV_WriteValue without authorization (the NV is unlocked): index,
	// offset, size, data. go-tpm v0.9.8's NVWriteValue sends a wrong
	// paramSize without auth and fails to marshal its owner-auth form.
	w := binary.BigEndian.AppendUint32(nil, report.SealedNV12)
	w = binary.BigEndian.AppendUint32(w, 0)
	w = binary.BigEndian.AppendUint32(w, uint32(len(nv)))
	tpm12Raw(t, rw, "TPM_NV_WriteValue", 0x000000CD, append(w, nv...))
	if got, err := tpm12.NVReadValue(rw, report.SealedNV12, 0, uint32(len(nv)), nil); err != nil || !bytes.Equal(got, nv) {
		t.Fatalf("NV read back: %v", err)
	}
	rw.Close()
	tpm.Kill()
}

// own12 makes a TPM 1.2 state with an owner: swtpm_setup enables and
// activates the TPM and creates its EK, go-tpm takes ownership with the
// well-known (all-zero) owner and SRK secrets. (swtpm_setup 0.7.1's own
// --take-ownership --srk-well-known left an SRK whose zero secret go-tpm's
// TPM_Seal failed to authorize, TPM_AUTHFAIL.)
func own12(t *testing.T, state string) {
	t.Helper()
	if out, err := exec.Command("swtpm_setup", "--tpm-state", state, "--createek", "--overwrite").CombinedOutput(); err != nil {
		t.Fatalf("swtpm_setup: %v\n%s", err, out)
	}
	tpm := swtpmtest.StartWithState(t, pcrbank.Version12, state)
	rw, err := tpm12.OpenTPM(tpm.ServerSock)
	if err != nil {
		t.Fatal(err)
	}
	ek, err := tpm12.ReadPubEK(rw)
	if err != nil {
		t.Fatalf("read EK: %v", err)
	}
	var zero tpm12.Digest
	if err := tpm12.TakeOwnership(rw, zero, zero, ek); err != nil {
		t.Fatalf("take ownership: %v", err)
	}
	rw.Close()
	tpm.Kill()
}

// nvDefine12 defines an NV index anyone may read and the owner may write
// (TPM_NV_PER_OWNERWRITE: the TPM refuses an area with no write
// protection, TPM_PER_NOWRITE). With the NV unlocked (swtpm_setup without
// --lock-nvram) TPM_NV_DefineSpace itself needs no authorization (TPM 1.2
// Part 3, 20.1). go-tpm cannot build the request from outside its package
// (TPM_NV_ATTRIBUTES is unexported), so it is written here:
// TPM_NV_DATA_PUBLIC (tag 0x18, index, two TPM_PCR_INFO_SHORT with no
// PCRs, TPM_NV_ATTRIBUTES tag 0x17, three flags, size) and a zero encAuth.
func nvDefine12(t *testing.T, rw io.ReadWriter, index uint32, size int) {
	t.Helper()
	noPCRs := append([]byte{0, 3, 0, 0, 0, 0x1f}, make([]byte, 20)...)
	var pub []byte
	pub = binary.BigEndian.AppendUint16(pub, 0x0018)
	pub = binary.BigEndian.AppendUint32(pub, index)
	pub = append(append(pub, noPCRs...), noPCRs...)
	pub = binary.BigEndian.AppendUint16(pub, 0x0017)
	pub = binary.BigEndian.AppendUint32(pub, 0x00000002) // TPM_NV_PER_OWNERWRITE
	pub = append(pub, 0, 0, 0)
	pub = binary.BigEndian.AppendUint32(pub, uint32(size))
	tpm12Raw(t, rw, "TPM_NV_DefineSpace", 0x000000CC, append(pub, make([]byte, 20)...))
}

// tpm12Raw sends one unauthorized TPM 1.2 command (tag TPM_TAG_RQU_COMMAND)
// and fails the test unless it returns TPM_SUCCESS.
func tpm12Raw(t *testing.T, rw io.ReadWriter, name string, ord uint32, body []byte) {
	t.Helper()
	cmd := binary.BigEndian.AppendUint16(nil, 0x00C1)
	cmd = binary.BigEndian.AppendUint32(cmd, uint32(10+len(body)))
	cmd = binary.BigEndian.AppendUint32(cmd, ord)
	cmd = append(cmd, body...)
	if _, err := rw.Write(cmd); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	rsp := make([]byte, 10)
	if _, err := io.ReadFull(rw, rsp); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if n := binary.BigEndian.Uint32(rsp[2:]); n > 10 {
		io.CopyN(io.Discard, rw, int64(n-10))
	}
	if rc := binary.BigEndian.Uint32(rsp[6:]); rc != 0 {
		t.Fatalf("%s: return code %#x", name, rc)
	}
}

// copyState copies a TPM state directory so every boot gets its own.
func copyState(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func pcrsimRun(p *Parts, args ...string) ([]byte, error) {
	var stderr bytes.Buffer
	cmd := exec.Command(p.Pcrsim, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("pcrsim %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}
