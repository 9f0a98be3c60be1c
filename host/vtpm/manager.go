// Package vtpm is vtpmback's lifecycle manager: the one owner of every
// guest's swtpm. Per vTPM uuid U it provisions the TPM at first use,
// starts and stops its swtpm, and decides, for each domain bound to U,
// whether the TPM is reset (a boot), kept (a soft reset, a reconnect, a
// vtpmback restart) or resumed from its saved state (a restore). The
// rules and the signals they rest on are in docs/xen.md ("vTPM
// lifecycle").
package vtpm

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/vtpmboot/vtpmboot/host/swtpm"
	"github.com/vtpmboot/vtpmboot/host/vtpmctl"
	"github.com/vtpmboot/vtpmboot/tpmfront"
)

// Defaults for a Debian dom0.
const (
	DefaultStateDir = "/var/lib/vtpmboot/tpm"
	DefaultCADir    = "/var/lib/vtpmboot/ca"
	DefaultRunDir   = "/run/vtpmboot"
)

// Binding states.
const (
	StateRunning = "running" // bound to Domid, serving
	StateDead    = "dead"    // its swtpm died under Domid's boot: commands fail until Domid is gone
	StateStopped = "stopped" // Domid is gone; swtpm stopped, state kept
)

// Config is a Manager's environment.
type Config struct {
	// StateDir holds one directory per managed vTPM (StateDir/U),
	// root-only.
	StateDir string
	// RunDir holds the managed swtpms' sockets and pid files (RunDir/tpm)
	// and the bindings (RunDir/bindings.json), which a restarted
	// vtpmback re-adopts.
	RunDir string
	// SocketDir, if set, is where admin-started swtpms listen
	// (SocketDir/U.sock and U.ctrl): such a vTPM is used, never started,
	// provisioned or stopped by vtpmback.
	SocketDir string
	Conf      *Conf
	CA        *swtpm.CA
	// Swtpm is the swtpm binary ("" from PATH).
	Swtpm string
	// Exists asks the hypervisor whether a domain exists
	// (xendom.Hypervisor.Exists).
	Exists func(domid uint32) (bool, error)
	// DeviceModel tells an HVM restore from a boot (see
	// ProcDeviceModel); nil means ProcDeviceModel.
	DeviceModel func(domid uint32) (hvm, incoming bool)
	Logf        func(format string, args ...any)
}

// record is one vTPM's binding, persisted in RunDir/bindings.json.
type record struct {
	UUID  string `json:"uuid"`
	Domid uint32 `json:"domid"`
	Boot  uint64 `json:"boot"`
	State string `json:"state"`
	// Measured: the loader announced this boot (vtpmctl boot).
	Measured bool `json:"measured,omitempty"`
	// Loader: this vTPM's boots are announced by the loader; a new
	// domain that is not is a restore (PV/PVH guests, which have no
	// device model to tell).
	Loader bool `json:"loader,omitempty"`
	Admin  bool `json:"admin,omitempty"`
	PID    int  `json:"pid,omitempty"`
	TPM2   bool `json:"tpm2,omitempty"`
}

type vtpm struct {
	// mu serialises everything on this vTPM: the guest's commands, the
	// loader's extends, host-side reads, resets and stops.
	mu    sync.Mutex
	rec   record
	paths swtpm.Paths
	dir   string // state directory (managed vTPMs)
	ctrl  *swtpm.Ctrl
	log   []byte // this boot's event log (vtpmctl put-log)

	// dataMu guards data alone (a leaf lock): a device's disconnect
	// closes the data connection without waiting for mu, which a
	// command to a hung swtpm holds.
	dataMu sync.Mutex
	data   *swtpm.Data
}

func (v *vtpm) getData() *swtpm.Data {
	v.dataMu.Lock()
	defer v.dataMu.Unlock()
	return v.data
}

func (v *vtpm) setData(d *swtpm.Data) {
	v.dataMu.Lock()
	defer v.dataMu.Unlock()
	v.data = d
}

// closeData closes the data connection if it is still d (nil: any).
func (v *vtpm) closeData(d *swtpm.Data) {
	v.dataMu.Lock()
	if d == nil {
		d = v.data
	}
	if v.data == d {
		v.data = nil
	}
	v.dataMu.Unlock()
	if d != nil {
		d.Close()
	}
}

