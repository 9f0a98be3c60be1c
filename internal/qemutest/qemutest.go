// Package qemutest boots a kernel under QEMU (TCG, q35, SeaBIOS) with an
// swtpm-backed TPM 1.2 or 2.0 and collects the serial console, for the
// end-to-end tests and the demo. Every boot is bounded by a timeout and
// leaves no process or temporary directory behind.
package qemutest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vtpmboot/vtpmboot/internal/target/report"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// Disk is a drive attached to the VM.
type Disk struct {
	Path     string
	ReadOnly bool
	// If is QEMU's interface type; "" means "virtio".
	If string
	// Format is QEMU's image format; "" means "raw".
	Format string
}

// Options describe one boot.
type Options struct {
	Kernel string // required
	Initrd string
	// Append is the kernel command line. Use "console=ttyS0 panic=-1" at
	// least: with -no-reboot a panic then ends QEMU instead of hanging.
	Append string
	Disks  []Disk
	// TPM is Version12 or Version20; the zero value (VersionSoftware)
	// boots without a TPM.
	TPM pcrbank.Version
	// TPMStateDir keeps the swtpm state in a directory the caller owns (to
	// boot twice with the same TPM); "" uses a fresh temporary one.
	TPMStateDir string
	// KillTPMAfter, when not empty, kills swtpm as soon as the console
	// shows this string, for tests of a TPM vanishing mid-boot.
	KillTPMAfter string
	// Memory in MiB; 0 means 512.
	Memory int
	// Timeout bounds the whole boot; 0 means DefaultTimeout.
	Timeout time.Duration
	// Console, if set, also receives the console output as it arrives.
	Console io.Writer
	// ExtraArgs are appended to QEMU's command line.
	ExtraArgs []string
}

// DefaultTimeout is generous: a TCG boot takes 10-15 s on an idle machine
// and several times that on a shared one.
const DefaultTimeout = 5 * time.Minute

// Result is what a boot produced.
type Result struct {
	// Console is the serial output (QEMU's stdout), "\r\n" line ends kept.
	Console string
	// Stderr is QEMU's own diagnostics.
	Stderr string
	// ExitErr is QEMU's exit status; nil for a clean power-off (or a
	// kernel panic, which -no-reboot also turns into exit 0).
	ExitErr error
	// Duration is from QEMU start to exit.
	Duration time.Duration
	// TPMKilled says KillTPMAfter matched and swtpm was killed.
	TPMKilled bool
	// Args is the QEMU command line, for error messages and the demo.
	Args []string
}

