// Package stub is the stub's boot flow: find the guest's boot entry, load
// it once into sealed memory, measure exactly those bytes into the vTPM,
// kexec them. Everything that touches the machine goes through System, so
// the flow, and above all its failure paths, can be tested without being
// PID 1 in a VM.
package stub

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/vtpmboot/vtpmboot/boot/discover"
	"github.com/vtpmboot/vtpmboot/boot/disks"
	"github.com/vtpmboot/vtpmboot/boot/entry"
	"github.com/vtpmboot/vtpmboot/boot/eventlog"
	"github.com/vtpmboot/vtpmboot/boot/kexec"
	"github.com/vtpmboot/vtpmboot/boot/measure"
	"github.com/vtpmboot/vtpmboot/boot/modload"
	"github.com/vtpmboot/vtpmboot/boot/termsafe"
	"github.com/vtpmboot/vtpmboot/config"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// System is everything the stub asks of the machine it runs on, grouped
// by concern (Platform, Devices, TPMs, Booter, Clock). It is wide, not a
// one-method transport: the flow in this file reaches the machine only
// through it, so the flow needs none of Linux and it and its tests build
// and run anywhere. Machine (system_linux.go) is the real one.
type System interface {
	Platform
	Devices
	TPMs
	Booter
	Clock
}

// Platform is the stub's own environment.
type Platform interface {
	// MountBase mounts /proc, /sys, /dev and securityfs: the stub's own
	// view of the machine. Guest filesystems are never mounted.
	MountBase() error
	Cmdline() (string, error)
	// XenGuestType is /sys/hypervisor/guest_type under Xen ("PV", "PVH",
	// "HVM"), "" elsewhere.
	XenGuestType() string
	// MemAvailable is the kernel's estimate of memory available for new
	// allocations (/proc/meminfo MemAvailable), in bytes.
	MemAvailable() (int64, error)
	// XenBalloon reads the Xen balloon driver's account; ok is false
	// where there is no driver (not Xen, or PVH/PV without one).
	XenBalloon() (b Balloon, ok bool, err error)
	// SetXenBalloonTarget asks the balloon driver to hold kb KiB.
	SetXenBalloonTarget(kb int64) error
	// PowerOff syncs and powers off; it returns only in tests.
	PowerOff()
}

// Devices are the guest's disks and the drivers that show them.
type Devices interface {
	// LoadModules loads the block and TPM drivers packed into the image.
	// There are no filesystem drivers: guest filesystems are read by
	// boot/diskimage in userspace.
	LoadModules() ([]modload.Loaded, error)
	// BlockNames lists /sys/class/block; the wait phase polls it.
	BlockNames() []string
	// OpenDisks opens every whole disk that may hold the guest's boot
	// files, read-only and set read-only in the kernel (BLKROSET), in
	// the order the stub searches them (disks.NameLess). close releases
	// them.
	OpenDisks() (ds []disks.Disk, close func(), err error)
}

// TPMs is where measurements go.
type TPMs interface {
	TPMPresent() bool
	// TPMAnnounced reports a TPM the platform says is coming: a vtpm
	// device in xenstore or a TPM ACPI device, whose driver may still be
	// starting. It is also true when the system cannot tell, so that
	// only a TPM known to be absent ends the wait early.
	TPMAnnounced() bool
	OpenTPM() (pcrbank.Target, error)
	// AppendFirmwareLog appends the measurements' events to the firmware's
	// event log area (boot/acpilog), so the booted kernel's
	// binary_bios_measurements holds them; it returns a one-line summary.
	// An error means nothing was written and the console log is the only
	// copy; it never stops the boot.
	AppendFirmwareLog(v pcrbank.Version, ms []measure.Measurement) (string, error)
}

// Balloon is the Xen balloon driver's account
// (/sys/devices/system/xen_memory/xen_memory0), in KiB.
type Balloon struct {
	// Current is what the guest holds now (info/current_kb).
	Current int64
	// Out is what it has handed back to Xen (info/low_kb + high_kb):
	// guest-physical pages with nothing behind them.
	Out int64
}