// Manager owns every vTPM's swtpm.
type Manager struct {
	cfg Config

	mu    sync.Mutex
	vtpms map[string]*vtpm

	saveMu sync.Mutex // leaf lock: the bindings file
	recs   map[string]record
}

// ErrDead marks commands to a vTPM whose swtpm died under its boot.
var ErrDead = errors.New("vTPM is dead: its swtpm died under this boot")

// New makes a Manager and re-adopts the bindings a previous vtpmback
// left in RunDir: running swtpms are reconnected, never reset.
func New(cfg Config) (*Manager, error) {
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if cfg.Conf == nil {
		cfg.Conf = &Conf{TPM12: map[string]bool{}}
	}
	if cfg.DeviceModel == nil {
		cfg.DeviceModel = ProcDeviceModel
	}
	for _, d := range []string{cfg.StateDir, filepath.Join(cfg.RunDir, "tpm")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
		if err := os.Chmod(d, 0o700); err != nil {
			return nil, err
		}
	}
	m := &Manager{cfg: cfg, vtpms: map[string]*vtpm{}, recs: map[string]record{}}
	if err := m.readopt(); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Manager) bindingsFile() string { return filepath.Join(m.cfg.RunDir, "bindings.json") }

// publish records v's binding on disk; called with v.mu held.
func (m *Manager) publish(v *vtpm) {
	m.saveMu.Lock()
	defer m.saveMu.Unlock()
	m.recs[v.rec.UUID] = v.rec
	var all []record
	for _, r := range m.recs {
		all = append(all, r)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].UUID < all[j].UUID })
	b, _ := json.MarshalIndent(all, "", "  ")
	tmp := m.bindingsFile() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err == nil {
		err = os.Rename(tmp, m.bindingsFile())
		if err != nil {
			m.cfg.Logf("bindings: %v", err)
		}
	} else {
		m.cfg.Logf("bindings: %v", err)
	}
}

// vtpmFor returns U's vtpm, making the struct on first use.
func (m *Manager) vtpmFor(uuid string) *vtpm {
	m.mu.Lock()
	defer m.mu.Unlock()
	v := m.vtpms[uuid]
	if v == nil {
		v = &vtpm{rec: record{UUID: uuid}}
		m.vtpms[uuid] = v
	}
	return v
}

// locate decides where U's swtpm is: an admin-started one at
// SocketDir/U.sock wins (the form e2e/xen and older recipes use); else
// a managed one under StateDir/U.
func (m *Manager) locate(v *vtpm) {
	u := v.rec.UUID
	if m.cfg.SocketDir != "" {
		p := swtpm.PathsIn(m.cfg.SocketDir, u)
		if _, err := os.Stat(p.Data); err == nil || v.rec.Admin {
			v.rec.Admin, v.paths = true, p
			return
		}
	}
	v.rec.Admin = false
	v.paths = swtpm.PathsIn(filepath.Join(m.cfg.RunDir, "tpm"), u)
	v.dir = filepath.Join(m.cfg.StateDir, u)
}

func (m *Manager) readopt() error {
	b, err := os.ReadFile(m.bindingsFile())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var recs []record
	if err := json.Unmarshal(b, &recs); err != nil {
		return fmt.Errorf("%s: %w", m.bindingsFile(), err)
	}
	for _, r := range recs {
		if !vtpmctl.ValidUUID(r.UUID) {
			continue
		}
		v := m.vtpmFor(r.UUID)
		v.mu.Lock()
		v.rec = r
		m.locate(v)
		if r.State == StateRunning {
			alive := m.swtpmAlive(v)
			exists, err := m.cfg.Exists(r.Domid)
			switch {
			case err != nil:
				m.cfg.Logf("vTPM %s: cannot ask about domain %d (%v): left as it is", r.UUID, r.Domid, err)
			case alive && exists:
				if err := m.connectCtrl(v); err != nil {
					m.cfg.Logf("vTPM %s: re-adopting domain %d's swtpm: %v", r.UUID, r.Domid, err)
				} else {
					m.cfg.Logf("vTPM %s: re-adopted domain %d's swtpm (boot %d), not reset", r.UUID, r.Domid, r.Boot)
				}
			case !alive && exists:
				m.die(v, "found gone when vtpmback started")
			case !alive:
				v.rec.State = StateStopped
				m.cfg.Logf("vTPM %s: domain %d and its swtpm are gone", r.UUID, r.Domid)
			default:
				m.finish(v)
			}
		}
		m.publish(v)
		v.mu.Unlock()
	}
	return nil
}

