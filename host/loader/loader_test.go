package loader_test

import (
	"bytes"
	"crypto"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/vtpmboot/vtpmboot/boot/eventlog"
	"github.com/vtpmboot/vtpmboot/internal/contract"
	"github.com/vtpmboot/vtpmboot/internal/fakekernel"
	"github.com/vtpmboot/vtpmboot/internal/guestdisk"
	"github.com/vtpmboot/vtpmboot/internal/swtpmtest"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// The tests run the built loader as libxl runs it (make_bootloader_args in
// Xen 4.17's libxl_bootloader.c): same argv order, an output directory
// made with mode 0600 and a precreated empty output file, as
// libxl__bootloader_run makes them.

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// tool builds a command into a world-readable directory once: the
// picker runs the loader's binary again as an unprivileged uid, which
// must be able to execute it, as it can /usr/lib/xen/bin/... in dom0.
func tool(t *testing.T, name string) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "vtpmboot-loader-test-")
		if buildErr != nil {
			return
		}
		os.Chmod(binDir, 0o755)
		for _, c := range []string{"vtpmboot-loader", "pcrsim"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, c), "github.com/vtpmboot/vtpmboot/cmd/"+c)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("build %s: %v: %s", c, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, name)
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func rnd(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(uint64(n), 18))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// guest is a disk image and what booting it must give.
type guest struct {
	name    string
	disk    guestdisk.Disk
	kernel  []byte
	initrds [][]byte
	// cmdline is the entry's command line, as the stub's tests state it
	// from each format's documentation.
	cmdline string
}

func guests() []guest {
	k := fakekernel.Image(rnd(2<<20 + 7))
	i1, i2 := rnd(1<<20+5), rnd(70001)
	return []guest{{
		// GRUB 2, two initrds: the image is i1, zero padding to 4, i2.
		name: "grub2",
		disk: guestdisk.Disk{Table: "mbr", Partitions: []guestdisk.Partition{{FS: "ext4", SizeMB: 16, Files: []guestdisk.File{
			{Path: "/boot/grub/grub.cfg", Data: []byte("set default=0\nset timeout=5\nmenuentry 'Debian GNU/Linux' --id debian {\n\tlinux /boot/vmlinuz root=/dev/xvda1 ro quiet\n\tinitrd /boot/initrd.img /boot/extra.img\n}\n" +
				"menuentry 'Rescue' --id rescue {\n\tlinux /boot/vmlinuz root=/dev/xvda1 single\n}\n")},
			{Path: "/boot/vmlinuz", Data: k}, {Path: "/boot/initrd.img", Data: i1}, {Path: "/boot/extra.img", Data: i2},
		}}}},
		kernel: k, initrds: [][]byte{i1, i2}, cmdline: "BOOT_IMAGE=/boot/vmlinuz root=/dev/xvda1 ro quiet",
	}, {
		// GRUB legacy, the PV guest's classic menu.lst.
		name: "legacy",
		disk: guestdisk.Disk{Partitions: []guestdisk.Partition{{FS: "ext3", SizeMB: 16, Files: []guestdisk.File{
			{Path: "/boot/grub/menu.lst", Data: []byte("default 0\ntimeout 5\n\ntitle Xen guest\n\troot (hd0,0)\n\tkernel /boot/vmlinuz-2.6 root=/dev/xvda1 ro console=hvc0\n\tinitrd /boot/initrd-2.6.img\n")},
			{Path: "/boot/vmlinuz-2.6", Data: k}, {Path: "/boot/initrd-2.6.img", Data: i1},
		}}}},
		kernel: k, initrds: [][]byte{i1}, cmdline: "root=/dev/xvda1 ro console=hvc0",
	}}
}

func buildDisk(t *testing.T, d guestdisk.Disk) string {
	t.Helper()
	testenv.NeedCommands(t, "mkfs.ext4", "sfdisk", "debugfs")
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := guestdisk.Build(d, img); err != nil {
		t.Fatal(err)
	}
	return img
}

