package loaderimg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vtpmboot/vtpmboot/internal/qemutest"
)

// ObserverExit is QEMU's exit status when the observer ends the VM
// (isa-debug-exit: value 0x31 << 1 | 1).
const ObserverExit = 99

// BootResult is one boot of a disk image.
type BootResult struct {
	// Console is everything on COM1: the loader's output, if it writes
	// any, then the observer's report.
	Console []byte
	// Observed is the observer's report; nil when the loader never
	// started the observer.
	Observed *Observation
	// Waited says the deadline passed with the VM still running: the
	// loader is waiting for a person (a menu, a password prompt).
	Waited   bool
	Duration time.Duration
	// Err is why QEMU ended otherwise (a crash, a triple fault).
	Err error
	// Screen is the VGA text screen when the deadline passed (what a
	// person would see: the menu, a password prompt, an error), read from
	// video memory through QEMU's monitor.
	Screen string
}

// Boot boots img under QEMU TCG with SeaBIOS (i440fx, IDE disk, 256 MiB),
// COM1 to a file and isa-debug-exit at port 0xf4 for the observer. The
// disk is opened with snapshot=on: a loader that writes its environment
// block (savedefault, recordfail) cannot change the image pcrsim reads.
func Boot(ctx context.Context, img string, deadline time.Duration) (*BootResult, error) {
	// One emulated VM per core across every test process on the machine;
	// the wait is not part of the deadline.
	unlock, err := qemutest.LockMachine(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	dir := filepath.Dir(img)
	if strings.ContainsAny(img, ",") {
		return nil, fmt.Errorf("image path %q has a comma, which QEMU's -drive syntax cannot take", img)
	}
	// A short directory of our own for the monitor socket: sun_path has
	// 108 bytes, and QEMU's option syntax no commas.
	sockDir, err := os.MkdirTemp("", "ldrmon")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(sockDir)
	serial := filepath.Join(dir, "serial.log")
	monitor := filepath.Join(sockDir, "m.sock")
	vga := filepath.Join(dir, "vga.bin")
	os.Remove(serial)
	os.Remove(vga)
	bctx, cancel := context.WithTimeout(ctx, deadline+10*time.Second)
	defer cancel()
	args := []string{
		"-machine", "pc,accel=tcg", "-m", "256", "-display", "none",
		"-monitor", "unix:" + monitor + ",server=on,wait=off",
		"-serial", "file:" + serial, "-parallel", "none", "-net", "none",
		"-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
		"-drive", "file=" + img + ",format=raw,if=ide,snapshot=on",
		"-no-reboot",
	}
	cmd := exec.CommandContext(bctx, "qemu-system-x86_64", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("qemu: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	waited := false
	select {
	case err = <-done:
	case <-time.After(deadline):
		// Still running: save the text screen, then stop the VM.
		waited = true
		// HMP parses an unquoted file name as an expression ("/" divides).
		monitorCmd(monitor, "pmemsave 0xb8000 4000 \""+vga+"\"", "quit")
		err = <-done
	}
	r := &BootResult{Duration: time.Since(start)}
	if waited {
		r.Screen = vgaText(vga)
	}
	r.Console, _ = os.ReadFile(serial)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	var ee *exec.ExitError
	switch {
	case waited:
		r.Waited = true
	case errors.As(err, &ee) && ee.ExitCode() == ObserverExit:
		// isa-debug-exit with the observer's value: it finished.
	case err != nil:
		r.Err = fmt.Errorf("qemu: %v: %s", err, out.String())
	default:
		r.Err = fmt.Errorf("qemu exited without the observer (reset or power-off): %s", out.String())
	}
	if r.Err == nil && !r.Waited {
		o, perr := ParseObservation(r.Console)
		if perr != nil {
			r.Err = perr
		}
		r.Observed = o
	}
	return r, nil
}

// monitorCmd sends commands to QEMU's human monitor, each given time to
// finish before the next.
func monitorCmd(sock string, cmds ...string) {
	c, err := net.DialTimeout("unix", sock, 2*time.Second)
	if err != nil {
		return
	}
	defer c.Close()
	go io.Copy(io.Discard, c)
	for _, cmd := range cmds {
		c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.WriteString(c, cmd+"\n"); err != nil {
			return
		}
		time.Sleep(700 * time.Millisecond)
	}
}

// vgaText turns an 80x25 VGA text buffer (character, attribute pairs)
// into lines, trailing blanks dropped.
func vgaText(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 4000 {
		return ""
	}
	var lines []string
	for row := 0; row < 25; row++ {
		var l []byte
		for col := 0; col < 80; col++ {
			ch := b[(row*80+col)*2]
			if ch < 0x20 || ch > 0x7e {
				ch = ' '
			}
			l = append(l, ch)
		}
		if t := strings.TrimRight(string(l), " "); t != "" {
			lines = append(lines, t)
		}
	}
	return strings.Join(lines, "\n")
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