// swtpmAlive: a managed swtpm by its pid (and name); an admin-started one
// by its pid file if it has one, else by its socket answering.
func (m *Manager) swtpmAlive(v *vtpm) bool {
	if !v.rec.Admin {
		return swtpm.Alive(v.rec.PID)
	}
	if pid, err := swtpm.ReadPID(v.paths.PID); err == nil {
		return swtpm.Alive(pid)
	}
	c, err := swtpm.DialCtrl(v.paths.Ctrl)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// connectCtrl dials the control channel. swtpm serves one control
// client: right after a vtpmback restart the old connection may not be
// closed on swtpm's side yet, so it is tried for a while.
func (m *Manager) connectCtrl(v *vtpm) error {
	if v.ctrl != nil {
		return nil
	}
	var err error
	for try := 0; try < 50; try++ {
		var c *swtpm.Ctrl
		if c, err = swtpm.DialCtrl(v.paths.Ctrl); err == nil {
			if _, err = c.Capabilities(); err == nil {
				v.ctrl = c
				return nil
			}
			c.Close()
		}
		time.Sleep(20 * time.Millisecond)
	}
	return err
}

func (m *Manager) dropConns(v *vtpm) {
	if v.ctrl != nil {
		v.ctrl.Close()
		v.ctrl = nil
	}
	v.closeData(nil)
}

// die marks v dead: one line naming the guest and the vTPM. Nothing is
// started in its place while its domain exists.
func (m *Manager) die(v *vtpm, why string) {
	if v.rec.State == StateDead {
		return
	}
	m.dropConns(v)
	v.rec.State = StateDead
	m.cfg.Logf("vTPM %s of domain %d: swtpm %s; domain %d's TPM stays dead until the domain is rebuilt", v.rec.UUID, v.rec.Domid, why, v.rec.Domid)
	m.publish(v)
}

// finish ends a binding whose domain is gone: the TPM's volatile state
// (PCRs, sessions) is stored, for a restore of that domain, and a managed
// swtpm is shut down; an admin-started one is left running and let go.
func (m *Manager) finish(v *vtpm) {
	if v.rec.State == StateStopped {
		return
	}
	was := v.rec.State
	v.rec.State = StateStopped
	defer m.publish(v)
	if was == StateDead {
		m.dropConns(v)
		m.cfg.Logf("vTPM %s: domain %d is gone (its swtpm had died)", v.rec.UUID, v.rec.Domid)
		return
	}
	if err := m.connectCtrl(v); err != nil {
		m.cfg.Logf("vTPM %s: domain %d is gone; its swtpm's control channel: %v", v.rec.UUID, v.rec.Domid, err)
		m.dropConns(v)
		return
	}
	if err := v.ctrl.StoreVolatile(); err != nil {
		m.cfg.Logf("vTPM %s: domain %d is gone; storing its TPM's volatile state: %v", v.rec.UUID, v.rec.Domid, err)
	}
	if v.rec.Admin {
		m.dropConns(v)
		m.cfg.Logf("vTPM %s: domain %d is gone; admin-started swtpm left running", v.rec.UUID, v.rec.Domid)
		return
	}
	if err := v.ctrl.Shutdown(); err != nil {
		m.cfg.Logf("vTPM %s: domain %d is gone; CMD_SHUTDOWN: %v", v.rec.UUID, v.rec.Domid, err)
	}
	m.dropConns(v)
	if !swtpm.WaitGone(v.rec.PID, 10*time.Second) {
		m.cfg.Logf("vTPM %s: swtpm pid %d still running 10 s after CMD_SHUTDOWN", v.rec.UUID, v.rec.PID)
	}
	m.cfg.Logf("vTPM %s: domain %d is gone: swtpm stopped, state kept in %s", v.rec.UUID, v.rec.Domid, v.dir)
}

// Reap finishes every binding whose domain no longer exists in the
// hypervisor. Call it on xenstore's @releaseDomain (and at start).
func (m *Manager) Reap() {
	m.mu.Lock()
	var all []*vtpm
	for _, v := range m.vtpms {
		all = append(all, v)
	}
	m.mu.Unlock()
	for _, v := range all {
		v.mu.Lock()
		if v.rec.State == StateRunning || v.rec.State == StateDead {
			exists, err := m.cfg.Exists(v.rec.Domid)
			if err != nil {
				m.cfg.Logf("vTPM %s: ask about domain %d: %v", v.rec.UUID, v.rec.Domid, err)
			} else if !exists {
				m.finish(v)
			}
		}
		v.mu.Unlock()
	}
}

// release makes v free for a new domain: refused while its bound domain
// exists (one uuid, one running domain).
func (m *Manager) release(v *vtpm, domid uint32) error {
	if v.rec.State != StateRunning && v.rec.State != StateDead {
		return nil
	}
	exists, err := m.cfg.Exists(v.rec.Domid)
	if err != nil {
		return vtpmctl.Errorf(vtpmctl.CodeInternal, "vTPM %s: cannot tell whether domain %d still exists: %v", v.rec.UUID, v.rec.Domid, err)
	}
	if exists {
		return vtpmctl.Errorf(vtpmctl.CodeBusy, "vTPM %s is in use by domain %d; domain %d refused", v.rec.UUID, v.rec.Domid, domid)
	}
	m.finish(v)
	return nil
}

// ensureStarted provisions (first use) and starts a managed swtpm, or
// checks an admin-started one is there.
func (m *Manager) ensureStarted(v *vtpm) error {
	if v.rec.Admin {
		return m.connectCtrl(v)
	}
	if v.ctrl != nil && swtpm.Alive(v.rec.PID) {
		return nil
	}
	m.dropConns(v)
	tpm2 := !m.cfg.Conf.TPM12[v.rec.UUID]
	if _, err := os.Stat(v.dir); errors.Is(err, os.ErrNotExist) {
		start := time.Now()
		if err := m.cfg.CA.Provision(v.dir, tpm2); err != nil {
			return err
		}
		m.cfg.Logf("vTPM %s: provisioned TPM %s in %v (EK certificate from %s)", v.rec.UUID, map[bool]string{true: "2.0", false: "1.2"}[tpm2], time.Since(start).Round(time.Millisecond), m.cfg.CA.IssuerCert())
	} else if err != nil {
		return err
	}
	// The version is the state's, whatever the configuration says now.
	_, err2 := os.Stat(swtpm.PermanentStateFile(v.dir, true))
	_, err1 := os.Stat(swtpm.PermanentStateFile(v.dir, false))
	switch {
	case err2 == nil:
		tpm2 = true
	case err1 == nil:
		tpm2 = false
	default:
		return fmt.Errorf("vTPM %s: %s holds no TPM state", v.rec.UUID, v.dir)
	}
	pid, err := swtpm.Start(swtpm.StartOptions{Binary: m.cfg.Swtpm, State: v.dir, TPM2: tpm2, Paths: v.paths, Log: filepath.Join(v.dir, "swtpm.log")})
	if err != nil {
		return err
	}
	v.rec.PID, v.rec.TPM2 = pid, tpm2
	return m.connectCtrl(v)
}

// bind gives v to domid for a new boot (reset) or a restore (resume).
func (m *Manager) bind(v *vtpm, domid uint32, restore bool, why string) error {
	m.locate(v)
	if restore {
		return m.resume(v, domid, why)
	}
	if err := m.ensureStarted(v); err != nil {
		return err
	}
	d := v.getData()
	if d == nil {
		var err error
		if d, err = swtpm.DialData(v.paths.Data); err != nil {
			return err
		}
		v.setData(d)
	}
	tpm2, err := swtpm.Reset(v.ctrl, d)
	if err != nil {
		m.dropConns(v)
		return fmt.Errorf("vTPM %s: reset for domain %d: %w", v.rec.UUID, domid, err)
	}
	v.rec.TPM2 = tpm2
	v.rec.Domid, v.rec.State, v.rec.Measured = domid, StateRunning, false
	v.rec.Boot++
	v.log = nil
	m.cfg.Logf("vTPM %s: boot %d of domain %d (%s): TPM reset", v.rec.UUID, v.rec.Boot, domid, why)
	m.publish(v)
	return nil
}

// resume binds a restored domain: the TPM continues from the volatile
// state stored when the saved domain went away; without one it is
// refused, never reset under the running OS.
func (m *Manager) resume(v *vtpm, domid uint32, why string) error {
	if v.rec.Admin {
		// vtpmback never stopped it: it still holds the saved PCRs.
		if err := m.connectCtrl(v); err != nil {
			return err
		}
	} else {
		if _, err := os.Stat(swtpm.VolatileStateFile(v.dir, v.rec.TPM2)); err != nil || v.rec.Boot == 0 {
			return vtpmctl.Errorf(vtpmctl.CodeTPM, "vTPM %s: domain %d is a restored guest (%s) but no saved TPM state for it is here (a migrated guest's vTPM stays on the old host; an swtpm that died saves nothing): refused rather than reset under a running OS", v.rec.UUID, domid, why)
		}
		if err := m.ensureStarted(v); err != nil {
			return err
		}
		// No Startup: the resumed TPM is started already; a Startup
		// that succeeded would mean a fresh TPM under the running OS.
		if err := v.ctrl.Init(false); err != nil {
			m.dropConns(v)
			return fmt.Errorf("vTPM %s: resume for domain %d: %w", v.rec.UUID, domid, err)
		}
	}
	v.rec.Domid, v.rec.State = domid, StateRunning
	m.cfg.Logf("vTPM %s: domain %d restored (%s): TPM resumed from its saved state, boot %d continues", v.rec.UUID, domid, why, v.rec.Boot)
	m.publish(v)
	return nil
}

// Attach is tpmback's OpenTPM: domain domid's vtpm device (backend path
// be) names vTPM uuid (from the toolstack's backend node). It returns
// the TPM the guest's ring is served from.
func (m *Manager) Attach(domid uint32, be, uuid string) (*Handle, string, error) {
	if !vtpmctl.ValidUUID(uuid) {
		return nil, "", fmt.Errorf("uuid %q is not a UUID", uuid)
	}
	v := m.vtpmFor(uuid)
	v.mu.Lock()
	defer v.mu.Unlock()
	switch {
	case v.rec.Domid == domid && v.rec.State == StateDead:
		return nil, "", fmt.Errorf("vTPM %s of domain %d: %w", uuid, domid, ErrDead)
	case v.rec.Domid == domid && v.rec.State == StateRunning:
		// The same domain again: a soft reset (kexec), a frontend
		// reconnecting, the device of a boot the loader measured, or a
		// vtpmback restart. The TPM is kept.
		m.locate(v)
		m.cfg.Logf("vTPM %s: domain %d connects again (boot %d continues, no reset)", uuid, domid, v.rec.Boot)
	default:
		if err := m.release(v, domid); err != nil {
			return nil, "", err
		}
		restore, why := m.isRestore(v, domid)
		if err := m.bind(v, domid, restore, why); err != nil {
			return nil, "", err
		}
	}
	return &Handle{m: m, v: v, domid: domid, boot: v.rec.Boot}, fmt.Sprintf("vTPM %s (%s, boot %d)", uuid, v.paths.Data, v.rec.Boot), nil
}

// isRestore tells a restored domain from a booting one. HVM: libxl
// starts a restored domain's device model with "-incoming fd:N"
// (tools/libs/light/libxl_dm.c, libxl__build_device_model_args_new,
// when state->saved_state is set, which only the restore and soft-reset
// paths set), before it adds the vtpm device (libxl_create.c:
// domcreate_launch_dm, then domcreate_attach_devices). PV and PVH have no
// device model: a vTPM whose boots the loader announces is restored when
// a new domain comes unannounced (libxl runs no bootloader on restore:
// domcreate_bootloader_done, "restoring, not running bootloader").
func (m *Manager) isRestore(v *vtpm, domid uint32) (bool, string) {
	hvm, incoming := m.cfg.DeviceModel(domid)
	switch {
	case hvm && incoming:
		return true, "its device model was started with -incoming"
	case hvm:
		return false, "new HVM domain"
	case v.rec.Loader && v.rec.Boot > 0:
		return true, "no device model and no loader announcement"
	}
	return false, "new domain"
}

// transmit runs one command on v (v.mu held). A failed command closes
// the data connection (the next answer could be this one's); if the
// swtpm is gone, v is dead.
func (m *Manager) transmit(v *vtpm, cmd []byte) ([]byte, error) {
	if v.rec.State == StateDead {
		return nil, ErrDead
	}
	d := v.getData()
	if d == nil {
		var err error
		if d, err = swtpm.DialData(v.paths.Data); err != nil {
			if !m.swtpmAlive(v) {
				m.die(v, "is gone")
				return nil, ErrDead
			}
			return nil, err
		}
		v.setData(d)
	}
	rsp, err := d.Transmit(cmd)
	if err != nil {
		v.closeData(d)
		if !m.swtpmAlive(v) {
			m.die(v, fmt.Sprintf("died (%v)", err))
			return nil, ErrDead
		}
	}
	return rsp, err
}

// Handle is a domain's TPM: commands go to its vTPM while the vTPM is
// bound to that domain's boot.
type Handle struct {
	m     *Manager
	v     *vtpm
	domid uint32
	boot  uint64
}

// Transmit runs one of the guest's commands.
func (h *Handle) Transmit(cmd []byte) ([]byte, error) {
	h.v.mu.Lock()
	defer h.v.mu.Unlock()
	if h.v.rec.Domid != h.domid || h.v.rec.Boot != h.boot {
		return nil, fmt.Errorf("vTPM %s is no longer domain %d's", h.v.rec.UUID, h.domid)
	}
	if h.v.rec.State != StateRunning {
		return nil, fmt.Errorf("vTPM %s of domain %d: %w", h.v.rec.UUID, h.domid, ErrDead)
	}
	return h.m.transmit(h.v, cmd)
}

// Close lets go of the data connection when the device disconnects, so
// that swtpm can serve another client (a host tool after the guest, as
// e2e/xen reads PCRs); the binding and the TPM stay. It does not wait
// for a command in flight: closing the socket ends it (tpmback's
// disconnect relies on that).
func (h *Handle) Close() error {
	h.v.closeData(nil)
	return nil
}

// Close lets go of every connection; swtpms keep running (a restarted
// vtpmback re-adopts them).
func (m *Manager) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, v := range m.vtpms {
		v.mu.Lock()
		m.dropConns(v)
		v.mu.Unlock()
	}
}

