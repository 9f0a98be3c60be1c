package vtpm

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vtpmboot/vtpmboot/host/swtpm"
	"github.com/vtpmboot/vtpmboot/host/vtpmctl"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
	"github.com/vtpmboot/vtpmboot/tpmfront"
)

// world is the hypervisor as the manager sees it: which domids exist and
// which have a device model started with -incoming. Xen cannot run here
// (e2e/xen runs vtpmback under real Xen); the swtpms are real.
type world struct {
	mu   sync.Mutex
	live map[uint32]bool
	dm   map[uint32][2]bool // hvm, incoming
	logs []string
}

func (w *world) exists(d uint32) (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.live[d], nil
}

func (w *world) deviceModel(d uint32) (bool, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	v := w.dm[d]
	return v[0], v[1]
}

func (w *world) set(d uint32, live bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.live[d] = live
}

func (w *world) hvm(d uint32, incoming bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.dm[d] = [2]bool{true, incoming}
}

func (w *world) logsWith(s string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, l := range w.logs {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return out
}

type env struct {
	t    *testing.T
	root string
	w    *world
	conf *Conf
}

func newEnv(t *testing.T) *env {
	testenv.NeedCommands(t, "swtpm", "swtpm_setup", "swtpm_localca")
	e := &env{t: t, root: t.TempDir(), w: &world{live: map[uint32]bool{}, dm: map[uint32][2]bool{}}, conf: &Conf{TPM12: map[string]bool{}}}
	t.Cleanup(e.killAll)
	return e
}

// manager starts a vtpmback's manager on the env's directories, as a
// (re)started vtpmback does.
func (e *env) manager() *Manager {
	e.t.Helper()
	m, err := New(Config{
		StateDir: filepath.Join(e.root, "tpm"), RunDir: filepath.Join(e.root, "run"),
		SocketDir: filepath.Join(e.root, "admin"), Conf: e.conf,
		CA: &swtpm.CA{Dir: filepath.Join(e.root, "ca")}, Exists: e.w.exists, DeviceModel: e.w.deviceModel,
		Logf: func(f string, a ...any) {
			e.t.Logf(f, a...)
			e.w.mu.Lock()
			e.w.logs = append(e.w.logs, sprintf(f, a...))
			e.w.mu.Unlock()
		},
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return m
}

// killAll ends every swtpm a test left (vtpmback leaves them running on
// purpose).
func (e *env) killAll() {
	for _, dir := range []string{filepath.Join(e.root, "run", "tpm"), filepath.Join(e.root, "admin")} {
		pids, _ := filepath.Glob(filepath.Join(dir, "*.pid"))
		for _, p := range pids {
			if pid, err := swtpm.ReadPID(p); err == nil && swtpm.Alive(pid) {
				syscall.Kill(pid, syscall.SIGKILL)
				swtpm.WaitGone(pid, 5*time.Second)
			}
		}
	}
}

const (
	u1 = "00000000-7e57-4000-8000-000000000001"
	u2 = "00000000-7e57-4000-8000-000000000002"
)

func be(d uint32) string { return "/local/domain/0/backend/vtpm/" + itoa(d) + "/0" }

// guest attaches domain d's device and returns its TPM as the guest's
// kernel would use it.
func (e *env) guest(m *Manager, d uint32, uuid string) (*Handle, tpmfront.Target) {
	e.t.Helper()
	e.w.set(d, true)
	h, _, err := m.Attach(d, be(d), uuid)
	if err != nil {
		e.t.Fatalf("attach domain %d: %v", d, err)
	}
	tg, err := tpmfront.OpenReadWriter(swtpm.ReadWriter(h))
	if err != nil {
		e.t.Fatalf("domain %d's TPM: %v", d, err)
	}
	return h, tg
}

// The expected values, with crypto/sha* only (the contract's formula),
// never from the code under test.
func fresh(a tpmfront.Alg, data ...string) []byte {
	v := make([]byte, a.Size())
	for _, d := range data {
		h := a.New()
		h.Write([]byte(d))
		x := a.New()
		x.Write(v)
		x.Write(h.Sum(nil))
		v = x.Sum(nil)
	}
	return v
}

func init() {
	// fresh's own check against a literal: SHA-256(0^32 || SHA-256("")).
	d := sha256.Sum256(nil)
	v := sha256.Sum256(append(make([]byte, 32), d[:]...))
	if !bytes.Equal(fresh(tpmfront.SHA256, ""), v[:]) {
		panic("fresh is wrong")
	}
}

func measure(t *testing.T, tg tpmfront.Target, pcr int, data string) {
	t.Helper()
	banks, err := tg.Banks()
	if err != nil {
		t.Fatal(err)
	}
	d := tpmfront.Digests{}
	for _, a := range banks {
		h := a.New()
		h.Write([]byte(data))
		d[a] = h.Sum(nil)
	}
	if err := tg.Extend(pcr, d); err != nil {
		t.Fatalf("extend PCR %d: %v", pcr, err)
	}
}

func pcr(t *testing.T, tg tpmfront.Target, i int, a tpmfront.Alg) []byte {
	t.Helper()
	v, err := tg.ReadPCR(i, a)
	if err != nil {
		t.Fatalf("read PCR %d: %v", i, err)
	}
	return v
}

func bankOf(tg tpmfront.Target) tpmfront.Alg {
	if tg.Version() == tpmfront.Version12 {
		return tpmfront.SHA1
	}
	return tpmfront.SHA256
}

func versions(t *testing.T, f func(t *testing.T, e *env)) {
	for _, v := range []string{"2.0", "1.2"} {
		t.Run("TPM"+v, func(t *testing.T) {
			e := newEnv(t)
			e.conf.TPM12[u1] = v == "1.2"
			f(t, e)
		})
	}
}

// xl reboot: a new domid for the same vTPM. Its PCRs are a fresh TPM's,
// and the same measurements give the same values as the first boot.
func TestRebootResets(t *testing.T) {
	versions(t, func(t *testing.T, e *env) {
		m := e.manager()
		h5, tg := e.guest(m, 5, u1)
		a := bankOf(tg)
		if want := map[bool]tpmfront.Version{true: tpmfront.Version12, false: tpmfront.Version20}[e.conf.TPM12[u1]]; tg.Version() != want {
			t.Fatalf("provisioned a %v, configured %v", tg.Version(), want)
		}
		measure(t, tg, 4, "kernel")
		if got := pcr(t, tg, 4, a); !bytes.Equal(got, fresh(a, "kernel")) {
			t.Fatalf("boot 1 PCR 4 = %x, want %x", got, fresh(a, "kernel"))
		}
		h5.Close()
		e.w.set(5, false) // xl reboot: destroy ...
		m.Reap()
		_, tg6 := e.guest(m, 6, u1) // ... and create
		if got := pcr(t, tg6, 4, a); !bytes.Equal(got, make([]byte, a.Size())) {
			t.Fatalf("boot 2 starts with PCR 4 = %x, want zero", got)
		}
		measure(t, tg6, 4, "kernel")
		if got := pcr(t, tg6, 4, a); !bytes.Equal(got, fresh(a, "kernel")) {
			t.Fatalf("boot 2 PCR 4 = %x, want boot 1's %x", got, fresh(a, "kernel"))
		}
		// The old domain's handle reaches nothing any more.
		if _, err := h5.Transmit([]byte{0x80, 1, 0, 0, 0, 10, 0, 0, 1, 0x7b}); err == nil {
			t.Fatal("domain 5's handle still reaches the vTPM now bound to domain 6")
		}
		st, _ := m.Status(u1)
		if len(st) != 1 || st[0].Domid != 6 || st[0].Boot != 2 {
			t.Fatalf("status %+v", st)
		}
	})
}

// A soft reset (the stub's kexec): the device goes away and comes back
// with the same domid, @releaseDomain fires, the domain exists. Nothing
// is reset.
func TestSoftResetKeeps(t *testing.T) {
	versions(t, func(t *testing.T, e *env) {
		m := e.manager()
		h, tg := e.guest(m, 5, u1)
		a := bankOf(tg)
		measure(t, tg, 4, "kernel")
		h.Close()
		m.Reap() // @releaseDomain: the hypervisor says domain 5 exists
		_, tg2 := e.guest(m, 5, u1)
		if got := pcr(t, tg2, 4, a); !bytes.Equal(got, fresh(a, "kernel")) {
			t.Fatalf("PCR 4 after soft reset = %x, want %x", got, fresh(a, "kernel"))
		}
	})
}

func digestsOf(data string) map[string]string {
	s1 := sha1.Sum([]byte(data))
	s2 := sha256.Sum256([]byte(data))
	return map[string]string{"sha1": hex.EncodeToString(s1[:]), "sha256": hex.EncodeToString(s2[:])}
}

// The loader's boot request resets and measures; the domain's device,
// appearing afterwards, is the same boot and is not reset; a second
// request for the same boot is refused.
func TestLoaderBootNotResetAgain(t *testing.T) {
	e := newEnv(t)
	m := e.manager()
	// An earlier boot left values behind.
	h, tg := e.guest(m, 3, u1)
	measure(t, tg, 4, "old")
	h.Close()
	e.w.set(3, false)
	e.w.set(7, true)
	reset, err := m.Boot(u1, 7, []vtpmctl.Measurement{{PCR: 4, Digests: digestsOf("kernel"), Event: []byte("kernel")}, {PCR: 5, Digests: digestsOf("cmdline")}})
	if err != nil || !reset {
		t.Fatalf("boot: %v %v", reset, err)
	}
	_, tg7 := e.guest(m, 7, u1)
	for _, a := range []tpmfront.Alg{tpmfront.SHA1, tpmfront.SHA256} {
		if got := pcr(t, tg7, 4, a); !bytes.Equal(got, fresh(a, "kernel")) {
			t.Errorf("%v PCR 4 = %x, want the loader's %x", a, got, fresh(a, "kernel"))
		}
		if got := pcr(t, tg7, 5, a); !bytes.Equal(got, fresh(a, "cmdline")) {
			t.Errorf("%v PCR 5 = %x, want %x", a, got, fresh(a, "cmdline"))
		}
	}
	if _, err := m.Boot(u1, 7, nil); !errors.Is(err, vtpmctl.ErrAlreadyBooted) {
		t.Fatalf("second boot request: %v, want ErrAlreadyBooted", err)
	}
	// A digest missing for a bank is refused (the TPM has sha1 and
	// sha256).
	e.w.set(7, false)
	e.w.set(8, true)
	if _, err := m.Boot(u1, 8, []vtpmctl.Measurement{{PCR: 4, Digests: map[string]string{"sha256": digestsOf("k")["sha256"]}}}); !errors.Is(err, vtpmctl.ErrBadRequest) {
		t.Fatalf("sha256-only measurement on a sha1+sha256 TPM: %v, want ErrBadRequest", err)
	}
}

// xl save + xl restore of an HVM guest: the domain goes away (its TPM's
// volatile state is stored and its swtpm stopped), and a new domain
// whose device model was started with -incoming continues with the
// same PCRs.
func TestRestoreKeepsPCRs(t *testing.T) {
	versions(t, func(t *testing.T, e *env) {
		m := e.manager()
		e.w.hvm(5, false)
		h, tg := e.guest(m, 5, u1)
		a := bankOf(tg)
		measure(t, tg, 4, "kernel")
		measure(t, tg, 10, "running OS")
		h.Close()
		e.w.set(5, false)
		m.Reap()
		e.w.hvm(9, true)
		_, tg9 := e.guest(m, 9, u1)
		if got := pcr(t, tg9, 4, a); !bytes.Equal(got, fresh(a, "kernel")) {
			t.Fatalf("restored PCR 4 = %x, want the saved %x", got, fresh(a, "kernel"))
		}
		if got := pcr(t, tg9, 10, a); !bytes.Equal(got, fresh(a, "running OS")) {
			t.Fatalf("restored PCR 10 = %x, want the saved %x", got, fresh(a, "running OS"))
		}
		measure(t, tg9, 10, "after restore") // and it works on
		st, _ := m.Status(u1)
		if st[0].Boot != 1 {
			t.Fatalf("a restore counted as boot %d", st[0].Boot)
		}
	})
}

// A restore with no saved state here (a migrated guest, a first use) is
// refused with one line, not answered with a fresh TPM.
func TestRestoreWithoutStateRefused(t *testing.T) {
	e := newEnv(t)
	m := e.manager()
	e.w.hvm(9, true)
	e.w.set(9, true)
	_, _, err := m.Attach(9, be(9), u2)
	if err == nil || !strings.Contains(err.Error(), "refused rather than reset under a running OS") {
		t.Fatalf("got %v", err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Fatalf("more than one line: %q", err)
	}
}

// vtpmback restarting (crash or systemctl restart): the swtpm keeps
// running, the new vtpmback re-adopts it, the guest's PCRs are unchanged
// and nothing is reset.
func TestRestartReadopts(t *testing.T) {
	versions(t, func(t *testing.T, e *env) {
		m := e.manager()
		h, tg := e.guest(m, 5, u1)
		a := bankOf(tg)
		measure(t, tg, 4, "kernel")
		pid := m.vtpms[u1].rec.PID
		h.Close()
		m.Close() // the process ends: its connections close, swtpm stays
		if !swtpm.Alive(pid) {
			t.Fatal("swtpm died with vtpmback")
		}
		m2 := e.manager()
		_, tg2 := e.guest(m2, 5, u1)
		if got := pcr(t, tg2, 4, a); !bytes.Equal(got, fresh(a, "kernel")) {
			t.Fatalf("PCR 4 after vtpmback restart = %x, want %x", got, fresh(a, "kernel"))
		}
		if got := m2.vtpms[u1].rec.PID; got != pid {
			t.Fatalf("swtpm pid %d after restart, was %d: a new swtpm", got, pid)
		}
		if len(e.w.logsWith("re-adopted domain 5")) != 1 {
			t.Fatalf("no re-adoption logged")
		}
	})
}

// swtpm killed under a running boot: that domain's commands fail, one
// line says so, no new swtpm is started while the domain exists; once the
// domain is rebuilt, its next boot gets a working TPM.
func TestSwtpmKilledStaysDead(t *testing.T) {
	e := newEnv(t)
	m := e.manager()
	h, tg := e.guest(m, 5, u1)
	measure(t, tg, 4, "kernel")
	pid := m.vtpms[u1].rec.PID
	syscall.Kill(pid, syscall.SIGKILL)
	swtpm.WaitGone(pid, 5*time.Second)
	for i := 0; i < 3; i++ {
		if _, err := tg.ReadPCR(4, tpmfront.SHA256); err == nil {
			t.Fatal("a command succeeded after swtpm was killed")
		}
	}
	if _, err := h.Transmit([]byte{0x80, 1, 0, 0, 0, 12, 0, 0, 1, 0x44, 0, 0}); !errors.Is(err, ErrDead) {
		t.Fatalf("got %v, want ErrDead", err)
	}
	if n := len(e.w.logsWith("stays dead until the domain is rebuilt")); n != 1 {
		t.Fatalf("%d death lines, want 1", n)
	}
	if l := e.w.logsWith("stays dead")[0]; !strings.Contains(l, u1) || !strings.Contains(l, "domain 5") {
		t.Fatalf("death line %q names neither the vTPM nor the guest", l)
	}
	h.Close()
	m.Reap() // domain 5 still exists: nothing starts
	if _, _, err := m.Attach(5, be(5), u1); !errors.Is(err, ErrDead) {
		t.Fatalf("reconnect of domain 5: %v, want ErrDead", err)
	}
	if _, err := os.Stat(filepath.Join(e.root, "run", "tpm", u1+".pid")); err == nil {
		if p, _ := swtpm.ReadPID(filepath.Join(e.root, "run", "tpm", u1+".pid")); swtpm.Alive(p) {
			t.Fatal("a new swtpm runs under domain 5")
		}
	}
	e.w.set(5, false)
	m.Reap()
	_, tg6 := e.guest(m, 6, u1)
	if got := pcr(t, tg6, 4, tpmfront.SHA256); !bytes.Equal(got, make([]byte, 32)) {
		t.Fatalf("rebuilt domain's PCR 4 = %x, want zero", got)
	}
}

// Two running domains naming one uuid: the second is refused, in one
// line naming both.
func TestSameUUIDRefused(t *testing.T) {
	e := newEnv(t)
	m := e.manager()
	e.guest(m, 5, u1)
	e.w.set(6, true)
	_, _, err := m.Attach(6, be(6), u1)
	if !errors.Is(err, vtpmctl.ErrBusy) || !strings.Contains(err.Error(), "domain 5") || !strings.Contains(err.Error(), "domain 6 refused") {
		t.Fatalf("got %v", err)
	}
	if _, err := m.Boot(u1, 6, nil); !errors.Is(err, vtpmctl.ErrBusy) {
		t.Fatalf("loader for domain 6: %v, want ErrBusy", err)
	}
}

// A domain gone from the hypervisor: its swtpm is stopped (CMD_SHUTDOWN),
// its state stays on disk.
func TestDomainGoneStopsSwtpm(t *testing.T) {
	e := newEnv(t)
	m := e.manager()
	h, tg := e.guest(m, 5, u1)
	measure(t, tg, 4, "kernel")
	pid := m.vtpms[u1].rec.PID
	h.Close()
	e.w.set(5, false)
	m.Reap()
	if swtpm.Alive(pid) {
		t.Fatal("swtpm still runs after its domain is gone")
	}
	dir := filepath.Join(e.root, "tpm", u1)
	for _, f := range []string{swtpm.PermanentStateFile(dir, true), swtpm.VolatileStateFile(dir, true)} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("state file: %v", err)
		}
	}
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("state dir mode %v %v", st.Mode(), err)
	}
	if s, _ := m.Status(u1); s[0].State != StateStopped {
		t.Fatalf("status %+v", s)
	}
}

// An admin-started swtpm at SOCKET-DIR/U.sock follows the same rules,
// and vtpmback neither starts nor stops it.
func TestAdminStarted(t *testing.T) {
	e := newEnv(t)
	admin := filepath.Join(e.root, "admin")
	os.MkdirAll(filepath.Join(admin, "state"), 0o700)
	pid, err := swtpm.Start(swtpm.StartOptions{State: filepath.Join(admin, "state"), TPM2: true, Paths: swtpm.PathsIn(admin, u1)})
	if err != nil {
		t.Fatal(err)
	}
	m := e.manager()
	h, tg := e.guest(m, 5, u1)
	measure(t, tg, 4, "kernel")
	h.Close()
	e.w.set(5, false)
	m.Reap()
	if !swtpm.Alive(pid) {
		t.Fatal("vtpmback stopped an admin-started swtpm")
	}
	// Its sockets are free for the admin's tools once the domain is gone.
	tg2, err := tpmfront.Dial("unix", swtpm.PathsIn(admin, u1).Data, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got := pcr(t, tg2, 4, tpmfront.SHA256); !bytes.Equal(got, fresh(tpmfront.SHA256, "kernel")) {
		t.Fatalf("admin reads PCR 4 = %x after the guest, want %x", got, fresh(tpmfront.SHA256, "kernel"))
	}
	tg2.Close()
	_, tg6 := e.guest(m, 6, u1)
	if got := pcr(t, tg6, 4, tpmfront.SHA256); !bytes.Equal(got, make([]byte, 32)) {
		t.Fatalf("next boot's PCR 4 = %x, want zero", got)
	}
	if _, err := os.Stat(filepath.Join(e.root, "tpm", u1)); err == nil {
		t.Fatal("vtpmback provisioned a vTPM an admin serves")
	}
}

// Host-side PCR reads and the guest share the one connection.
func TestHostReadsThroughOwner(t *testing.T) {
	e := newEnv(t)
	m := e.manager()
	_, tg := e.guest(m, 5, u1)
	measure(t, tg, 4, "kernel")
	v, pcrs, err := m.PCRs(u1, []int{4})
	if err != nil {
		t.Fatal(err)
	}
	if v != tpmfront.Version20.String() || pcrs["sha256"]["4"] != hex.EncodeToString(fresh(tpmfront.SHA256, "kernel")) || pcrs["sha1"]["4"] != hex.EncodeToString(fresh(tpmfront.SHA1, "kernel")) {
		t.Fatalf("pcrs %s %v", v, pcrs)
	}
	measure(t, tg, 4, "more") // the guest goes on
	if err := m.PutLog(u1, 5, []byte("log")); err != nil {
		t.Fatal(err)
	}
	if l, _ := m.GetLog(u1); string(l) != "log" {
		t.Fatalf("log %q", l)
	}
	if err := m.PutLog(u1, 6, []byte("x")); !errors.Is(err, vtpmctl.ErrBusy) {
		t.Fatalf("put-log for another domain: %v", err)
	}
}

// A device disconnecting while swtpm hangs (SIGSTOP) does not wait for
// the command in flight: closing the socket ends it. The swtpm still
// runs, so the TPM is not dead: the next command reconnects to it (the
// same process) and the PCRs are intact.
func TestDisconnectDuringHungCommand(t *testing.T) {
	e := newEnv(t)
	m := e.manager()
	h, tg := e.guest(m, 5, u1)
	measure(t, tg, 4, "kernel")
	pid := m.vtpms[u1].rec.PID
	syscall.Kill(pid, syscall.SIGSTOP)
	done := make(chan error, 1)
	go func() { _, err := tg.ReadPCR(4, tpmfront.SHA256); done <- err }()
	time.Sleep(200 * time.Millisecond) // the command is in flight
	closed := make(chan struct{})
	go func() { h.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		syscall.Kill(pid, syscall.SIGCONT)
		t.Fatal("Close waited for a hung swtpm")
	}
	if err := <-done; err == nil {
		t.Fatal("the command in flight succeeded after its connection was closed")
	}
	syscall.Kill(pid, syscall.SIGCONT)
	_, tg2 := e.guest(m, 5, u1)
	if got := pcr(t, tg2, 4, tpmfront.SHA256); !bytes.Equal(got, fresh(tpmfront.SHA256, "kernel")) {
		t.Fatalf("PCR 4 = %x after reconnecting, want %x", got, fresh(tpmfront.SHA256, "kernel"))
	}
	if m.vtpms[u1].rec.PID != pid || len(e.w.logsWith("stays dead")) != 0 {
		t.Fatal("a hung-then-resumed swtpm was declared dead or replaced")
	}
}