// Image is a kernel or initrd held in memory that nothing can change any
// more: what is measured is read from it, and what kexec loads is it.
type Image interface {
	io.ReaderAt
	Size() int64
	Close() error
}

// Booter holds images and jumps into them.
type Booter interface {
	// NewImage copies everything r yields into a new sealed Image (a
	// memfd on Linux). Running out of memory wraps kexec.ErrNoMemory.
	NewImage(name string, r io.Reader) (Image, error)
	// KexecLoad stages images NewImage made (initrd nil: none);
	// KexecExec jumps (returns only on failure).
	KexecLoad(kernel, initrd Image, cmdline string) error
	KexecExec() error
}

// Clock is time, virtual in tests.
type Clock interface {
	Now() time.Time
	Sleep(time.Duration)
}

// Poll interval and settle time of the wait for devices.
const (
	pollInterval = 50 * time.Millisecond
	settleTime   = 300 * time.Millisecond
)

// Fatal is a failure that powers the guest off.
type Fatal struct {
	What string
	Err  error
}

func (f *Fatal) Error() string { return f.What + ": " + f.Err.Error() }
func (f *Fatal) Unwrap() error { return f.Err }

func fatal(what string, err error) error { return &Fatal{What: what, Err: err} }

// Result says how Run ended, for tests: in a real guest Run never returns.
type Result struct {
	Options  config.StubOptions
	Choice   *discover.Choice
	Steps    []measure.Step
	Measured bool
	// Err is the fatal error that powered the guest off, nil after kexec.
	Err error
}

type run struct {
	sys   System
	out   io.Writer
	opts  config.StubOptions
	start time.Time
	res   *Result
	// loadedBytes is what the measure phase hashes, for its debug line.
	loadedBytes int64
}

// Run boots: on success it ends in KexecExec, on any failure it prints one
// FATAL line and powers off. It never boots anything unmeasured unless
// vtpmboot.tpm=optional and there is no TPM at all.
func Run(sys System, out io.Writer) (res *Result) {
	r := &run{sys: sys, out: out, opts: config.DefaultStubOptions(), start: sys.Now(), res: &Result{}}
	defer func() {
		if p := recover(); p != nil {
			r.res.Err = fatal("internal error", fmt.Errorf("panic: %v\n%s", p, debug.Stack()))
			r.powerOff(r.res.Err)
		}
		res = r.res
	}()
	if err := r.boot(); err != nil {
		r.res.Err = err
		r.powerOff(err)
	}
	return r.res
}

// printf prints one console line. Guest-controlled text (file names,
// titles, error messages that quote them) is escaped here, once, for
// every line (termsafe.Line): no ESC sequence reaches a terminal and no
// newline lets a guest forge a line of its own, such as an event-log
// marker.
func (r *run) printf(format string, args ...any) {
	fmt.Fprintln(r.out, LinePrefix+termsafe.Line(fmt.Sprintf(format, args...)))
}

func (r *run) debugf(format string, args ...any) {
	if r.opts.Debug {
		r.printf(format, args...)
	}
}

func (r *run) phase(name string, t0 time.Time) {
	fmt.Fprintln(r.out, PhaseLine(name, r.sys.Now().Sub(t0)))
}

func (r *run) powerOff(err error) {
	var f *Fatal
	if errors.As(err, &f) {
		r.printf(fatalTag+"%s: %v", f.What, f.Err)
	} else {
		r.printf(fatalTag+"%v", err)
	}
	r.printf("powering off")
	r.sys.PowerOff()
}

