// Command demo is `make demo` (scripts/demo.sh): it builds the stub with
// mkstub from Debian's kernel, makes a guest disk with a two-entry
// grub.cfg, predicts the guest's PCRs with pcrsim, boots the disk under
// QEMU with an swtpm TPM 2.0, and compares what the booted guest read from
// its TPM with pcrsim's prediction, bank by bank. Exit 0 on MATCH, 1 on
// MISMATCH, 2 when something could not run.
//
// With -bench it is bench/stub.sh instead: the same build and boot (the
// console without `quiet`, with printk timestamps), then a table of the
// stub's phase timings, its userspace time against the kernel's time to
// reach /init, and the initramfs size. -console FILE skips the boot and
// reads a console saved by an earlier run (out/demo/console.log).
package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/cavaliergopher/cpio"

	"github.com/vtpmboot/vtpmboot/boot/eventlog"
	"github.com/vtpmboot/vtpmboot/boot/stub"
	"github.com/vtpmboot/vtpmboot/e2e"
	"github.com/vtpmboot/vtpmboot/internal/guestdisk"
	"github.com/vtpmboot/vtpmboot/internal/qemutest"
	"github.com/vtpmboot/vtpmboot/internal/target/report"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	root := testenv.RepoRoot()
	out := flag.String("out", filepath.Join(root, "out", "demo"), "build and output `DIR`")
	bench := flag.Bool("bench", false, "print the stub's timing table (bench/stub.sh) instead of the demo")
	console := flag.String("console", "", "with -bench: read this saved console `FILE` instead of booting")
	flag.Parse()
	d := &demo{ctx: ctx, root: root, out: *out, color: isTerminal(os.Stdout)}
	var err error
	if *bench {
		// Progress goes to stderr so the table alone can be redirected.
		d.w = os.Stderr
		d.color = false
		err = d.bench(*console)
	} else {
		d.w = os.Stdout
		err = d.run()
	}
	var mm mismatch
	switch {
	case errors.As(err, &mm):
		os.Exit(1)
	case err != nil:
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(2)
	}
}

type mismatch struct{ what string }

func (m mismatch) Error() string { return m.what }

type demo struct {
	ctx   context.Context
	root  string
	out   string
	w     io.Writer
	color bool

	step, steps int
	t0          time.Time
	release     string
	kernel      string
	stubDir     string
	bin         string
	disk        string
	diskSum     [32]byte
	console     string
	marks       map[string]time.Duration
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0 && os.Getenv("TERM") != "dumb"
}

func (d *demo) paint(code, s string) string {
	if !d.color {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}

// begin prints "[n/N] what ..." and starts the step's clock.
func (d *demo) begin(format string, a ...any) {
	d.step++
	d.t0 = time.Now()
	fmt.Fprintf(d.w, "\n%s %s\n", d.paint("1;36", fmt.Sprintf("[%d/%d]", d.step, d.steps)), d.paint("1", fmt.Sprintf(format, a...)))
}

func (d *demo) done() {
	fmt.Fprintf(d.w, "      %s\n", d.paint("2", fmt.Sprintf("done in %.1f s", time.Since(d.t0).Seconds())))
}

func (d *demo) say(format string, a ...any) {
	fmt.Fprintf(d.w, "      "+format+"\n", a...)
}

// show prints a command the way a user would type it, relative to the
// repository, then runs it; its output is indented.
func (d *demo) show(stdout io.Writer, name string, args ...string) error {
	rel := func(s string) string {
		if r, err := filepath.Rel(d.root, s); err == nil && !strings.HasPrefix(r, "..") && filepath.IsAbs(s) {
			return r
		}
		return s
	}
	shown := []string{rel(name)}
	for _, a := range args {
		a = rel(a)
		if strings.ContainsAny(a, " \"'") {
			a = "'" + a + "'"
		}
		shown = append(shown, a)
	}
	fmt.Fprintf(d.w, "      %s %s\n", d.paint("33", "$"), d.paint("33", strings.Join(shown, " ")))
	cmd := exec.CommandContext(d.ctx, name, args...)
	cmd.Dir = d.root
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if stdout == nil {
		stdout = indent{d.w}
	}
	cmd.Stdout = stdout
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %v\n%s", strings.Join(shown, " "), err, errb.String())
	}
	if s := strings.TrimSpace(errb.String()); s != "" {
		indent{d.w}.Write([]byte(s + "\n"))
	}
	return nil
}