// Boot runs one VM to completion. The error is non-nil when the harness
// could not start the VM or the boot timed out; the Result then still holds
// whatever console output there was. QEMU's own exit status is
// Result.ExitErr.
func Boot(ctx context.Context, o Options) (*Result, error) {
	if o.Kernel == "" {
		return nil, errors.New("qemutest: no kernel")
	}
	for _, p := range append([]string{o.Kernel, o.Initrd}, diskPaths(o.Disks)...) {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("qemutest: %w", err)
		}
	}
	unlock, err := LockMachine(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	timeout := o.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	mem := o.Memory
	if mem == 0 {
		mem = 512
	}
	tmp, err := os.MkdirTemp("", "qemutest-")
	if err != nil {
		return nil, fmt.Errorf("qemutest: %w", err)
	}
	defer os.RemoveAll(tmp)

	args := []string{
		"-machine", "q35,accel=tcg", "-cpu", "max", "-m", strconv.Itoa(mem), "-smp", "1",
		// No default NIC (SeaBIOS would try its option ROM), VGA or monitor.
		"-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio",
		"-no-reboot", "-kernel", o.Kernel,
	}
	if o.Initrd != "" {
		args = append(args, "-initrd", o.Initrd)
	}
	if o.Append != "" {
		args = append(args, "-append", o.Append)
	}
	for i, d := range o.Disks {
		ifc, format := d.If, d.Format
		if ifc == "" {
			ifc = "virtio"
		}
		if format == "" {
			format = "raw"
		}
		if strings.ContainsRune(d.Path, ',') {
			return nil, fmt.Errorf("qemutest: disk %d path %q contains a comma, which QEMU's -drive syntax cannot take", i, d.Path)
		}
		spec := fmt.Sprintf("file=%s,format=%s,if=%s", d.Path, format, ifc)
		if d.ReadOnly {
			spec += ",readonly=on"
		}
		args = append(args, "-drive", spec)
	}

	var tpm *swtpm
	switch o.TPM {
	case pcrbank.VersionSoftware:
	case pcrbank.Version12, pcrbank.Version20:
		state := o.TPMStateDir
		if state == "" {
			state = filepath.Join(tmp, "state")
			if err := os.Mkdir(state, 0o700); err != nil {
				return nil, fmt.Errorf("qemutest: %w", err)
			}
		}
		tpm, err = startSwtpm(ctx, o.TPM, state, filepath.Join(tmp, "swtpm.sock"))
		if err != nil {
			return nil, err
		}
		defer tpm.stop()
		args = append(args,
			"-chardev", "socket,id=chrtpm,path="+tpm.sock,
			"-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
			"-device", "tpm-tis,tpmdev=tpm0")
	default:
		return nil, fmt.Errorf("qemutest: unknown TPM version %v", o.TPM)
	}
	args = append(args, o.ExtraArgs...)

	res := &Result{Args: append([]string{"qemu-system-x86_64"}, args...)}
	cmd := exec.Command("qemu-system-x86_64", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("qemutest: %w", err)
	}
	con := &consoleBuf{tee: o.Console}
	if o.KillTPMAfter != "" && tpm != nil {
		con.match, con.onMatch = o.KillTPMAfter, func() {
			tpm.kill()
			res.TPMKilled = true
		}
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("qemutest: start qemu: %w", err)
	}
	copied := make(chan struct{})
	go func() {
		io.Copy(con, stdout)
		close(copied)
	}()
	waited := make(chan error, 1)
	go func() {
		<-copied // Wait closes the pipe: read everything first
		waited <- cmd.Wait()
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var bootErr error
	select {
	case res.ExitErr = <-waited:
	case <-timer.C:
		cmd.Process.Kill()
		res.ExitErr = <-waited
		bootErr = fmt.Errorf("qemutest: boot timed out after %v, QEMU killed", timeout)
	case <-ctx.Done():
		cmd.Process.Kill()
		res.ExitErr = <-waited
		bootErr = fmt.Errorf("qemutest: boot cancelled, QEMU killed: %w", ctx.Err())
	}
	res.Duration = time.Since(start)
	res.Console = con.String()
	res.Stderr = stderr.String()
	if bootErr != nil {
		return res, fmt.Errorf("%w\n%s", bootErr, res.Tail(2000))
	}
	return res, nil
}

func diskPaths(ds []Disk) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Path)
	}
	return out
}

// Tail is the end of the console (and QEMU's stderr), for error messages.
func (r *Result) Tail(n int) string {
	c := r.Console
	if len(c) > n {
		c = "..." + c[len(c)-n:]
	}
	s := "--- console tail ---\n" + c
	if r.Stderr != "" {
		s += "\n--- qemu stderr ---\n" + r.Stderr
	}
	return s
}

// consoleBuf collects output and fires onMatch once when match appears,
// even across write boundaries.
type consoleBuf struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	tee     io.Writer
	match   string
	onMatch func()
	fired   bool
}

func (c *consoleBuf) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	from := c.buf.Len() - len(c.match)
	c.buf.Write(p)
	if c.tee != nil {
		c.tee.Write(p)
	}
	if c.match != "" && !c.fired {
		if from < 0 {
			from = 0
		}
		if bytes.Contains(c.buf.Bytes()[from:], []byte(c.match)) {
			c.fired = true
			c.onMatch()
		}
	}
	return len(p), nil
}

func (c *consoleBuf) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

type swtpm struct {
	cmd    *exec.Cmd
	sock   string
	stderr bytes.Buffer
	done   chan struct{}
	once   sync.Once
}

