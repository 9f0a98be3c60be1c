package swtpm

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Paths of one swtpm's sockets and pid file, all in one directory.
type Paths struct {
	Data, Ctrl, PID string
}

// PathsIn names U.sock, U.ctrl and U.pid in dir: the layout
// vtpmback --socket-dir has always used for admin-started swtpms.
func PathsIn(dir, uuid string) Paths {
	return Paths{
		Data: filepath.Join(dir, uuid+".sock"),
		Ctrl: filepath.Join(dir, uuid+".ctrl"),
		PID:  filepath.Join(dir, uuid+".pid"),
	}
}

// StartOptions is one swtpm to start.
type StartOptions struct {
	Binary string // "" means swtpm from PATH
	State  string // its --tpmstate directory, provisioned
	TPM2   bool
	Paths  Paths
	Log    string // swtpm's --log file; "" none
}

// Start runs swtpm as a daemon (--daemon: it forks and its parent
// exits once the sockets are bound), so that it outlives vtpmback: a
// restart of vtpmback must not take a running guest's TPM with it (the
// unit's KillMode=process leaves it alone). It is not initialised: the
// caller sends CMD_INIT (a reset or a resume) and owns both sockets. It
// returns swtpm's pid from its pid file.
func Start(o StartOptions) (int, error) {
	bin := o.Binary
	if bin == "" {
		bin = "swtpm"
	}
	for _, p := range []string{o.Paths.Data, o.Paths.Ctrl, o.Paths.PID} {
		// A stale socket from a dead swtpm would make bind fail.
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return 0, fmt.Errorf("start swtpm: %w", err)
		}
	}
	args := []string{"socket",
		"--tpmstate", "dir=" + o.State + ",mode=0600",
		"--server", "type=unixio,path=" + o.Paths.Data + ",mode=0600",
		"--ctrl", "type=unixio,path=" + o.Paths.Ctrl + ",mode=0600",
		"--pid", "file=" + o.Paths.PID,
		"--daemon",
	}
	if o.TPM2 {
		args = append(args, "--tpm2")
	}
	if o.Log != "" {
		args = append(args, "--log", "file="+o.Log)
	}
	cmd := exec.Command(bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// Its own session: a signal to vtpmback's process group (a ^C in a
	// terminal, a shell's job control) does not reach it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("start swtpm for %s: %v: %s", o.State, err, strings.TrimSpace(out.String()))
	}
	pid, err := ReadPID(o.Paths.PID)
	if err != nil {
		return 0, fmt.Errorf("start swtpm for %s: %w", o.State, err)
	}
	return pid, nil
}

// ReadPID reads a pid file swtpm wrote.
func ReadPID(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("pid file %s: %q is not a pid", path, bytes.TrimSpace(b))
	}
	return pid, nil
}

// Alive says whether pid is a running swtpm: kill(pid, 0) succeeds and
// /proc/pid/comm says swtpm (a recycled pid is some other program).
func Alive(pid int) bool {
	if pid <= 1 || syscall.Kill(pid, 0) != nil {
		return false
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return false
	}
	s := strings.TrimSpace(string(comm))
	if s != "swtpm" {
		return false
	}
	// A zombie has exited; it only waits for its parent.
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	if i := bytes.LastIndexByte(stat, ')'); i > 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
		return false
	}
	return true
}

// WaitGone waits until pid is no longer a running swtpm.
func WaitGone(pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for Alive(pid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// VolatileStateFile is where swtpm keeps a stored volatile state
// (libtpms's TPM_VOLATILESTATE_NAME under swtpm's per-version file
// prefix: tpm2-00.volatilestate or tpm-00.volatilestate).
func VolatileStateFile(state string, tpm2 bool) string {
	if tpm2 {
		return filepath.Join(state, "tpm2-00.volatilestate")
	}
	return filepath.Join(state, "tpm-00.volatilestate")
}

// PermanentStateFile is the provisioned TPM's permanent state.
func PermanentStateFile(state string, tpm2 bool) string {
	if tpm2 {
		return filepath.Join(state, "tpm2-00.permall")
	}
	return filepath.Join(state, "tpm-00.permall")
}