// indent prefixes every line written through it.
type indent struct{ w io.Writer }

func (i indent) Write(p []byte) (int, error) {
	s := strings.TrimRight(string(p), "\n")
	for _, l := range strings.Split(s, "\n") {
		fmt.Fprintf(i.w, "        %s\n", l)
	}
	return len(p), nil
}

func (d *demo) prepare() error {
	kdir := e2e.KernelDir(d.root)
	rel, err := os.ReadFile(filepath.Join(kdir, "release"))
	if err != nil {
		return fmt.Errorf("no Debian kernel in %s (scripts/fetch-kernel.sh): %w", kdir, err)
	}
	d.release = strings.TrimSpace(string(rel))
	d.kernel = filepath.Join(kdir, "vmlinuz")
	d.bin = filepath.Join(d.out, "bin")
	d.stubDir = filepath.Join(d.out, "stub")
	for _, tool := range []string{"qemu-system-x86_64", "swtpm", "tpm2_eventlog", "mkfs.ext4", "sfdisk", "debugfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is not installed (scripts/deps.sh)", tool)
		}
	}
	return os.MkdirAll(d.bin, 0o755)
}

// buildStub builds the tools and runs mkstub.
func (d *demo) buildStub() error {
	for _, c := range []string{"mkstub", "pcrsim"} {
		if err := e2e.GoBuild(d.ctx, d.root, "./cmd/"+c, filepath.Join(d.bin, c)); err != nil {
			return err
		}
	}
	return d.show(nil, filepath.Join(d.bin, "mkstub"), "--kernel", d.kernel, "--modules", filepath.Join(e2e.KernelDir(d.root), "modules"), "-o", d.stubDir)
}

// guestGrubCfg is the demo guest's boot menu: two entries, the first the
// default, as grub-mkconfig would write for one kernel.
func guestGrubCfg(release string) string {
	return fmt.Sprintf(`set default=0
set timeout=5
menuentry 'Debian GNU/Linux (vtpmboot demo)' --id demo {
	linux /boot/vmlinuz-%[1]s root=/dev/vda1 ro console=ttyS0 panic=-1 quiet
	initrd /boot/initrd.img-%[1]s
}
menuentry 'Debian GNU/Linux (recovery mode)' --id recovery {
	linux /boot/vmlinuz-%[1]s root=/dev/vda1 ro single console=ttyS0 panic=-1
	initrd /boot/initrd.img-%[1]s
}
`, release)
}

// buildDisk makes the guest: Debian's kernel and a small initramfs whose
// /init prints the PCRs (internal/target/targetinit), on ext4 with a dirty
// journal, which the stub must not replay.
func (d *demo) buildDisk() error {
	target, _, err := e2e.BuildTarget(d.ctx, d.root, d.out)
	if err != nil {
		return err
	}
	cfg := guestGrubCfg(d.release)
	d.disk = filepath.Join(d.out, "guest.img")
	err = guestdisk.Build(guestdisk.Disk{Table: "mbr", Partitions: []guestdisk.Partition{{
		FS: "ext4", SizeMB: 64, Label: "demo-root", DirtyJournal: true,
		Files: []guestdisk.File{
			{Path: "/boot/grub/grub.cfg", Data: []byte(cfg)},
			{Path: "/boot/vmlinuz-" + d.release, Source: d.kernel},
			{Path: "/boot/initrd.img-" + d.release, Source: target},
		},
	}}}, d.disk)
	if err != nil {
		return fmt.Errorf("guest disk: %w", err)
	}
	if d.diskSum, err = sum(d.disk); err != nil {
		return err
	}
	return nil
}

func sum(p string) ([32]byte, error) {
	var s [32]byte
	f, err := os.Open(p)
	if err != nil {
		return s, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return s, err
	}
	copy(s[:], h.Sum(nil))
	return s, nil
}

