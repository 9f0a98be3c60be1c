package loader

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vtpmboot/vtpmboot/boot/eventlog"
	"github.com/vtpmboot/vtpmboot/boot/measure"
	"github.com/vtpmboot/vtpmboot/boot/termsafe"
	"github.com/vtpmboot/vtpmboot/config"
	"github.com/vtpmboot/vtpmboot/host/buildinfo"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// Env is what Run needs from outside the arguments.
type Env struct {
	// Exe is the loader's own binary, run again as the picker;
	// "/proc/self/exe" when empty.
	Exe string
	// Measurer overrides the one the arguments name (tests, and the
	// vtpmback client once wired); nil takes the arguments'.
	Measurer Measurer
	Out      io.Writer // progress lines (libxl's bootloader log)
	Now      func() time.Time
}

// Result says what a successful run did.
type Result struct {
	Picked   *picked
	Measured *Measured // nil when booting unmeasured (vtpmboot.tpm=optional)
	// Times of the phases, for the benchmark: reading the disk (the
	// picker's wall time, which streams the chosen bytes to the files
	// while the parent hashes them), hashing (the slowest bank's busy
	// time, inside Read, plus the plan), and the vTPM's round trips.
	Read, Hash, TPM time.Duration
}

// Refusal is an error the loader prints as its one line.
type Refusal struct {
	What string
	Err  error
}

func (r *Refusal) Error() string { return r.What + ": " + r.Err.Error() }
func (r *Refusal) Unwrap() error { return r.Err }

func refuse(what string, err error) error { return &Refusal{What: what, Err: err} }

// Main is the loader's main: it prints one line per refusal on stderr
// (which libxl writes to /var/log/xen/bootloader.<domid>.log) and returns
// the exit status.
func Main(argv []string, stdout, stderr io.Writer) int {
	if len(argv) > 1 && argv[1] == ChildFlag {
		return ChildMain(argv[2:], stdout)
	}
	if len(argv) == 2 {
		switch argv[1] {
		case "--help", "-h":
			fmt.Fprint(stdout, Usage)
			return 0
		case "--version":
			fmt.Fprintln(stdout, buildinfo.Line("vtpmboot-loader"))
			return 0
		}
	}
	a, err := ParseArgs(argv[1:])
	if err != nil {
		fmt.Fprintln(stderr, "vtpmboot-loader: refused: "+termsafe.Line(err.Error()))
		return 2
	}
	if _, err := Run(a, Env{Out: stdout}); err != nil {
		fmt.Fprintln(stderr, "vtpmboot-loader: refused: "+termsafe.Line(err.Error()))
		return 1
	}
	return 0
}