func startSwtpm(ctx context.Context, v pcrbank.Version, state, sock string) (*swtpm, error) {
	args := []string{"socket", "--tpmstate", "dir=" + state, "--ctrl", "type=unixio,path=" + sock, "--terminate"}
	if v == pcrbank.Version20 {
		args = append(args, "--tpm2")
	}
	s := &swtpm{cmd: exec.Command("swtpm", args...), sock: sock, done: make(chan struct{})}
	s.cmd.Stderr = &s.stderr
	s.cmd.Stdout = &s.stderr
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("qemutest: start swtpm: %w", err)
	}
	go func() {
		s.cmd.Wait()
		close(s.done)
	}()
	// QEMU fails at once if the socket is not there yet; swtpm creates it
	// within milliseconds, the bound only keeps a broken swtpm from hanging
	// the test.
	deadline := time.After(30 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			return s, nil
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("qemutest: swtpm %s exited before listening: %s", strings.Join(args, " "), strings.TrimSpace(s.stderr.String()))
		case <-deadline:
			s.stop()
			return nil, fmt.Errorf("qemutest: swtpm did not create %s within 30 s", sock)
		case <-ctx.Done():
			s.stop()
			return nil, fmt.Errorf("qemutest: waiting for swtpm: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (s *swtpm) kill() {
	s.once.Do(func() { s.cmd.Process.Kill() })
}

// stop ends swtpm: --terminate makes it exit when QEMU hangs up, the kill
// covers a QEMU that never connected.
func (s *swtpm) stop() {
	select {
	case <-s.done:
		return
	case <-time.After(2 * time.Second):
	}
	s.kill()
	<-s.done
}

// TargetReport is what internal/target/targetinit reports from inside the VM.
type TargetReport = report.Report

// ParseTarget finds and decodes targetinit's report in console output.
func ParseTarget(console string) (*TargetReport, error) { return report.Parse(console) }

// LockMachine takes one of the machine's boot slots, held while a boot
// runs: one slot per CPU, each a lock file (VTPMBOOT_QEMU_LOCK, default
// /tmp/vtpm-qemu.lock, with ".0", ".1", ... appended). Test processes
// started side by side (several packages, several test runs) then run at
// most one emulated VM per core between them: a TCG guest is a core's
// worth of work, and more at once push boots past their timeouts. The wait
// is not part of a boot's timeout. These are different files from any
// lock a caller holds around a whole test run, so that cannot deadlock.
func LockMachine(ctx context.Context) (unlock func(), err error) {
	return lockSlots(ctx, 1)
}

// LockMachineAll takes every slot, for a boot that needs the whole
// machine (Xen under QEMU runs nested guests on every vCPU).
func LockMachineAll(ctx context.Context) (unlock func(), err error) {
	return lockSlots(ctx, runtime.NumCPU())
}

func lockSlots(ctx context.Context, want int) (func(), error) {
	base := os.Getenv("VTPMBOOT_QEMU_LOCK")
	if base == "" {
		base = filepath.Join(os.TempDir(), "vtpm-qemu.lock")
	}
	n := runtime.NumCPU()
	want = min(max(want, 1), n)
	var held []*os.File
	release := func() {
		for _, f := range held {
			unix.Flock(int(f.Fd()), unix.LOCK_UN)
			f.Close()
		}
		held = nil
	}
	for {
		// Slots are taken in order, so two callers that each want all
		// of them cannot hold half each and wait forever.
		for i := len(held); i < n && len(held) < want; i++ {
			path := fmt.Sprintf("%s.%d", base, i)
			f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
			if err != nil {
				release()
				return nil, fmt.Errorf("qemutest: lock %s: %w", path, err)
			}
			err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
			if err == nil {
				held = append(held, f)
				continue
			}
			f.Close()
			if !errors.Is(err, unix.EWOULDBLOCK) {
				release()
				return nil, fmt.Errorf("qemutest: lock %s: %w", path, err)
			}
			if want == n {
				break // all-slot callers wait for the next slot in order
			}
		}
		if len(held) == want {
			return release, nil
		}
		if want < n {
			release() // single slot: nothing held between tries
		}
		select {
		case <-ctx.Done():
			release()
			return nil, fmt.Errorf("qemutest: waiting for a boot slot (%s.*): %w", base, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