// consoleFilter passes the stub's lines through as they arrive, with the
// base64 event log summarised.
type consoleFilter struct {
	d       *demo
	partial string
	inLog   int
	target  bool
	// start and marks time console events on the host's clock, as a
	// check on the stub's own phase timings.
	start time.Time
	marks map[string]time.Duration
}

func (c *consoleFilter) mark(name string) {
	if _, ok := c.marks[name]; !ok {
		c.marks[name] = time.Since(c.start)
	}
}

func (c *consoleFilter) Write(p []byte) (int, error) {
	c.partial += strings.ReplaceAll(string(p), "\r", "")
	for {
		i := strings.IndexByte(c.partial, '\n')
		if i < 0 {
			break
		}
		line := c.partial[:i]
		c.partial = c.partial[i+1:]
		c.line(line)
	}
	return len(p), nil
}

func (c *consoleFilter) line(l string) {
	d := c.d
	if strings.HasPrefix(l, stub.LinePrefix) {
		c.mark("first stub line")
	}
	switch {
	case l == eventlog.BeginMarker:
		c.inLog = 1
	case l == eventlog.EndMarker:
		fmt.Fprintf(d.w, "      %s %s\n", d.paint("2", "│"), d.paint("2", fmt.Sprintf("vtpmboot: [its TCG event log, %d lines of base64, not shown]", c.inLog-1)))
		c.inLog = 0
	case c.inLog > 0:
		c.inLog++
	case strings.HasPrefix(l, stub.FatalPrefix):
		fmt.Fprintf(d.w, "      %s %s\n", d.paint("2", "│"), d.paint("1;31", l))
	case strings.HasPrefix(l, stub.PhasePrefix):
		fmt.Fprintf(d.w, "      %s %s\n", d.paint("2", "│"), d.paint("2", l))
	case strings.HasPrefix(l, stub.BootingPrefix):
		c.mark("stub: booting (kexec)")
		fmt.Fprintf(d.w, "      %s %s\n", d.paint("2", "│"), d.paint("1", l))
		fmt.Fprintf(d.w, "      %s\n", d.paint("2", "(kexec: the measured kernel is starting ...)"))
	case strings.HasPrefix(l, stub.LinePrefix):
		fmt.Fprintf(d.w, "      %s %s\n", d.paint("2", "│"), l)
	case l == report.Begin && !c.target:
		c.target = true
		c.mark("target report")
		fmt.Fprintf(d.w, "      %s\n", d.paint("2", "(the guest's /init is reporting its PCRs ...)"))
	}
}

// boot runs the stub without "quiet" and with printk timestamps, so the
// saved console serves bench/stub.sh too; only the stub's lines are shown.
func (d *demo) boot() (*report.Report, error) {
	filter := &consoleFilter{d: d, start: time.Now(), marks: map[string]time.Duration{}}
	d.marks = filter.marks
	o := qemutest.Options{
		Kernel: filepath.Join(d.stubDir, "vmlinuz"), Initrd: filepath.Join(d.stubDir, "vtpmboot.cpio.gz"),
		Append: e2e.StubAppend(), Disks: []qemutest.Disk{{Path: d.disk}}, TPM: pcrbank.Version20,
		Timeout: 10 * time.Minute, Console: filter,
	}
	res, err := qemutest.Boot(d.ctx, o)
	if res != nil {
		d.console = res.Console
		if werr := os.WriteFile(filepath.Join(d.out, "console.log"), []byte(res.Console), 0o644); werr != nil {
			return nil, werr
		}
	}
	if err != nil {
		return nil, err
	}
	d.say("%s", d.paint("2", fmt.Sprintf("QEMU ran %.1f s; full console in %s", res.Duration.Seconds(), d.rel(filepath.Join(d.out, "console.log")))))
	if f := e2e.FatalLines(res.Console); len(f) > 0 {
		return nil, fmt.Errorf("the stub refused to boot: %s", f[0])
	}
	r, err := report.Parse(res.Console)
	if err != nil {
		return nil, fmt.Errorf("the guest did not report (QEMU exit %v): %w\n%s", res.ExitErr, err, res.Tail(3000))
	}
	return r, nil
}

func (d *demo) rel(p string) string {
	if r, err := filepath.Rel(d.root, p); err == nil {
		return r
	}
	return p
}