func (r *run) boot() error {
	t := r.sys.Now()
	if err := r.sys.MountBase(); err != nil {
		return fatal("mount /proc, /sys, /dev", err)
	}
	cmdline, err := r.sys.Cmdline()
	if err != nil {
		return fatal("read /proc/cmdline", err)
	}
	opts, warnings, err := config.ParseStubOptions(cmdline)
	if err != nil {
		return fatal("options", err)
	}
	r.opts, r.res.Options = opts, opts
	for _, w := range warnings {
		r.printf("warning: %s", w)
	}
	r.printf("options: entry=%q disk=%q tpm=%s timeout=%v", opts.Entry, opts.Disk, opts.TPM, opts.Timeout)
	// Before any disk is read or anything measured: neither guest type can
	// kexec, so whatever the stub did here would be thrown away.
	xenType := r.sys.XenGuestType()
	switch xenType {
	case "PV":
		return fatal("Xen PV guest", errors.New(`kexec cannot work in a Xen PV guest; use type="hvm" in the xl config`))
	case "PVH":
		return fatal("Xen PVH guest", errors.New(`kexec needs Xen soft reset, which xl supports only for type="hvm" (libxl refuses it for PVH and destroys the guest); use type="hvm" in the xl config`))
	}
	balloon, err := r.holdBalloon(xenType)
	if err != nil {
		return err
	}
	r.phase("init", t)

	t = r.sys.Now()
	mods, err := r.sys.LoadModules()
	r.reportModules("modules", mods, err)
	r.phase("modules", t)

	t = r.sys.Now()
	names, tpmSeen, announced := r.wait()
	r.printf("block devices: %s; TPM: %v", strings.Join(names, " "), tpmSeen)
	r.phase("wait", t)

	t = r.sys.Now()
	target, err := r.openTPM(tpmSeen, announced)
	if err != nil {
		return err
	}
	if target != nil {
		defer target.Close()
	}
	r.phase("tpm", t)

	t = r.sys.Now()
	vols, closeDisks, err := r.readDisks()
	defer closeDisks()
	if err != nil {
		return err
	}
	r.phase("scan", t)

	t = r.sys.Now()
	choice, err := r.choose(vols)
	if err != nil {
		return err
	}
	r.res.Choice = choice
	r.phase("choose", t)

	t = r.sys.Now()
	kernel, initrd, in, err := r.load(choice)
	if err != nil {
		return err
	}
	defer kernel.Close()
	if initrd != nil {
		defer initrd.Close()
	}
	r.phase("load", t)

	// Before measuring: a boot that cannot run must not be measured.
	if balloon {
		t = r.sys.Now()
		if err := r.waitBalloon(); err != nil {
			return err
		}
		r.phase("balloon", t)
	}

	t = r.sys.Now()
	if target != nil {
		if err := r.measure(target, in); err != nil {
			return err
		}
		r.res.Measured = true
	} else {
		r.unmeasured()
	}
	r.phase("measure", t)

	t = r.sys.Now()
	// The images are in memory; nothing more is read from the guest's disks.
	closeDisks()
	load := func() error {
		if err := r.sys.KexecLoad(kernel, initrd, choice.Entry.Cmdline); err != nil {
			return fatal("kexec "+discover.SourceName(choice.Entry.Kernel)+" on "+choice.Volume.Name, err)
		}
		return nil
	}
	if err := load(); err != nil {
		return err
	}
	if balloon {
		if err := r.reloadIfBallooned(load); err != nil {
			return err
		}
	}
	r.phase("kexec", t)
	fmt.Fprintln(r.out, PhaseLine("total", r.sys.Now().Sub(r.start)))
	if !r.res.Measured {
		r.unmeasured()
	}
	r.printf(bootingTag+"%s", discover.SourceName(choice.Entry.Kernel))
	if err := r.sys.KexecExec(); err != nil {
		return fatal("kexec", err)
	}
	return nil
}

// reportModules prints a warning per module that failed; an error of the
// whole stage (no modules.dep) is a warning too: the kernel may have the
// drivers built in, and the device wait or the mount will tell.
func (r *run) reportModules(stage string, mods []modload.Loaded, err error) {
	if err != nil {
		r.printf("warning: kernel modules (%s): %v", stage, err)
	}
	var nOK int
	for _, m := range mods {
		switch {
		case m.Err != nil:
			r.printf("warning: module %s: %v", m.Name, m.Err)
		case m.Already:
			r.debugf("module %s: already loaded", m.Name)
		default:
			nOK++
			r.debugf("module %s: loaded (%dms)", m.Name, m.Duration.Milliseconds())
		}
	}
	r.printf("%s: %d of %d loaded", stage, nOK, len(mods))
}

