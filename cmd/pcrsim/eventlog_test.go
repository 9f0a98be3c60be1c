package main

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-eventlog/register"
	"github.com/google/go-eventlog/tcg"

	"github.com/vtpmboot/vtpmboot/internal/fakekernel"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
)

// firmwareSHA256 replays a real SeaBIOS log with go-eventlog (not our
// parser) and returns its sha256 PCRs.
func firmwareSHA256(t *testing.T, log []byte) map[int][]byte {
	el, err := tcg.ParseEventLog(log, tcg.ParseOpts{AllowPadding: true})
	if err != nil {
		t.Fatal(err)
	}
	pcrs := map[int][]byte{}
	for _, ev := range el.Events(register.HashSHA256) {
		if ev.Type == tcg.NoAction {
			continue
		}
		old := pcrs[ev.Index]
		if old == nil {
			old = make([]byte, 32)
		}
		h := crypto.SHA256.New()
		h.Write(old)
		h.Write(ev.Digest)
		pcrs[ev.Index] = h.Sum(nil)
	}
	return pcrs
}

func sha(b ...[]byte) []byte {
	h := sha256.New()
	for _, x := range b {
		h.Write(x)
	}
	return h.Sum(nil)
}

// guestLogs is a SeaBIOS TPM 2.0 log, the stub's log of a boot on top of
// it (written by pcrsim predict --format eventlog, which the stub's
// console log equals: e2e checks that), and the TPM's sha256 PCRs 0-7 after
// both, computed with go-eventlog and crypto/sha256.
type guestLogs struct {
	dir, fw, stub, kernel, initrd, cmdline, actual string
}

func newGuestLogs(t *testing.T) guestLogs {
	g := guestLogs{dir: t.TempDir(), cmdline: "root=/dev/xvda1 ro quiet"}
	g.fw = filepath.Join(testenv.RepoRoot(), "testdata", "eventlog", "seabios-tpm20.bin")
	fwLog, err := os.ReadFile(g.fw)
	if err != nil {
		t.Fatal(err)
	}
	kernel, initrd := fakekernel.Image([]byte("a kernel")), []byte("an initrd")
	g.kernel, g.initrd = filepath.Join(g.dir, "vmlinuz"), filepath.Join(g.dir, "initrd.img")
	os.WriteFile(g.kernel, kernel, 0o644)
	os.WriteFile(g.initrd, initrd, 0o644)
	pcrs := firmwareSHA256(t, fwLog)
	args := []string{"predict", "--kernel", g.kernel, "--initrd", g.initrd, "--cmdline", g.cmdline,
		"--bank", "sha1,sha256,sha384,sha512", "--eventlog", g.fw, "--format", "eventlog"}
	r := pcrsim(t, nil, args...)
	if r.code != 0 {
		t.Fatalf("predict: %d %s", r.code, r.stderr)
	}
	g.stub = filepath.Join(g.dir, "stub.bin")
	os.WriteFile(g.stub, []byte(r.stdout), 0o644)
	pcrs[4] = sha(pcrs[4], sha(kernel))
	pcrs[5] = sha(sha(pcrs[5], sha([]byte(g.cmdline))), sha(initrd))
	var y strings.Builder
	y.WriteString("sha256:\n")
	for i := 0; i <= 7; i++ {
		v := pcrs[i]
		if v == nil {
			v = make([]byte, 32)
		}
		fmt.Fprintf(&y, "  %d : 0x%X\n", i, v)
	}
	g.actual = filepath.Join(g.dir, "pcrs.yaml")
	os.WriteFile(g.actual, []byte(y.String()), 0o644)
	return g
}