func (d *demo) run() error {
	d.steps = 5
	fmt.Fprintf(d.w, "%s\n", d.paint("1", "vtpmboot demo: measured boot of a guest disk, predicted on the host, checked in the guest"))
	if err := d.prepare(); err != nil {
		return err
	}
	d.begin("building the stub: mkstub with Debian's kernel %s", d.release)
	if err := d.buildStub(); err != nil {
		return err
	}
	d.done()

	d.begin("making the guest disk %s", d.rel(filepath.Join(d.out, "guest.img")))
	if err := d.buildDisk(); err != nil {
		return err
	}
	d.say("MBR, one ext4 partition with a dirty journal (the stub must not replay it), holding")
	d.say("/boot/vmlinuz-%s, /boot/initrd.img-%s (a tiny /init that prints the PCRs) and /boot/grub/grub.cfg:", d.release, d.release)
	indent{d.w}.Write([]byte(guestGrubCfg(d.release)))
	d.say("sha256 %x", d.diskSum)
	d.done()

	d.begin("predicting PCRs 4 and 5 on the host with pcrsim (the image is read in userspace, never mounted)")
	pcrsim := filepath.Join(d.bin, "pcrsim")
	if err := d.show(nil, pcrsim, "predict", "--disk", d.disk, "--list"); err != nil {
		return err
	}
	var trace bytes.Buffer
	if err := d.show(io.MultiWriter(indent{d.w}, &trace), pcrsim, "predict", "--disk", d.disk, "--bank", "sha256"); err != nil {
		return err
	}
	os.WriteFile(filepath.Join(d.out, "prediction-xen.txt"), trace.Bytes(), 0o644)
	d.say("(all PCRs start at zero here, as on a Xen vTPM: these are the values to seal to there)")
	d.done()

	d.begin("booting it: QEMU (TCG, no KVM) + swtpm TPM 2.0; the stub's console:")
	d.say("%s", d.paint("2", "(the stub's kernel boots first, about 5-15 s under emulation)"))
	r, err := d.boot()
	if err != nil {
		return err
	}
	d.say("the guest booted with /proc/cmdline %q", strings.TrimSuffix(r.Cmdline, "\n"))
	d.done()

	d.begin("comparing pcrsim's prediction with the guest's TPM")
	return d.compare(r, pcrsim)
}