// Run is one invocation: choose, write, measure, answer. On any error
// nothing is left in the output directory and the output file is not
// written, so libxl starts no domain.
func Run(a *Args, env Env) (*Result, error) {
	if env.Exe == "" {
		env.Exe = "/proc/self/exe"
	}
	if env.Out == nil {
		env.Out = io.Discard
	}
	if env.Now == nil {
		env.Now = time.Now
	}
	say := func(format string, args ...any) {
		fmt.Fprintln(env.Out, "vtpmboot-loader: "+termsafe.Line(fmt.Sprintf(format, args...)))
	}
	for _, w := range a.Warnings {
		say("warning: %s", w)
	}
	if err := checkOutputDir(a.OutputDir); err != nil {
		return nil, refuse("output directory", err)
	}
	m := env.Measurer
	switch {
	case m != nil:
	case a.VTPMSocketDir != "":
		m = SocketDir{Dir: a.VTPMSocketDir}
	case a.VTPMUUID != "":
		m = VTPMBack{Socket: a.VTPMBackSocket, Banks: a.VTPMBanks}
	}
	// Before the disk is read, as the stub opens its TPM first: a boot
	// that cannot be measured is refused without touching the disk.
	if m == nil && a.Opts.TPM == config.TPMRequired {
		return nil, refuse("no vTPM", fmt.Errorf("%w for domain %d: give bootloader_args [\"--vtpm-uuid=UUID\"] for the vTPM vtpmback serves (the uuid of the config's vtpm= line), with \"--vtpm-socket-dir=DIR\" for an swtpm at DIR/UUID.sock (vtpmboot.tpm=required; to boot unmeasured add \"vtpmboot.tpm=optional\")", ErrNoVTPM, a.DomID))
	}
	res := &Result{}
	// The vTPM first, as the stub opens its TPM before it reads a disk: a
	// boot that cannot be measured is refused without touching the disk,
	// and its banks are known before the chosen bytes arrive.
	var sess Session
	if m != nil {
		t := env.Now()
		s, err := m.Begin(a.DomID, a.VTPMUUID)
		res.TPM += env.Now().Sub(t)
		switch {
		case err == nil:
			sess = s
			defer sess.Close()
		case errors.Is(err, ErrNoVTPM) && a.Opts.TPM == config.TPMOptional:
			say("WARNING: %v; booting UNMEASURED (vtpmboot.tpm=optional)", err)
		default:
			return nil, refuse("vTPM", err)
		}
	} else {
		say("WARNING: no vTPM; booting UNMEASURED (vtpmboot.tpm=optional)")
	}
	var banks []pcrbank.Alg
	if sess != nil {
		banks = sess.Banks()
	}
	disk, err := os.OpenFile(a.Disk, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, refuse("disk", err)
	}
	defer disk.Close()
	req := pickRequest{Path: a.Disk, VDev: a.VDev, Entry: a.Opts.Entry, Disk: a.Opts.Disk, Extra: a.Extra}
	t0 := env.Now()
	// Reading and hashing overlap: the parent hashes each chunk as it
	// writes it (receive), so this phase is both; Hash below is what is
	// left after the last byte.
	p, err := runPicker(env.Exe, disk, a.RunAs, req, func(r io.Reader) (*picked, error) { return receive(r, a.OutputDir, banks) })
	res.Read = env.Now().Sub(t0)
	if err != nil {
		return nil, refuse("choose boot entry", err)
	}
	res.Picked = p
	disk.Close()
	ok := false
	defer func() {
		if !ok {
			cleanup(p)
		}
	}()
	if a.RunAs >= 0 && (p.UID != a.RunAs || p.CapEff != "0000000000000000") {
		return nil, refuse("restricted mode", fmt.Errorf("the disk reader ran as uid %d with capabilities %q, not as uid %d with none", p.UID, p.CapEff, a.RunAs))
	}
	say("disk read by uid %d, capabilities %s, data limit %d MiB, CPU limit %d s", p.UID, p.CapEff, p.DataLimit>>20, p.CPULimit)
	say("domain %d: %s; kernel %s, initrd %s", a.DomID, p.Reason, p.Kernel, orNone(p.Initrd))
	say("cmdline: %q", p.Cmdline)
	if sess != nil {
		// The sources are the written files (root-only, see
		// checkOutputDir); their digests are those of the bytes written
		// into them, computed as they were written.
		in := measure.Inputs{Kernel: namedFile{p.Kernel, p.KernelPath}, Cmdline: p.Cmdline}
		known := map[string]pcrbank.Digests{p.KernelPath: p.KernelDigests}
		if p.InitrdPath != "" {
			in.Initrds = []measure.Source{namedFile{p.Initrd, p.InitrdPath}}
			known[p.InitrdPath] = p.InitrdDigests
		}
		t := env.Now()
		ms, err := measure.Plan(banks, in, streamed{known})
		res.Hash = p.HashBusy + env.Now().Sub(t)
		if err != nil {
			return nil, refuse("measure", err)
		}
		t = env.Now()
		mr, err := sess.Apply(ms)
		res.TPM += env.Now().Sub(t)
		if err != nil {
			return nil, refuse("measure", err)
		}
		res.Measured = mr
		say("measured into vTPM %s (%v, banks %v)", a.VTPMUUID, mr.Version, mr.Banks)
		var log bytes.Buffer
		if err := eventlog.Write(&log, eventlog.FormatFor(mr.Version), mr.Banks, mr.Measurements); err != nil {
			say("warning: event log: %v", err)
		} else {
			// The log is a copy for verifiers; the PCRs are the record,
			// so failing to store it does not stop the boot.
			if lp, ok := sess.(interface{ PutLog([]byte) error }); ok {
				if err := lp.PutLog(log.Bytes()); err != nil {
					say("warning: event log not handed to vtpmback: %v", err)
				}
			}
			if a.StateDir != "" {
				if err := keepLog(a.StateDir, a.VTPMUUID, log.Bytes()); err != nil {
					say("warning: event log not kept: %v", err)
				}
			}
		}
	}
	if err := writeOutput(a.Output, p); err != nil {
		return nil, refuse("output", err)
	}
	// bench/loader.sh parses this line: keep "phases read Nus hash Nus tpm Nus".
	// read is the picker's whole run (wall time), during which the bytes
	// are hashed as they arrive; hash is the time the slowest bank spent
	// hashing (overlapped with read) plus the plan after it.
	say("phases read %dus hash %dus tpm %dus", res.Read.Microseconds(), res.Hash.Microseconds(), res.TPM.Microseconds())
	ok = true
	return res, nil
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// checkOutputDir makes sure only this process's user (root, under libxl)
// can create, replace or change the files the loader writes there:
// libxl creates it (mkdir 0600 in libxl__bootloader_run) and reads the
// files right after the loader exits (parse_bootloader_result maps each
// and unlinks it), so no one but root could have swapped the bytes
// between the hash and the load. A directory someone else owns or may
// write is refused.
func checkOutputDir(dir string) error {
	st, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%s: no owner information", dir)
	}
	if int(sys.Uid) != os.Geteuid() {
		return fmt.Errorf("%s is owned by uid %d, not by this loader's uid %d", dir, sys.Uid, os.Geteuid())
	}
	if st.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%s is writable by others (mode %v)", dir, st.Mode().Perm())
	}
	return nil
}

// writeOutput writes pygrub's simple0 answer, which libxl reads in
// parse_bootloader_result: NUL-terminated "kernel PATH", "ramdisk PATH"
// (only with an initrd) and "args CMDLINE" items.
func writeOutput(path string, p *picked) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "kernel %s\x00", p.KernelPath)
	if p.InitrdPath != "" {
		fmt.Fprintf(&b, "ramdisk %s\x00", p.InitrdPath)
	}
	fmt.Fprintf(&b, "args %s\x00", p.Cmdline)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b.Bytes()); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// keepLog stores the boot's TCG event log as StateDir/<uuid>.log, the
// copy a verifier or vtpmback's event-log channel reads.
func keepLog(dir, uuid string, log []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".log-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(log); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, strings.ToLower(uuid)+".log"))
}