func TestVerifyEventlog(t *testing.T) {
	g := newGuestLogs(t)
	pred := []string{"--kernel", g.kernel, "--initrd", g.initrd, "--cmdline", g.cmdline, "--bank", "sha256"}

	// Firmware log + stub log against the TPM: replays, and the stub's
	// events are the prediction.
	r := pcrsim(t, nil, append([]string{"verify", "--eventlog", g.fw, "--eventlog", g.stub, "--actual", g.actual}, pred...)...)
	if r.code != 0 || !strings.Contains(r.stdout, "replays to every PCR read") || !strings.Contains(r.stdout, "the stub's 3 events are the predicted measurements") {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	// The same logs as one file, as the booted kernel shows them once
	// the stub appended its events: the firmware's bytes, then the stub
	// log's events without its Spec ID header.
	fwb, _ := os.ReadFile(g.fw)
	sb, _ := os.ReadFile(g.stub)
	hdr := 32 + int(sb[28]) | int(sb[29])<<8
	joined := filepath.Join(g.dir, "joined.bin")
	os.WriteFile(joined, append(append([]byte{}, fwb...), sb[hdr:]...), 0o644)
	r = pcrsim(t, nil, append([]string{"verify", "--eventlog", joined, "--actual", g.actual}, pred...)...)
	if r.code != 0 {
		t.Fatalf("joined log: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	// The prediction as pcrsim JSON: its events are compared too (their
	// text rebuilt from kind and source must be the stub's text).
	jr := pcrsim(t, nil, "predict", "--kernel", g.kernel, "--initrd", g.initrd, "--cmdline", g.cmdline, "--bank", "sha256", "--eventlog", g.fw, "--format", "json")
	exp := filepath.Join(g.dir, "expected.json")
	os.WriteFile(exp, []byte(jr.stdout), 0o644)
	r = pcrsim(t, nil, "verify", "--eventlog", joined, "--actual", g.actual, "--expected", exp)
	if r.code != 0 || !strings.Contains(r.stdout, "the stub's 3 events are the predicted measurements") {
		t.Fatalf("--expected JSON: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	// Replay only, no prediction.
	if r = pcrsim(t, nil, "verify", "--eventlog", joined, "--actual", g.actual); r.code != 0 || !strings.Contains(r.stdout, "replays") {
		t.Fatalf("replay only: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}

	// A prediction with another command line: the log still replays,
	// the cmdline event and PCR 5 differ: exit 1, naming the event.
	other := []string{"--kernel", g.kernel, "--initrd", g.initrd, "--cmdline", g.cmdline + " single", "--bank", "sha256"}
	r = pcrsim(t, nil, append([]string{"verify", "--eventlog", joined, "--actual", g.actual}, other...)...)
	if r.code != 1 || !strings.Contains(r.stdout, `EVENT MISMATCH measurement 2 (log event`) || !strings.Contains(r.stdout, `event data: expected "vtpmboot cmdline: root=/dev/xvda1 ro quiet single", log has "vtpmboot cmdline: root=/dev/xvda1 ro quiet"`) {
		t.Fatalf("other cmdline: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}

	// Only the firmware's log: PCR 4 and 5 do not replay (the stub's
	// events are missing): exit 2, one line naming them.
	r = pcrsim(t, nil, append([]string{"verify", "--eventlog", g.fw, "--actual", g.actual}, pred...)...)
	wantOneLine(t, r, "sha256 PCR 4,5")
	// A log from another machine: PCR 0 differs too.
	y, _ := os.ReadFile(g.actual)
	foreign := filepath.Join(g.dir, "foreign.yaml")
	os.WriteFile(foreign, bytes.Replace(y, []byte("  0 : 0x"), []byte("  0 : 0x00"), 1)[:0], 0o644)
	lines := strings.Split(string(y), "\n")
	lines[1] = "  0 : 0x" + strings.Repeat("AB", 32)
	os.WriteFile(foreign, []byte(strings.Join(lines, "\n")), 0o644)
	r = pcrsim(t, nil, "verify", "--eventlog", joined, "--actual", foreign)
	wantOneLine(t, r, "does not replay to sha256 PCR 0")
}

func wantOneLine(t *testing.T, r result, want string) {
	t.Helper()
	if r.code != 2 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, want) {
		t.Errorf("exit %d, stderr %q; want exit 2 and one line containing %q", r.code, r.stderr, want)
	}
}

func TestVerifyEventlogBadInput(t *testing.T) {
	g := newGuestLogs(t)
	fwb, _ := os.ReadFile(g.fw)
	write := func(name string, b []byte) string {
		p := filepath.Join(g.dir, name)
		os.WriteFile(p, b, 0o644)
		return p
	}
	// A Spec ID header whose signature is wrong makes the log read as a
	// SHA-1 log, and its TCG_PCR_EVENT2 records do not walk as SHA-1 ones.
	notSpec := bytes.Clone(fwb)
	copy(notSpec[32:], "Spec ID Event99")
	huge := make([]byte, 17<<20)
	for _, c := range []struct {
		name, path, want string
	}{
		{"truncated", write("trunc.bin", fwb[:len(fwb)-7]), "malformed event log"},
		{"header not Spec ID", write("notspec.bin", notSpec), "malformed event log"},
		{"empty", write("empty.bin", nil), "empty"},
		{"missing", filepath.Join(g.dir, "nope.bin"), "no such file"},
		{"oversized", write("huge.bin", huge), "larger than"},
		{"directory", g.dir, "directory"},
	} {
		r := pcrsim(t, nil, "verify", "--eventlog", c.path, "--actual", g.actual)
		if r.code != 2 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, c.want) || !strings.Contains(r.stderr, "--eventlog") {
			t.Errorf("%s: exit %d, stderr %q; want exit 2, one line, %q", c.name, r.code, r.stderr, c.want)
		}
	}
	// No TPM for --current.
	r := pcrsim(t, nil, "verify", "--current", "--tpm-device", filepath.Join(g.dir, "no-tpm"), "--kernel", g.kernel, "--cmdline", "")
	wantOneLine(t, r, "no TPM")
	if r = pcrsim(t, nil, "verify", "--current", "--actual", g.actual); r.code != 2 {
		t.Errorf("--current with --actual: exit %d", r.code)
	}
}

func TestEventlogExtract(t *testing.T) {
	g := newGuestLogs(t)
	stub, _ := os.ReadFile(g.stub)
	enc := base64.StdEncoding.EncodeToString(stub)
	var console strings.Builder
	// An earlier boot's log, then this boot's, with QEMU's CRs, kernel
	// lines around and xenconsoled-style timestamps on one of them.
	console.WriteString("SeaBIOS (version 1.16.2-debian-1.16.2-1)\r\nvtpmboot: BEGIN EVENTLOG\r\nAAAA\r\nvtpmboot: END EVENTLOG\r\n")
	console.WriteString("[    0.000000] Linux version 6.1.0\r\n[2026-01-02 03:04:05] vtpmboot: BEGIN EVENTLOG\r\n")
	for len(enc) > 76 {
		console.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	console.WriteString(enc + "\r\nvtpmboot: END EVENTLOG\r\nvtpmboot: booting\r\n")
	p := filepath.Join(g.dir, "console.log")
	os.WriteFile(p, []byte(console.String()), 0o644)

	r := pcrsim(t, nil, "eventlog", "extract", "--console", p)
	if r.code != 0 || r.stdout != string(stub) {
		t.Fatalf("extract: exit %d, %d bytes (want %d)\n%s", r.code, len(r.stdout), len(stub), r.stderr)
	}
	// stdin, and --index 0 picks the first log, which is no event log.
	if r = pcrsim(t, []byte(console.String()), "eventlog", "extract"); r.code != 0 || r.stdout != string(stub) {
		t.Fatalf("stdin: exit %d %s", r.code, r.stderr)
	}
	wantOneLine(t, pcrsim(t, nil, "eventlog", "extract", "--console", p, "--index", "0"), "malformed event log")
	wantOneLine(t, pcrsim(t, nil, "eventlog", "extract", "--console", p, "--index", "5"), "holds 2 logs")

	// A line that is not base64 inside the block: refused, naming it.
	bad := strings.Replace(console.String(), enc+"\r\n", enc+"\r\n[  3.1] random: crng init done\r\n", 1)
	wantOneLine(t, pcrsim(t, []byte(bad), "eventlog", "extract"), "not base64")
	wantOneLine(t, pcrsim(t, []byte("no log here\n"), "eventlog", "extract"), "no complete event log")
	wantOneLine(t, pcrsim(t, nil, "eventlog"), "subcommand required")
	wantOneLine(t, pcrsim(t, nil, "eventlog", "dump"), "unknown subcommand")
	if r = pcrsim(t, nil, "eventlog", "extract", "--help"); r.code != 0 || !strings.Contains(r.stdout, "BEGIN") {
		t.Errorf("help: exit %d", r.code)
	}
}
