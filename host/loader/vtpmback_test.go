package loader_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vtpmboot/vtpmboot/host/swtpm"
	"github.com/vtpmboot/vtpmboot/host/vtpm"
	"github.com/vtpmboot/vtpmboot/host/vtpmctl"
	"github.com/vtpmboot/vtpmboot/internal/contract"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
)

// TestLoaderThroughVTPMBack measures through vtpmback's real vTPM manager
// (host/vtpm: swtpm provisioned with swtpm_setup, TPM 2.0, sha1+sha256)
// behind its real control server (host/vtpmctl); only the hypervisor is
// simulated (every domain exists, none has a device model), since no
// Xen runs here. The PCRs vtpmback reads are the contract's; the event log
// reached vtpmback; the same domain is not measured twice; a reboot (xl
// destroy + create: a new domid) is reset and shows the same values.
func TestLoaderThroughVTPMBack(t *testing.T) {
	testenv.NeedCommands(t, "swtpm", "swtpm_setup", "swtpm_localca")
	g := guests()[1]
	img := buildDisk(t, g.disk)
	root, err := os.MkdirTemp("", "vb") // short: socket paths
	if err != nil {
		t.Fatal(err)
	}
	// The simulated hypervisor: every domain exists but gone.
	var mu sync.Mutex
	gone := uint32(1 << 31)
	m, err := vtpm.New(vtpm.Config{
		StateDir: filepath.Join(root, "tpm"), RunDir: filepath.Join(root, "run"),
		Conf: &vtpm.Conf{TPM12: map[string]bool{}}, CA: &swtpm.CA{Dir: filepath.Join(root, "ca")},
		Exists:      func(d uint32) (bool, error) { mu.Lock(); defer mu.Unlock(); return d != gone, nil },
		DeviceModel: func(uint32) (bool, bool) { return false, false },
		Logf:        t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Close()
		pids, _ := filepath.Glob(filepath.Join(root, "run", "tpm", "*.pid"))
		for _, p := range pids {
			if pid, err := swtpm.ReadPID(p); err == nil && swtpm.Alive(pid) {
				syscall.Kill(pid, syscall.SIGKILL)
				swtpm.WaitGone(pid, 5*time.Second)
			}
		}
		os.RemoveAll(root)
	})
	sock := filepath.Join(root, "ctl.sock")
	l, err := vtpmctl.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go (&vtpmctl.Server{Handler: m, Logf: t.Logf}).Serve(ctx, l)

	want := contract.Boot{Kernel: g.kernel, Initrds: g.initrds, Cmdline: g.cmdline}
	boot := func(domid int) run {
		x := newXL(t, domid)
		return x.run(t, x.argv("", 0, []string{"--vtpm-uuid=" + uuid, "--vtpmback-socket=" + sock, "--state-dir="}, img))
	}
	check := func(what string) {
		t.Helper()
		c := &vtpmctl.Client{Socket: sock}
		rsp, err := c.PCRs(uuid, []int{4, 5})
		if err != nil {
			t.Fatal(err)
		}
		if len(rsp.PCRs) != 2 {
			t.Errorf("%s: banks %v, want sha1 and sha256 (vtpmback's provisioning)", what, rsp.PCRs)
		}
		for bank, pcrs := range rsp.PCRs {
			h := contract.Hash(bank)
			for pcr, w := range map[string][]byte{"4": want.PCR4(h, nil), "5": want.PCR5(h, nil)} {
				if got, _ := hex.DecodeString(pcrs[pcr]); !bytes.Equal(got, w) {
					t.Errorf("%s: PCR %s %s = %s, want %x (contract)", what, pcr, bank, pcrs[pcr], w)
				}
			}
		}
		if log, err := c.GetLog(uuid); err != nil || len(log) == 0 {
			t.Errorf("%s: vtpmback has no event log: %v", what, err)
		}
	}
	if r := boot(7); r.code != 0 {
		t.Fatalf("exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	check("first boot")
	// The same boot again (libxl retried?): vtpmback will not reset a
	// boot under way, and the loader refuses.
	x := newXL(t, 7)
	r := x.run(t, x.argv("", 0, []string{"--vtpm-uuid=" + uuid, "--vtpmback-socket=" + sock, "--state-dir="}, img))
	checkRefusal(t, x, r, "already-measured")
	// xl reboot: destroy and create, a new domid, a reset.
	mu.Lock()
	gone = 7
	mu.Unlock()
	if r := boot(8); r.code != 0 {
		t.Fatalf("reboot: exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	check("after the reboot")
}

// lyingBack answers a boot with success but extends nothing: a mock, as
// the real manager cannot be made to lie. The loader must notice from
// the PCRs it reads back and refuse.
type lyingBack struct{}

func (lyingBack) Boot(string, uint32, []vtpmctl.Measurement) (bool, error) { return true, nil }
func (lyingBack) PCRs(string, []int) (string, map[string]map[string]string, error) {
	z := func(n int) string { return hex.EncodeToString(make([]byte, n)) }
	return "TPM 2.0", map[string]map[string]string{"sha1": {"4": z(20), "5": z(20)}, "sha256": {"4": z(32), "5": z(32)}}, nil
}
func (lyingBack) PutLog(string, uint32, []byte) error      { return nil }
func (lyingBack) GetLog(string) ([]byte, error)            { return nil, nil }
func (lyingBack) Status(string) ([]vtpmctl.Binding, error) { return nil, nil }

func TestLoaderCatchesLyingVTPMBack(t *testing.T) {
	img := buildDisk(t, guests()[1].disk)
	root, err := os.MkdirTemp("", "vl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	sock := filepath.Join(root, "ctl.sock")
	l, err := vtpmctl.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go (&vtpmctl.Server{Handler: lyingBack{}}).Serve(ctx, l)
	x := newXL(t, 7)
	r := x.run(t, x.argv("", 0, []string{"--vtpm-uuid=" + uuid, "--vtpmback-socket=" + sock}, img))
	checkRefusal(t, x, r, "does not follow from the extend")
}