// wait polls until a settled set of block devices is there and the TPM
// is either there or known to be absent, or the timeout passes. Xen's
// front ends attach asynchronously after their modules load, so neither
// disks nor TPM are there right away; but whether a TPM is coming at all
// is known from the start (xenstore's device/vtpm, ACPI), so a guest
// without one does not wait for it.
func (r *run) wait() (names []string, tpm, announced bool) {
	deadline := r.sys.Now().Add(r.opts.Timeout)
	var last []string
	stable := r.sys.Now()
	for {
		names := r.sys.BlockNames()
		tpm := r.sys.TPMPresent()
		announced := tpm || r.sys.TPMAnnounced()
		now := r.sys.Now()
		if !slices.Equal(names, last) {
			last, stable = names, now
		}
		if (tpm || !announced) && len(names) > 0 && now.Sub(stable) >= settleTime {
			return names, tpm, announced
		}
		if !now.Before(deadline) {
			return names, tpm, announced
		}
		r.sys.Sleep(pollInterval)
	}
}

const howToAttach = `attach a vTPM to this guest: with xl, add vtpm=["backend=<vtpm-stubdom or swtpm domain>"] to the domU config; with QEMU, -chardev socket,id=chrtpm,path=... -tpmdev emulator,id=tpm0,chardev=chrtpm -device tpm-tis,tpmdev=tpm0. To boot WITHOUT measuring anyway, add vtpmboot.tpm=optional to the stub's command line (xl: extra="vtpmboot.tpm=optional")`

func (r *run) openTPM(seen, announced bool) (pcrbank.Target, error) {
	if !seen && !r.sys.TPMPresent() {
		if r.opts.TPM == config.TPMRequired {
			if !announced {
				return nil, fatal("no TPM", fmt.Errorf("this guest has none: no vtpm device in xenstore, no TPM ACPI device, no /dev/tpm0 (vtpmboot.tpm=required). To fix it, %s", howToAttach))
			}
			return nil, fatal("no TPM", fmt.Errorf("a TPM is announced but neither /dev/tpmrm0 nor /dev/tpm0 appeared within %v (vtpmboot.tpm=required; is its driver, xen-tpmfront or tpm_tis, in the stub, and its backend running?). To fix it, %s", r.opts.Timeout, howToAttach))
		}
		r.unmeasured()
		return nil, nil
	}
	// A TPM that is there but does not work is a fault, not an absent
	// TPM: booting unmeasured here would hide an attack or a broken vTPM.
	target, err := r.sys.OpenTPM()
	if err != nil {
		return nil, fatal("open TPM", err)
	}
	banks, err := target.Banks()
	if err != nil {
		target.Close()
		return nil, fatal("read TPM PCR banks", err)
	}
	r.printf("TPM %v, PCR banks %v", target.Version(), banks)
	return target, nil
}

func (r *run) unmeasured() {
	for _, l := range []string{
		"****************************************************************",
		"*  WARNING: NO TPM. NOTHING WAS MEASURED.                      *",
		"*  This guest boots UNMEASURED because vtpmboot.tpm=optional.  *",
		"*  Its PCRs 4 and 5 say nothing about what it runs.            *",
		"****************************************************************",
	} {
		r.printf("%s", l)
	}
}

// readDisks opens the guest's disks and reads their partition tables and
// filesystems with the same code pcrsim reads a disk image with, then
// keeps what vtpmboot.disk= selects.
func (r *run) readDisks() ([]disks.Volume, func(), error) {
	ds, closeDisks, err := r.sys.OpenDisks()
	if err != nil {
		return nil, func() {}, fatal("open disks", err)
	}
	var once bool
	closeOnce := func() {
		if !once {
			once = true
			closeDisks()
		}
	}
	var all []disks.Volume
	for i, d := range ds {
		vols, err := disks.Read(i, d)
		if err != nil {
			return nil, closeOnce, fatal("read disk "+d.Linux, err)
		}
		all = append(all, vols...)
	}
	sel := disks.Select(all, r.opts.Disk)
	for _, v := range all {
		if v.FS == nil {
			r.printf("%s (%s): not searched: %q", v.Name, v.GRUBDevice(), v.Err.Error())
			continue
		}
		r.printf("%s (%s): %s label=%q uuid=%s", v.Name, v.GRUBDevice(), v.Type, v.Label, v.UUID)
	}
	if len(sel) == 0 {
		var have []string
		for _, v := range all {
			have = append(have, describe(v))
		}
		what := "no disks"
		if r.opts.Disk != "" {
			what = fmt.Sprintf("nothing matches vtpmboot.disk=%s", r.opts.Disk)
		}
		if len(have) == 0 {
			have = []string{"none (is the block front end, xen-blkfront or virtio_blk, loaded?)"}
		}
		return nil, closeOnce, fatal("find filesystems", fmt.Errorf("%s; volumes: %s", what, strings.Join(have, ", ")))
	}
	return sel, closeOnce, nil
}

