// Package swtpmtest runs swtpm instances for tests: a real TPM 1.2 or 2.0
// (libtpms) per test, in the test's temporary directory, killed when the
// test ends.
//
// Banks: a fresh swtpm 0.7.1 TPM 2.0 state that was not prepared with
// swtpm_setup has all four banks allocated, sha1, sha256, sha384 and sha512,
// each with PCRs 0..23 selected (checked with tpm2_getcap pcrs). Production
// vTPMs set up by swtpm_setup usually have only sha256 (its
// --pcr-banks default), so tests must not assume either.
package swtpmtest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/vtpmboot/vtpmboot/internal/testenv"
	"github.com/vtpmboot/vtpmboot/pcrbank"
	"github.com/vtpmboot/vtpmboot/tpmfront"
)

// Instance is one running swtpm.
type Instance struct {
	Version pcrbank.Version
	Dir     string // TPM state and sockets
	// Unix-socket instances (Start): the TPM command socket and swtpm's
	// control channel.
	ServerSock, CtrlSock string
	// TCP instances (StartTCP): commands on Port, control on CtrlPort =
	// Port+1, the layout tpm2-tools' swtpm TCTI expects.
	Host           string
	Port, CtrlPort int
	// State is the TPM state directory: Dir/state, or the one given to
	// StartTCPWithState/StartWithState.
	State string

	t     testing.TB
	args  []string
	ready func() bool
	cmd   *exec.Cmd
	done  chan struct{} // closed when swtpm has exited
	log   string
}

// readyTimeout bounds swtpm's start-up, which takes ~50 ms on an idle
// machine but much longer on a loaded 2-core CI box.
const readyTimeout = 20 * time.Second

// Start runs `swtpm socket` with unixio command and control sockets, with
// the TPM already initialised and started (TPM_Startup/TPM2_Startup CLEAR),
// as firmware would have left it.
func Start(t testing.TB, v pcrbank.Version) *Instance {
	t.Helper()
	return StartWithState(t, v, "")
}

// StartWithState is Start on a state directory the caller keeps; "" means
// a fresh one.
func StartWithState(t testing.TB, v pcrbank.Version, state string) *Instance {
	t.Helper()
	testenv.NeedCommands(t, "swtpm")
	dir := t.TempDir()
	in := &Instance{Version: v, Dir: dir, t: t, State: state,
		ServerSock: filepath.Join(dir, "srv.sock"), CtrlSock: filepath.Join(dir, "ctrl.sock")}
	args := []string{
		"--server", "type=unixio,path=" + in.ServerSock,
		"--ctrl", "type=unixio,path=" + in.CtrlSock,
	}
	ready := func() bool { return ctrlAnswers("unix", in.CtrlSock) }
	if err := in.start(args, ready); err != nil {
		t.Fatal(err)
	}
	return in
}

// StartTCP runs swtpm listening on two consecutive free loopback ports, so
// tpm2-tools can reach it with TCTI() and tpmfront with Spec().
func StartTCP(t testing.TB, v pcrbank.Version) *Instance {
	t.Helper()
	return StartTCPWithState(t, v, "")
}

// StartTCPWithState is StartTCP on a state directory the caller keeps
// (e.g. to boot a VM with it afterwards; swtpm_setup may have prepared
// it); "" means a fresh one in the test's temporary directory.
func StartTCPWithState(t testing.TB, v pcrbank.Version, state string) *Instance {
	t.Helper()
	testenv.NeedCommands(t, "swtpm")
	dir := t.TempDir()
	var lastErr error
	// Another test (or engineer) can take the ports between our check and
	// swtpm's bind: try a few pairs.
	for range 10 {
		port, err := freePortPair()
		if err != nil {
			t.Fatal(err)
		}
		in := &Instance{Version: v, Dir: dir, t: t, Host: "127.0.0.1", Port: port, CtrlPort: port + 1, State: state}
		args := []string{
			"--server", fmt.Sprintf("type=tcp,port=%d,bindaddr=%s", in.Port, in.Host),
			"--ctrl", fmt.Sprintf("type=tcp,port=%d,bindaddr=%s", in.CtrlPort, in.Host),
		}
		ready := func() bool { return ctrlAnswers("tcp", net.JoinHostPort(in.Host, strconv.Itoa(in.CtrlPort))) }
		if lastErr = in.start(args, ready); lastErr == nil {
			return in
		}
	}
	t.Fatalf("start swtpm on TCP: %v", lastErr)
	return nil
}

func freePortPair() (int, error) {
	for range 100 {
		p := 20000 + rand.IntN(40000)
		l1, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		l2, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+1))
		l1.Close()
		if err != nil {
			continue
		}
		l2.Close()
		return p, nil
	}
	return 0, errors.New("no two consecutive free loopback ports found")
}

func (in *Instance) start(extra []string, ready func() bool) error {
	in.args, in.ready = extra, ready
	return in.run()
}