// lockedTransmitter runs commands on v with v.mu already held.
type lockedTransmitter struct {
	m *Manager
	v *vtpm
}

func (t lockedTransmitter) Transmit(cmd []byte) ([]byte, error) { return t.m.transmit(t.v, cmd) }

func (m *Manager) target(v *vtpm) (tpmfront.Target, error) {
	return tpmfront.OpenReadWriter(swtpm.ReadWriter(lockedTransmitter{m, v}))
}

// Boot is the loader's "a boot of domid with vTPM uuid is starting":
// bind, reset, and extend ms, before the domain runs.
func (m *Manager) Boot(uuid string, domid uint32, ms []vtpmctl.Measurement) (bool, error) {
	digests := make([]tpmfront.Digests, len(ms))
	for i, me := range ms {
		d := tpmfront.Digests{}
		for name, hx := range me.Digests {
			a, err := tpmfront.ParseAlg(name)
			if err != nil {
				return false, vtpmctl.Errorf(vtpmctl.CodeBadRequest, "measurement %d: %v", i, err)
			}
			b, err := hex.DecodeString(hx)
			if err != nil || len(b) != a.Size() {
				return false, vtpmctl.Errorf(vtpmctl.CodeBadRequest, "measurement %d: %s digest %q is not %d hex bytes", i, name, hx, a.Size())
			}
			d[a] = b
		}
		digests[i] = d
	}
	v := m.vtpmFor(uuid)
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.rec.Domid == domid && (v.rec.State == StateRunning || v.rec.State == StateDead) {
		if v.rec.State == StateDead {
			return false, vtpmctl.Errorf(vtpmctl.CodeTPMDead, "vTPM %s of domain %d is dead", uuid, domid)
		}
		// Measured already, or the domain's device is served: its boot
		// is under way and must not be reset.
		return false, vtpmctl.Errorf(vtpmctl.CodeAlreadyBooted, "vTPM %s: domain %d's boot %d is under way (measured: %v); not reset again", uuid, domid, v.rec.Boot, v.rec.Measured)
	}
	if err := m.release(v, domid); err != nil {
		return false, err
	}
	if err := m.bind(v, domid, false, "announced by the loader"); err != nil {
		return false, vtpmctl.Errorf(vtpmctl.CodeTPM, "%v", err)
	}
	v.rec.Measured, v.rec.Loader = true, true
	m.publish(v)
	tg, err := m.target(v)
	if err != nil {
		return true, vtpmctl.Errorf(vtpmctl.CodeTPM, "vTPM %s: %v", uuid, err)
	}
	banks, err := tg.Banks()
	if err != nil {
		return true, vtpmctl.Errorf(vtpmctl.CodeTPM, "vTPM %s: %v", uuid, err)
	}
	for i, d := range digests {
		if err := tpmfront.CheckDigests(banks, d); err != nil {
			return true, vtpmctl.Errorf(vtpmctl.CodeBadRequest, "measurement %d: %v (the TPM was reset; the boot must not go on)", i, err)
		}
		if err := tg.Extend(ms[i].PCR, d); err != nil {
			return true, vtpmctl.Errorf(vtpmctl.CodeTPM, "measurement %d: %v (the boot must not go on)", i, err)
		}
	}
	return true, nil
}