// xl is one libxl-style invocation's directory.
type xl struct {
	dir, out, outdir string
	domid            int
}

func newXL(t *testing.T, domid int) *xl {
	t.Helper()
	x := &xl{dir: t.TempDir(), domid: domid}
	x.outdir = filepath.Join(x.dir, fmt.Sprintf("bootloader.%d.d", domid))
	x.out = filepath.Join(x.dir, fmt.Sprintf("bootloader.%d.out", domid))
	if err := os.Mkdir(x.outdir, 0o600); err != nil { // libxl's mode
		t.Fatal(err)
	}
	if err := os.WriteFile(x.out, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return x
}

type run struct {
	code           int
	stdout, stderr string
	output         []byte
}

// argv builds libxl's argument list: --args first when set, then
// --runas and --quiet, then the output arguments, bootloader_args, disk.
func (x *xl) argv(extra string, runas int, blArgs []string, disk string) []string {
	var a []string
	if extra != "" {
		a = append(a, "--args="+extra)
	}
	if runas > 0 {
		a = append(a, fmt.Sprintf("--runas=%d", runas), "--quiet")
	}
	a = append(a, "--output="+x.out, "--output-format=simple0", "--output-directory="+x.outdir)
	a = append(a, blArgs...)
	return append(a, disk)
}

func (x *xl) run(t *testing.T, argv []string) run {
	t.Helper()
	cmd := exec.Command(tool(t, "vtpmboot-loader"), argv...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	r := run{stdout: so.String(), stderr: se.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	r.output, _ = os.ReadFile(x.out)
	return r
}

// parseSimple0 parses the output file as libxl's parse_bootloader_result
// does: NUL-terminated items "kernel PATH", "ramdisk PATH", "args ...".
func parseSimple0(t *testing.T, b []byte) map[string]string {
	t.Helper()
	m := map[string]string{}
	if len(b) == 0 || b[len(b)-1] != 0 {
		t.Fatalf("output %q does not end in NUL", b)
	}
	for _, item := range strings.Split(string(b[:len(b)-1]), "\x00") {
		k, v, ok := strings.Cut(item, " ")
		if !ok {
			t.Fatalf("output item %q has no space", item)
		}
		if _, dup := m[k]; dup {
			t.Fatalf("output item %q twice", k)
		}
		m[k] = strings.TrimLeft(v, " \t\n\v\f\r")
	}
	return m
}

// socketDir makes DIR/UUID.sock and DIR/UUID.ctrl point at the swtpm.
func socketDir(t *testing.T, in *swtpmtest.Instance, uuid string) string {
	t.Helper()
	// Short: a Unix socket path has room for 107 bytes.
	dir, err := os.MkdirTemp("", "vs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Symlink(in.ServerSock, filepath.Join(dir, uuid+".sock")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(in.CtrlSock, filepath.Join(dir, uuid+".ctrl")); err != nil {
		t.Fatal(err)
	}
	return dir
}

const uuid = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"

func bankName(a pcrbank.Alg) string { return strings.ToLower(a.String()) }

// checkPCRs reads PCRs 4 and 5 of the swtpm in every bank and compares
// them with the contract oracle.
func checkPCRs(t *testing.T, in *swtpmtest.Instance, b contract.Boot) map[string]map[string]string {
	t.Helper()
	tg := in.Open()
	defer tg.Close()
	banks, err := tg.Banks()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]map[string]string{}
	for _, a := range banks {
		h := contract.Hash(bankName(a))
		got[bankName(a)] = map[string]string{}
		for pcr, want := range map[int][]byte{4: b.PCR4(h, nil), 5: b.PCR5(h, nil)} {
			v, err := tg.ReadPCR(pcr, a)
			if err != nil {
				t.Fatal(err)
			}
			got[bankName(a)][fmt.Sprint(pcr)] = hex.EncodeToString(v)
			if !bytes.Equal(v, want) {
				t.Errorf("PCR %d %s = %x, want %x (contract)", pcr, bankName(a), v, want)
			}
		}
	}
	return got
}

// TestLoaderMeasures boots each guest disk through the loader as libxl
// would, into a TPM 2.0 and a TPM 1.2: the answer names files holding
// exactly the chosen bytes, the command line is the entry's plus xl's
// --args, the swtpm's PCRs are the contract's, pcrsim predicts the same
// from the disk, and the event log copy is kept.
func TestLoaderMeasures(t *testing.T) {
	for _, g := range guests() {
		img := buildDisk(t, g.disk)
		for _, v := range []pcrbank.Version{pcrbank.Version20, pcrbank.Version12} {
			for i, extra := range []string{"", "console=hvc0 xen_blkfront.max=64"} {
				// Short names: swtpm's sockets are in the test's
				// temporary directory, and a socket path has 107 bytes.
				t.Run(fmt.Sprintf("%s/%d/%d", g.name, v, i), func(t *testing.T) {
					in := swtpmtest.Start(t, v)
					x := newXL(t, 7)
					state := t.TempDir()
					r := x.run(t, x.argv(extra, 0, []string{"--vtpm-uuid=" + uuid, "--vtpm-socket-dir=" + socketDir(t, in, uuid), "--state-dir=" + state}, img))
					if r.code != 0 {
						t.Fatalf("exit %d: %s%s", r.code, r.stdout, r.stderr)
					}
					out := parseSimple0(t, r.output)
					want := g.cmdline
					if extra != "" {
						want += " " + extra
					}
					if out["args"] != want {
						t.Errorf("args %q, want %q", out["args"], want)
					}
					k, err := os.ReadFile(out["kernel"])
					if err != nil || !bytes.Equal(k, g.kernel) {
						t.Errorf("kernel file %s: %d bytes, err %v; want the disk's %d bytes", out["kernel"], len(k), err, len(g.kernel))
					}
					rd, err := os.ReadFile(out["ramdisk"])
					if err != nil || !bytes.Equal(rd, contract.InitrdImage(g.initrds...)) {
						t.Errorf("ramdisk file %s: %d bytes, err %v; want the %d-byte initrd image", out["ramdisk"], len(rd), err, len(contract.InitrdImage(g.initrds...)))
					}
					for _, p := range []string{out["kernel"], out["ramdisk"]} {
						if filepath.Dir(p) != x.outdir {
							t.Errorf("%s is not in the output directory %s", p, x.outdir)
						}
						if st, err := os.Stat(p); err == nil && st.Mode().Perm() != 0o600 {
							t.Errorf("%s: mode %v, want 0600", p, st.Mode().Perm())
						}
					}
					got := checkPCRs(t, in, contract.Boot{Kernel: g.kernel, Initrds: g.initrds, Cmdline: want})
					if extra == "" {
						checkPcrsim(t, img, got)
					}
					checkLog(t, filepath.Join(state, uuid+".log"), got)
					// A second boot on the same un-reset vTPM is refused,
					// not measured on top of the first.
					x2 := newXL(t, 8)
					r = x2.run(t, x2.argv(extra, 0, []string{"--vtpm-uuid=" + uuid, "--vtpm-socket-dir=" + socketDir(t, in, uuid), "--state-dir="}, img))
					checkRefusal(t, x2, r, "is not zero")
				})
			}
		}
	}
}

// checkLog replays the kept event log into a software bank: it must give
// the swtpm's PCRs.
func checkLog(t *testing.T, path string, got map[string]map[string]string) {
	t.Helper()
	l, err := eventlog.ReadFile(path)
	if err != nil {
		t.Fatalf("event log copy: %v", err)
	}
	var banks []pcrbank.Alg
	for b := range got {
		a, err := pcrbank.ParseAlg(b)
		if err != nil {
			t.Fatal(err)
		}
		banks = append(banks, a)
	}
	soft, err := pcrbank.NewSoft(banks)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Replay(soft); err != nil {
		t.Fatalf("replay %s: %v", path, err)
	}
	for _, a := range banks {
		for _, pcr := range []int{4, 5} {
			v, _ := soft.ReadPCR(pcr, a)
			if hex.EncodeToString(v) != got[bankName(a)][fmt.Sprint(pcr)] {
				t.Errorf("event log replays PCR %d %v to %x, the swtpm has %s", pcr, a, v, got[bankName(a)][fmt.Sprint(pcr)])
			}
		}
	}
}

// checkPcrsim compares the swtpm's PCRs with pcrsim's prediction from the
// same disk image.
func checkPcrsim(t *testing.T, img string, got map[string]map[string]string) {
	t.Helper()
	var banks []string
	for b := range got {
		banks = append(banks, b)
	}
	out, err := exec.Command(tool(t, "pcrsim"), "predict", "--disk", img, "--bank", strings.Join(banks, ","), "--format", "json").Output()
	if err != nil {
		t.Fatalf("pcrsim: %v", err)
	}
	var doc struct {
		Banks map[string]map[string]string `json:"banks"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("pcrsim json: %v: %s", err, out)
	}
	for b, pcrs := range got {
		for pcr, v := range pcrs {
			if p := strings.TrimPrefix(doc.Banks[b][pcr], "0x"); p != v {
				t.Errorf("pcrsim predicts PCR %s %s = %s, the swtpm has %s", pcr, b, p, v)
			}
		}
	}
}

// checkRefusal: a refusal is one line on stderr, a non-zero exit, an
// output file libxl finds empty and an output directory left empty.
func checkRefusal(t *testing.T, x *xl, r run, want string) {
	t.Helper()
	if r.code == 0 {
		t.Fatalf("exit 0, want a refusal (%q); stdout %s", want, r.stdout)
	}
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], want) || !strings.HasPrefix(lines[0], "vtpmboot-loader: refused: ") {
		t.Errorf("stderr %q: want one refusal line containing %q", r.stderr, want)
	}
	if len(r.output) != 0 {
		t.Errorf("output file holds %q after a refusal", r.output)
	}
	if ents, _ := os.ReadDir(x.outdir); len(ents) != 0 {
		t.Errorf("output directory holds %d files after a refusal", len(ents))
	}
}

// TestLoaderRefuses: every refusal ends in one line and no output.
func TestLoaderRefuses(t *testing.T) {
	g := guests()[0]
	img := buildDisk(t, g.disk)
	zeros := filepath.Join(t.TempDir(), "zeros.img")
	os.WriteFile(zeros, make([]byte, 4<<20), 0o644)
	in := swtpmtest.Start(t, pcrbank.Version20)
	sd := socketDir(t, in, uuid)
	vt := []string{"--vtpm-uuid=" + uuid, "--vtpm-socket-dir=" + sd, "--state-dir="}
	for _, c := range []struct {
		name, extra string
		bl          []string
		disk, want  string
	}{
		{"no vTPM, required", "", nil, img, "no vTPM"},
		{"no vTPM, required explicitly", "", []string{"vtpmboot.tpm=required"}, img, "no vTPM"},
		{"vTPM socket missing", "", []string{"--vtpm-uuid=" + uuid, "--vtpm-socket-dir=" + t.TempDir()}, img, "no vTPM"},
		{"unreadable disk", "", vt, filepath.Join(t.TempDir(), "missing.img"), "no such file"},
		{"disk without a filesystem", "", vt, zeros, "zeros.img"},
		{"no such entry", "", append([]string{"vtpmboot.entry=Nonesuch"}, vt...), img, "Nonesuch"},
		{"no such disk", "", append([]string{"vtpmboot.disk=xvdb1"}, vt...), img, "vtpmboot.disk=xvdb1"},
		{"option in extra", "root=/dev/xvda1 vtpmboot.entry=1", vt, img, "bootloader_args"},
		{"unknown flag", "", append([]string{"--frobnicate"}, vt...), img, "unknown option --frobnicate"},
		{"pygrub's --entry", "", append([]string{"--entry=1"}, vt...), img, "vtpmboot.entry=1"},
		{"bad uuid", "", []string{"--vtpm-uuid=../../etc/passwd", "--vtpm-socket-dir=" + sd}, img, "not a UUID"},
		{"bad tpm policy", "", append([]string{"vtpmboot.tpm=maybe"}, vt...), img, "vtpmboot.tpm"},
		{"command line too long for PV", strings.Repeat("x", 1000), vt, img, "at most 1023"},
	} {
		t.Run(c.name, func(t *testing.T) {
			x := newXL(t, 9)
			checkRefusal(t, x, x.run(t, x.argv(c.extra, 0, c.bl, c.disk)), c.want)
		})
	}
	// Nothing reached the vTPM.
	tg := in.Open()
	v, err := tg.ReadPCR(4, pcrbank.SHA256)
	if err != nil || !bytes.Equal(v, make([]byte, 32)) {
		t.Errorf("PCR 4 after refusals: %x, %v", v, err)
	}
	tg.Close()
}

// TestLoaderOptional: vtpmboot.tpm=optional with no vTPM boots unmeasured,
// saying so; the answer is still the chosen entry.
func TestLoaderOptional(t *testing.T) {
	g := guests()[1]
	img := buildDisk(t, g.disk)
	x := newXL(t, 3)
	r := x.run(t, x.argv("", 0, []string{"vtpmboot.tpm=optional"}, img))
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stdout, "UNMEASURED") {
		t.Errorf("stdout does not say the boot is unmeasured: %s", r.stdout)
	}
	if out := parseSimple0(t, r.output); out["args"] != g.cmdline {
		t.Errorf("args %q, want %q", out["args"], g.cmdline)
	}
}

var _ = crypto.SHA256

// freeUID finds a uid no user has, in the range libxl's restricted mode
// uses when xen-qemuuser-range-base exists (Debian creates no such user,
// so a uid without a passwd entry is what the test can rely on).
func freeUID(t *testing.T) int {
	t.Helper()
	for uid := 131072 + os.Getpid()%1000; uid < 140000; uid++ {
		if _, err := user.LookupId(fmt.Sprint(uid)); err != nil {
			return uid
		}
	}
	t.Fatal("no free uid")
	return 0
}

// TestLoaderRestricted runs libxl's restricted mode (--runas=UID --quiet)
// as root with a uid no user has: the picker reports that uid and no
// capabilities, it reads a disk only root may open (through the parent's
// read-only fd), and the measurement is the unrestricted one's.
func TestLoaderRestricted(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("restricted mode needs root, as libxl runs it (setuid to the --runas uid)")
	}
	g := guests()[0]
	img := buildDisk(t, g.disk)
	if err := os.Chmod(img, 0o600); err != nil {
		t.Fatal(err)
	}
	// The uid must reach the image's directory neither by path: its
	// parents are 0700 test directories.
	in := swtpmtest.Start(t, pcrbank.Version20)
	uid := freeUID(t)
	x := newXL(t, 11)
	r := x.run(t, x.argv("", uid, []string{"--vtpm-uuid=" + uuid, "--vtpm-socket-dir=" + socketDir(t, in, uuid), "--state-dir="}, img))
	if r.code != 0 {
		t.Fatalf("exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	if want := fmt.Sprintf("disk read by uid %d, capabilities 0000000000000000, data limit 1024 MiB, CPU limit 60 s", uid); !strings.Contains(r.stdout, want) {
		t.Errorf("stdout lacks %q: %s", want, r.stdout)
	}
	out := parseSimple0(t, r.output)
	if out["args"] != g.cmdline {
		t.Errorf("args %q, want %q", out["args"], g.cmdline)
	}
	checkPCRs(t, in, contract.Boot{Kernel: g.kernel, Initrds: g.initrds, Cmdline: g.cmdline})

	// The picker cannot open the image by its path as that uid: only the
	// parent's fd reaches it.
	cmd := exec.Command("head", "-c1", img)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	if b, err := cmd.CombinedOutput(); err == nil || !strings.Contains(strings.ToLower(string(b)), "permission denied") {
		t.Errorf("as uid %d, opening %s by path: %v: %s; want permission denied", uid, img, err, b)
	}
}