func describe(v disks.Volume) string {
	if v.FS == nil {
		return fmt.Sprintf("%s (%s, not readable)", v.Name, v.Type)
	}
	return fmt.Sprintf("%s (%s label=%q uuid=%s)", v.Name, v.Type, v.Label, v.UUID)
}

func (r *run) choose(vols []disks.Volume) (*discover.Choice, error) {
	s := discover.Choose(vols, r.opts.Entry)
	choice, err := s.Choice, s.Err
	for i, f := range s.Found {
		r.printf("config %s /%s on %s (%s)%s", f.Format, f.Path, f.Volume.Name, f.Volume.GRUBDevice(), map[bool]string{true: " <- used", false: ""}[i == 0])
		if f.Err != nil {
			r.printf("  error: %q", f.Err.Error())
			continue
		}
		for _, w := range f.Menu.Warnings {
			r.debugf("  warning: %q", w)
		}
		for _, e := range f.Menu.Entries {
			mark := " "
			if choice != nil && i == 0 && e.Index == choice.Entry.Index {
				mark = "*"
			}
			initrds := make([]string, len(e.Initrds))
			for i, p := range e.Initrds {
				initrds[i] = discover.SourceName(p)
			}
			r.printf("  %s %s %q kernel=%q initrds=%q", mark, e.MenuPath, e.Title, discover.SourceName(e.Kernel), initrds)
		}
	}
	if err != nil {
		return nil, fatal("choose boot entry", err)
	}
	r.printf("chosen: %s", choice.Reason)
	r.printf("cmdline: %q", choice.Entry.Cmdline)
	return choice, nil
}

// kexecOverhead is what loading needs on top of twice the files' size:
// room for the stub itself to keep running and the kernel's bookkeeping.
const kexecOverhead = 16 << 20

// checkMemory refuses, before reading anything, an entry whose files cannot
// be held in memory through kexec: the memfds hold them once, and
// kexec_file_load copies them again into kernel memory. Running out half
// way would not give an error: PID 1 cannot be OOM-killed, so the kernel
// panics ("no killable processes") and the console never says why.
func (r *run) checkMemory(c *discover.Choice) error {
	avail, err := r.sys.MemAvailable()
	if err != nil {
		r.printf("warning: cannot tell available memory: %v", err)
		return nil
	}
	var files int64
	for i, name := range append([]string{c.Entry.Kernel}, c.Entry.Initrds...) {
		f, size, err := discover.OpenFile(c.Volume.FS, name, entry.MaxInitrdTotalSize)
		if err != nil {
			return nil // loading reports it, naming the file
		}
		f.Close()
		files += size
		if i > 0 {
			files += measure.InitrdPadding(size)
		}
	}
	need := 2*files + kexecOverhead
	if need > avail {
		return fatal("load kernel and initrds", fmt.Errorf("%w: they are %d MiB; loading and kexec need about %d MiB, the guest has %d MiB available: give the guest more memory (xl: memory=)",
			kexec.ErrNoMemory, files>>20, need>>20, avail>>20))
	}
	r.debugf("memory: files %d MiB, need about %d MiB, available %d MiB", files>>20, need>>20, avail>>20)
	return nil
}