// PCRs reads PCRs in every bank, through the owner's connection.
func (m *Manager) PCRs(uuid string, pcrs []int) (string, map[string]map[string]string, error) {
	v, err := m.known(uuid)
	if err != nil {
		return "", nil, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.rec.State != StateRunning {
		if v.rec.State == StateDead {
			return "", nil, vtpmctl.Errorf(vtpmctl.CodeTPMDead, "vTPM %s of domain %d is dead", uuid, v.rec.Domid)
		}
		return "", nil, vtpmctl.Errorf(vtpmctl.CodeUnknownVTPM, "vTPM %s is not running (no domain uses it)", uuid)
	}
	tg, err := m.target(v)
	if err != nil {
		return "", nil, vtpmctl.Errorf(vtpmctl.CodeTPM, "vTPM %s: %v", uuid, err)
	}
	if len(pcrs) == 0 {
		for i := 0; i < 24; i++ {
			pcrs = append(pcrs, i)
		}
	}
	banks, err := tg.Banks()
	if err != nil {
		return "", nil, vtpmctl.Errorf(vtpmctl.CodeTPM, "vTPM %s: %v", uuid, err)
	}
	out := map[string]map[string]string{}
	for _, a := range banks {
		out[a.String()] = map[string]string{}
		for _, p := range pcrs {
			val, err := tg.ReadPCR(p, a)
			if err != nil {
				return "", nil, vtpmctl.Errorf(vtpmctl.CodeTPM, "vTPM %s: %v", uuid, err)
			}
			out[a.String()][strconv.Itoa(p)] = hex.EncodeToString(val)
		}
	}
	return tg.Version().String(), out, nil
}

func (m *Manager) known(uuid string) (*vtpm, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v := m.vtpms[uuid]
	if v == nil {
		return nil, vtpmctl.Errorf(vtpmctl.CodeUnknownVTPM, "vTPM %s: vtpmback has not served it", uuid)
	}
	return v, nil
}

// PutLog stores the event log of domid's current boot.
func (m *Manager) PutLog(uuid string, domid uint32, log []byte) error {
	v, err := m.known(uuid)
	if err != nil {
		return err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.rec.Domid != domid || v.rec.State != StateRunning {
		return vtpmctl.Errorf(vtpmctl.CodeBusy, "vTPM %s is not domain %d's running vTPM", uuid, domid)
	}
	v.log = append([]byte{}, log...)
	return nil
}

// GetLog returns the stored event log of the current boot.
func (m *Manager) GetLog(uuid string) ([]byte, error) {
	v, err := m.known(uuid)
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]byte{}, v.log...), nil
}

// Status lists the bindings.
func (m *Manager) Status(uuid string) ([]vtpmctl.Binding, error) {
	m.mu.Lock()
	var all []*vtpm
	for u, v := range m.vtpms {
		if uuid == "" || u == uuid {
			all = append(all, v)
		}
	}
	m.mu.Unlock()
	var out []vtpmctl.Binding
	for _, v := range all {
		v.mu.Lock()
		out = append(out, vtpmctl.Binding{UUID: v.rec.UUID, Domid: v.rec.Domid, Boot: v.rec.Boot, State: v.rec.State, Measured: v.rec.Measured})
		v.mu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UUID < out[j].UUID })
	return out, nil
}