// Restart power-cycles the TPM: swtpm is killed and started again on the
// same state and sockets. A TPM 2.0's PCR allocation (tpm2_pcrallocate)
// takes effect here; PCRs 0..15 are back at zero.
func (in *Instance) Restart() {
	in.t.Helper()
	in.Kill()
	if err := in.run(); err != nil {
		in.t.Fatal(err)
	}
}

func (in *Instance) run() error {
	extra, ready := in.args, in.ready
	args := []string{"socket"}
	if in.Version == pcrbank.Version20 {
		args = append(args, "--tpm2")
	} else if in.Version != pcrbank.Version12 {
		return fmt.Errorf("swtpm: cannot emulate a %v", in.Version)
	}
	if in.State == "" {
		in.State = filepath.Join(in.Dir, "state")
	}
	state := in.State
	if err := os.MkdirAll(state, 0o700); err != nil {
		return err
	}
	args = append(args, "--tpmstate", "dir="+state)
	args = append(args, extra...)
	args = append(args, "--flags", "not-need-init,startup-clear")
	in.log = filepath.Join(in.Dir, "swtpm.log")
	logf, err := os.Create(in.log)
	if err != nil {
		return err
	}
	defer logf.Close()
	in.cmd = exec.Command("swtpm", args...)
	in.cmd.Stdout, in.cmd.Stderr = logf, logf
	if err := in.cmd.Start(); err != nil {
		return fmt.Errorf("start swtpm: %w", err)
	}
	in.done = make(chan struct{})
	go func() { in.cmd.Wait(); close(in.done) }()
	in.t.Cleanup(in.Kill)
	deadline := time.Now().Add(readyTimeout)
	for !ready() {
		select {
		case <-in.done:
			return fmt.Errorf("swtpm %v exited during start-up: %s; log: %s", args, in.cmd.ProcessState, in.Log())
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			in.Kill()
			return fmt.Errorf("swtpm %v not ready after %v; log: %s", args, readyTimeout, in.Log())
		}
	}
	return nil
}

// ctrlAnswers asks swtpm's control channel for its capabilities
// (CMD_GET_CAPABILITY). A socket file or a successful connect is not
// enough: the files appear at bind(), and a connection that waits in the
// listen backlog (swtpm listens with a backlog of 1 and serves one client
// at a time) stalls the next client for seconds. An answer means swtpm's
// main loop runs.
func ctrlAnswers(network, addr string) bool {
	c, err := net.DialTimeout(network, addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte{0, 0, 0, 1}); err != nil {
		return false
	}
	var rsp [8]byte // result code, capability bits
	_, err = io.ReadFull(c, rsp[:])
	return err == nil && binary.BigEndian.Uint32(rsp[:4]) == 0
}

// Log returns what swtpm printed so far.
func (in *Instance) Log() string {
	b, _ := os.ReadFile(in.log)
	return string(bytes.TrimSpace(b))
}

// Spec is the tpmfront.Open spec of this instance.
func (in *Instance) Spec() string {
	if in.Port != 0 {
		return fmt.Sprintf("swtpm:tcp:%s", net.JoinHostPort(in.Host, strconv.Itoa(in.Port)))
	}
	return "swtpm:unix:" + in.ServerSock
}

// TCTI is the tpm2-tools -T argument for a StartTCP instance (tpm2-tools
// 5.x with libtss2-tcti-swtpm: host and command port; control is port+1).
func (in *Instance) TCTI() string {
	if in.Port == 0 {
		in.t.Fatal("swtpmtest: TCTI needs an instance from StartTCP")
	}
	return fmt.Sprintf("swtpm:host=%s,port=%d", in.Host, in.Port)
}

// Open connects a pcrbank.Target, failing the test if it cannot; the
// Target is closed when the test ends. swtpm serves one connection at a
// time, so close it before another client (tpm2-tools) needs the TPM.
func (in *Instance) Open() pcrbank.Target {
	in.t.Helper()
	tg, err := tpmfront.Open(in.Spec())
	if err != nil {
		in.t.Fatalf("open swtpm: %v; log: %s", err, in.Log())
	}
	in.t.Cleanup(func() { tg.Close() })
	return tg
}

// Kill ends swtpm at once (SIGKILL), as a TPM dying mid-boot would, and
// waits until it is gone. Safe to call more than once.
func (in *Instance) Kill() {
	if in.cmd == nil || in.cmd.Process == nil {
		return
	}
	select {
	case <-in.done:
		return
	default:
	}
	in.cmd.Process.Kill()
	<-in.done
}

// Freeze stops swtpm (SIGSTOP) without closing its sockets: a TPM that
// stops answering. Kill (run at cleanup) still ends it.
func (in *Instance) Freeze() {
	if err := in.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		in.t.Fatalf("freeze swtpm: %v", err)
	}
}