func (d *demo) compare(r *report.Report, pcrsim string) error {
	d.say("SeaBIOS extended PCRs 0-7 (4 too) before the stub ran: starting values = its event log, replayed by go-eventlog and tpm2_eventlog")
	// The guest's log holds the firmware's events followed by the
	// stub's (appended to the ACPI log area); the starting values are
	// the firmware's part alone.
	fw := r.EventLog
	if stubLog, err := e2e.StubEventLog(d.console); err == nil {
		if part, err := e2e.SplitAppended(r.EventLog, stubLog, r.Version); err == nil {
			d.say("the guest's binary_bios_measurements holds the firmware's events followed by the stub's %d bytes of events", len(r.EventLog)-len(part))
			fw = part
		}
	}
	rp, err := e2e.ReplayFirmware(fw)
	if err != nil {
		return fmt.Errorf("replaying the firmware event log: %w", err)
	}
	banks := e2e.PCRs(r.PCRs).Banks()
	var names []string
	args := []string{"predict", "--disk", d.disk}
	for _, a := range banks {
		names = append(names, a.String())
		for _, i := range []int{4, 5} {
			args = append(args, "--pcr-init", fmt.Sprintf("%d:%v:%x", i, a, rp.Value(a, i)))
		}
		// The PCRs SeaBIOS measured and the stub did not touch must
		// replay exactly, or the starting values are not to be trusted.
		for i, v := range r.PCRs[a] {
			if i != 4 && i != 5 && !bytes.Equal(v, rp.Value(a, i)) {
				return fmt.Errorf("%v PCR %d: the firmware log replays to %x but the TPM has %x", a, i, rp.Value(a, i), v)
			}
		}
		d.say("  %-6s PCR 4 %s  PCR 5 %s  (%s)", a, short(rp.Value(a, 4)), short(rp.Value(a, 5)), rp.By[a])
	}
	args = append(args, "--bank", strings.Join(names, ","), "--format", "json")
	expPath := filepath.Join(d.out, "expected.json")
	var exp bytes.Buffer
	shown := append([]string(nil), args...)
	d.say("")
	fmt.Fprintf(d.w, "      %s\n", d.paint("33", fmt.Sprintf("$ %s predict --disk %s --bank %s --pcr-init 4:sha1:… (%d starting values) --format json > %s",
		d.rel(pcrsim), d.rel(d.disk), strings.Join(names, ","), 2*len(banks), d.rel(expPath))))
	cmd := exec.CommandContext(d.ctx, pcrsim, shown...)
	cmd.Stdout = &exp
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("pcrsim: %v: %s", err, errb.String())
	}
	if err := os.WriteFile(expPath, exp.Bytes(), 0o644); err != nil {
		return err
	}
	var doc struct {
		Banks map[string]map[string]string `json:"banks"`
	}
	if err := json.Unmarshal(exp.Bytes(), &doc); err != nil {
		return fmt.Errorf("pcrsim JSON: %w", err)
	}

	d.say("")
	fmt.Fprintf(d.w, "      %-4s %-7s %-35s %-35s %s\n", "PCR", "bank", "predicted (pcrsim, on the host)", "actual (read by the booted guest)", "")
	ok := true
	var yaml strings.Builder
	for _, a := range banks {
		fmt.Fprintf(&yaml, "  %s:\n", a)
		for _, i := range []int{4, 5} {
			want := doc.Banks[a.String()][fmt.Sprint(i)]
			got := fmt.Sprintf("%x", r.PCRs[a][i])
			fmt.Fprintf(&yaml, "    %d : 0x%s\n", i, strings.ToUpper(got))
			verdict := d.paint("32", "match")
			if want != got {
				verdict = d.paint("1;31", "MISMATCH")
				ok = false
			}
			fmt.Fprintf(d.w, "      %-4d %-7s %-35s %-35s %s\n", i, a, shortHex(want), shortHex(got), verdict)
		}
	}
	actPath := filepath.Join(d.out, "actual.yaml")
	if err := os.WriteFile(actPath, []byte(yaml.String()), 0o644); err != nil {
		return err
	}
	d.say("%s", d.paint("2", fmt.Sprintf("(hex shortened; full values in %s and %s)", d.rel(expPath), d.rel(actPath))))
	d.say("")
	d.say("the operator's check, pcrsim verify, on the same files:")
	var vout bytes.Buffer
	verr := d.show(&vout, pcrsim, "verify", "--expected", expPath, "--actual", actPath)
	vlines := strings.Split(strings.TrimSpace(vout.String()), "\n")
	if verr != nil {
		ok = false
		indent{d.w}.Write(vout.Bytes())
		d.say("%s", d.paint("1;31", "pcrsim verify: "+strings.TrimSpace(verr.Error())))
	} else {
		d.say("  %s (exit 0)", vlines[len(vlines)-1])
	}
	after, err := sum(d.disk)
	if err != nil {
		return err
	}
	if after == d.diskSum {
		d.say("guest disk sha256 %s: unchanged by the boot (dirty journal not replayed)", short(after[:]))
	} else {
		ok = false
		d.say("%s", d.paint("1;31", fmt.Sprintf("guest disk CHANGED: sha256 %x, was %x", after, d.diskSum)))
	}
	d.done()
	fmt.Fprintln(d.w)
	if !ok {
		fmt.Fprintf(d.w, "%s\n", d.paint("1;31", "MISMATCH"))
		return mismatch{"MISMATCH"}
	}
	fmt.Fprintf(d.w, "%s  the guest's PCRs 4 and 5 are exactly what pcrsim predicted from the disk image, in all %d banks\n", d.paint("1;32", "MATCH"), len(banks))
	return nil
}

func short(b []byte) string { return shortHex(fmt.Sprintf("%x", b)) }

func shortHex(s string) string {
	if len(s) <= 32 {
		return s
	}
	return s[:20] + "…" + s[len(s)-8:]
}