// load reads the kernel and the initrd image once each into sealed memory
// (the initrds through measure.InitrdImage, the builder pcrsim hashes) and
// describes those very bytes as the measurement inputs.
func (r *run) load(c *discover.Choice) (kernel, initrd Image, in measure.Inputs, err error) {
	if err := r.checkMemory(c); err != nil {
		return nil, nil, in, err
	}
	src := c.Inputs()
	kname := src.Kernel.Name()
	kernel, err = r.loadImage(src.Kernel)
	if err != nil {
		return nil, nil, in, fatal("load kernel "+kname+" from "+c.Volume.Name, err)
	}
	in = measure.Inputs{
		Kernel:  measure.ReaderAtSource{Label: kname, R: kernel, Size: kernel.Size()},
		Cmdline: c.Entry.Cmdline,
	}
	r.printf("loaded kernel %s: %d bytes", kname, kernel.Size())
	r.loadedBytes = kernel.Size()
	if len(src.Initrds) == 0 {
		return kernel, nil, in, nil
	}
	img := measure.InitrdImage(src.Initrds)
	initrd, err = r.loadImage(img)
	if err != nil {
		kernel.Close()
		if errors.Is(err, kexec.ErrNoMemory) {
			return nil, nil, in, fatal("load initrd", fmt.Errorf("initrd too large for guest memory: %s: give the guest more memory (xl: memory=)", err))
		}
		return nil, nil, in, fatal("load initrd from "+c.Volume.Name, err)
	}
	// The measured bytes are the whole sealed image kexec gets, padding
	// between files included, read back from the memfd; its name is the
	// file names joined by spaces, as measure.Plan names several files.
	in.Initrds = []measure.Source{measure.ReaderAtSource{Label: img.Name(), R: initrd, Size: initrd.Size()}}
	r.printf("loaded initrds %s: %d bytes from %d files", img.Name(), initrd.Size(), len(src.Initrds))
	r.loadedBytes += initrd.Size()
	return kernel, initrd, in, nil
}

// loadImage copies a source into a sealed image: what kexec gets and
// what is measured.
func (r *run) loadImage(src measure.Source) (Image, error) {
	rc, err := src.Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return r.sys.NewImage(src.Name(), rc)
}

func (r *run) measure(target pcrbank.Target, in measure.Inputs) error {
	banks, err := target.Banks()
	if err != nil {
		return fatal("measure", fmt.Errorf("read TPM PCR banks: %w", err))
	}
	// The three parts are timed apart because under emulation they differ
	// by cause: hashing is CPU (no SHA-NI under QEMU TCG), Apply is TPM
	// round trips, the log is console output.
	t0 := r.sys.Now()
	ms, err := measure.Plan(banks, in, nil)
	if err != nil {
		return fatal("measure", err)
	}
	t1 := r.sys.Now()
	steps, err := measure.Apply(target, ms)
	t2 := r.sys.Now()
	defer func() {
		r.debugf("measure: hashing %dms (%d bytes, %d banks), TPM %dms (%d extends), console %dms",
			t1.Sub(t0).Milliseconds(), r.loadedBytes, len(banks), t2.Sub(t1).Milliseconds(), len(steps), r.sys.Now().Sub(t2).Milliseconds())
	}()
	r.res.Steps = steps
	if err != nil {
		// The trace so far shows how far the TPM got.
		measure.WriteTrace(r.out, steps)
		next := "?"
		if len(steps) < len(ms) {
			next = fmt.Sprintf("%s into PCR %d", ms[len(steps)].Kind, ms[len(steps)].PCR)
		}
		return fatal(fmt.Sprintf("TPM extend %d of %d (%s)", len(steps)+1, len(ms), next), fmt.Errorf("%w; not booting: PCRs 4 and 5 would not describe this boot", err))
	}
	if err := measure.WriteTrace(r.out, steps); err != nil {
		return fatal("print trace", err)
	}
	var log bytes.Buffer
	if err := eventlog.Write(&log, eventlog.FormatFor(target.Version()), banks, ms); err != nil {
		return fatal("event log", err)
	}
	eventlog.PrintConsole(r.out, log.Bytes())
	if sum, err := r.sys.AppendFirmwareLog(target.Version(), ms); err != nil {
		r.printf("event log not appended to the firmware's log (the log above is the only copy): %v", err)
	} else {
		r.printf("event log appended to the firmware's log: %s", sum)
	}
	return nil
}