// bench is bench/stub.sh: one boot, then the table.
func (d *demo) bench(console string) error {
	if err := d.prepare(); err != nil {
		return err
	}
	d.steps = 3
	if console == "" {
		d.begin("building the stub (mkstub)")
		if err := d.buildStub(); err != nil {
			return err
		}
		d.done()
		d.begin("making the guest disk")
		if err := d.buildDisk(); err != nil {
			return err
		}
		d.done()
		d.begin("booting under QEMU + swtpm TPM 2.0 (printk timestamps, no quiet)")
		if _, err := d.boot(); err != nil {
			return err
		}
		d.done()
	} else {
		b, err := os.ReadFile(console)
		if err != nil {
			return err
		}
		d.console = string(b)
	}
	return d.benchTable(os.Stdout)
}

func (d *demo) benchTable(w io.Writer) error {
	phases := e2e.Phases(d.console)
	if len(phases) == 0 {
		return fmt.Errorf("no \"vtpmboot: phase\" lines in the console")
	}
	var banks string
	for _, l := range e2e.StubLines(d.console) {
		if _, b, ok := strings.Cut(l, "PCR banks "); ok {
			banks = b
		}
	}
	fmt.Fprintf(w, "vtpmboot stub phases (QEMU TCG, 1 vCPU, swtpm TPM 2.0, banks %s; kernel %s)\n", banks, d.release)
	fmt.Fprintf(w, "  %-10s %8s\n", "phase", "ms")
	total := -1
	for _, p := range phases {
		if p.Name == "total" {
			total = p.Ms
			continue
		}
		fmt.Fprintf(w, "  %-10s %8d\n", p.Name, p.Ms)
	}
	if total < 0 {
		return fmt.Errorf("the stub never reached kexec (no \"phase total\" line)")
	}
	fmt.Fprintf(w, "  %-10s %8d\n", "total", total)

	kinit, ok := e2e.KernelTime(d.console, "", "Run /init as init process")
	if !ok {
		return fmt.Errorf("no timestamped \"Run /init as init process\" in the console (booted with quiet or without printk.time=1?)")
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  kernel start -> \"Run /init as init process\" (printk)  %8.3f s\n", kinit)
	if u0, ok := e2e.KernelTime(d.console, "", "Trying to unpack rootfs image as initramfs"); ok {
		if u1, ok := e2e.KernelTime(d.console, "", "Freeing initrd memory"); ok {
			fmt.Fprintf(w, "    of which initramfs unpacking (printk)               %8.3f s\n", u1-u0)
		}
	}
	fmt.Fprintf(w, "  stub /init -> kexec call (phase total)                %8.3f s\n", float64(total)/1000)
	ratio := float64(total) / 1000 / kinit
	verdict := "met"
	if ratio > 0.10 {
		verdict = "MISSED"
	}
	fmt.Fprintf(w, "  ratio stub/kernel                                      %7.0f %%  (goal <= 10%%: %s)\n", 100*ratio, verdict)
	if len(d.marks) > 0 {
		fmt.Fprintf(w, "\n  host clock, from starting swtpm+QEMU (SeaBIOS and the kernel's console output included):\n")
		for _, m := range []string{"first stub line", "stub: booting (kexec)", "target report"} {
			if v, ok := d.marks[m]; ok {
				fmt.Fprintf(w, "    %-24s %8.3f s\n", m, v.Seconds())
			}
		}
	}
	return d.sizes(w)
}

// sizes reports the stub initramfs: compressed, uncompressed, and what
// takes the room.
func (d *demo) sizes(w io.Writer) error {
	p := filepath.Join(d.stubDir, "vtpmboot.cpio.gz")
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	zr, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	cr := cpio.NewReader(zr)
	var initSize, modSize, raw int64
	var mods int
	for {
		h, err := cr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		raw += h.Size
		switch {
		case h.Name == "init":
			initSize = h.Size
		case strings.HasSuffix(h.Name, ".ko"):
			mods++
			modSize += h.Size
		}
	}
	mb := func(n int64) string { return fmt.Sprintf("%.2f MB", float64(n)/1e6) }
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  initramfs %s: %s gzip, %s of files unpacked (/init %s, %d modules %s)\n",
		d.rel(p), mb(st.Size()), mb(raw), mb(initSize), mods, mb(modSize))
	return nil
}
