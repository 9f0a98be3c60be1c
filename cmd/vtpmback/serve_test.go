package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/vtpmboot/vtpmboot/host/swtpm"
	"github.com/vtpmboot/vtpmboot/host/vtpm"
	"github.com/vtpmboot/vtpmboot/host/xen/tpmback"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
	"github.com/vtpmboot/vtpmboot/pcrbank"
	"github.com/vtpmboot/vtpmboot/tpmfront"
)

// This file runs vtpmback's parts together as main wires them: the
// xenbus state machine (tpmback.Backend) over a map standing in for
// xenstore, guests' shared pages in memory standing in for grant
// mapping and event channels (Xen cannot run here; e2e/xen runs the real
// ones), and the lifecycle manager over real swtpms.

type chanMem struct {
	page            []byte
	toBack, toFront chan struct{}
	stop            chan struct{}
	once            sync.Once
}

func newChan() *chanMem {
	return &chanMem{page: make([]byte, tpmback.PageSize), toBack: make(chan struct{}, 1), toFront: make(chan struct{}, 1), stop: make(chan struct{})}
}

func (c *chanMem) Page() []byte { return c.page }
func (c *chanMem) Notify() error {
	select {
	case c.toFront <- struct{}{}:
	default:
	}
	return nil
}
func (c *chanMem) Wait() error {
	select {
	case <-c.toBack:
		return nil
	case <-c.stop:
		return tpmback.ErrClosed
	}
}
func (c *chanMem) Interrupt()   { c.once.Do(func() { close(c.stop) }) }
func (c *chanMem) Close() error { return nil }

// guestRW is xen-tpmfront's side of a page: write a command, wait for
// Finish, read the response (tpmif.h layout: u32 length, then the state
// word's low byte, the command at offset 8).
type guestRW struct {
	c   *chanMem
	rsp []byte
}

func (g *guestRW) Write(cmd []byte) (int, error) {
	// The page is another domain's memory to the backend, which reads it
	// only in atomic words; this frontend writes it the same way, so the
	// race detector sees the two sides as two machines would be.
	storeWords(g.c.page, 8, cmd)
	atomic.StoreUint32(pageWord(g.c.page, 0), uint32(len(cmd)))
	atomic.StoreUint32(pageWord(g.c.page, 4), tpmback.StateSubmit)
	g.c.toBack <- struct{}{}
	for {
		select {
		case <-g.c.toFront:
		case <-time.After(30 * time.Second):
			return 0, errors.New("guest: no answer")
		}
		switch tpmback.State(g.c.page) {
		case tpmback.StateFinish:
			n := atomic.LoadUint32(pageWord(g.c.page, 0))
			if n > tpmback.PageSize-8 {
				return 0, fmt.Errorf("guest: response length %d", n)
			}
			g.rsp = loadWords(g.c.page, 8, int(n))
			return len(cmd), nil
		case tpmback.StateIdle:
			return 0, errors.New("guest: request cancelled")
		}
	}
}

func pageWord(page []byte, off int) *uint32 { return (*uint32)(unsafe.Pointer(&page[off])) }

func storeWords(page []byte, off int, b []byte) {
	for i := 0; i < len(b); i += 4 {
		var w [4]byte
		copy(w[:], b[i:])
		atomic.StoreUint32(pageWord(page, off+i), binary.LittleEndian.Uint32(w[:]))
	}
}

func loadWords(page []byte, off, n int) []byte {
	b := make([]byte, (n+3)/4*4)
	for i := 0; i < len(b); i += 4 {
		binary.LittleEndian.PutUint32(b[i:], atomic.LoadUint32(pageWord(page, off+i)))
	}
	return b[:n]
}

func (g *guestRW) Read(b []byte) (int, error) {
	if len(g.rsp) == 0 {
		return 0, io.EOF
	}
	n := copy(b, g.rsp)
	g.rsp = g.rsp[n:]
	return n, nil
}
func (g *guestRW) Close() error { return nil }

type host struct {
	t     *testing.T
	s     mapStore
	mu    sync.Mutex
	live  map[uint32]bool
	chans map[uint32]*chanMem
	root  string
}

const beRoot = "/local/domain/0/backend/vtpm"

func (h *host) exists(d uint32) (bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.live[d], nil
}

// vtpmback is one run of vtpmback: manager and backend, as serve()
// builds them; a device a previous run had Connected is served again
// by the first Step (tpmback re-maps its ring).
func (h *host) vtpmback() (*vtpm.Manager, *tpmback.Backend) {
	h.t.Helper()
	m, err := vtpm.New(vtpm.Config{
		StateDir: filepath.Join(h.root, "tpm"), RunDir: filepath.Join(h.root, "run"),
		CA: &swtpm.CA{Dir: filepath.Join(h.root, "ca")}, Exists: h.exists,
		DeviceModel: func(uint32) (bool, bool) { return false, false },
		Logf:        h.t.Logf,
	})
	if err != nil {
		h.t.Fatal(err)
	}
	b := &tpmback.Backend{
		Store: h.s, Root: beRoot,
		Connect: func(id, ref, port uint32) (tpmback.Channel, error) {
			h.mu.Lock()
			defer h.mu.Unlock()
			c := newChan()
			h.chans[id] = c
			return c, nil
		},
		OpenTPM: func(domid uint32, be, uuid string) (tpmback.TPM, string, error) {
			hd, what, err := m.Attach(domid, be, uuid)
			if err != nil {
				return nil, "", err
			}
			return hd, what, nil
		},
		Logf: h.t.Logf,
	}
	m.Reap()
	b.Step()
	b.Settle()
	return m, b
}

// create is xl create's device part plus the frontend connecting.
func (h *host) create(b *tpmback.Backend, d uint32, uuid string) pcrbank.Target {
	h.t.Helper()
	h.mu.Lock()
	h.live[d] = true
	h.mu.Unlock()
	be, fe := beRoot+"/"+itoa(d)+"/0", "/local/domain/"+itoa(d)+"/device/vtpm/0"
	for k, v := range map[string]string{be + "/frontend": fe, be + "/frontend-id": itoa(d), be + "/online": "1", be + "/state": "1", be + "/uuid": uuid, fe + "/state": "1"} {
		h.s[k] = v
	}
	b.Step()
	b.Settle()
	h.s[fe+"/ring-ref"], h.s[fe+"/event-channel"], h.s[fe+"/feature-protocol-v2"], h.s[fe+"/state"] = "8", "5", "1", "3"
	b.Step()
	b.Settle()
	if h.s[be+"/state"] != "4" {
		h.t.Fatalf("domain %d's device: backend state %s (error %q)", d, h.s[be+"/state"], h.s[be+"/error"])
	}
	h.s[fe+"/state"] = "4"
	return h.tpm(d)
}

func (h *host) tpm(d uint32) pcrbank.Target {
	h.t.Helper()
	h.mu.Lock()
	c := h.chans[d]
	h.mu.Unlock()
	tg, err := tpmfront.OpenReadWriter(&guestRW{c: c})
	if err != nil {
		h.t.Fatalf("domain %d's TPM: %v", d, err)
	}
	return tg
}

// destroy is xl destroy: the devices go, then the domain.
func (h *host) destroy(b *tpmback.Backend, m *vtpm.Manager, d uint32) {
	for k := range h.s {
		if strings.HasPrefix(k, beRoot+"/"+itoa(d)+"/") || strings.HasPrefix(k, "/local/domain/"+itoa(d)+"/") {
			delete(h.s, k)
		}
	}
	b.Step()
	b.Settle()
	h.mu.Lock()
	h.live[d] = false
	h.mu.Unlock()
	m.Reap() // @releaseDomain
}

func pcr4(t *testing.T, tg pcrbank.Target) []byte {
	t.Helper()
	v, err := tg.ReadPCR(4, pcrbank.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func extend4(t *testing.T, tg pcrbank.Target, data string) {
	t.Helper()
	banks, _ := tg.Banks()
	d := pcrbank.Digests{}
	for _, a := range banks {
		h := a.New()
		h.Write([]byte(data))
		d[a] = h.Sum(nil)
	}
	if err := tg.Extend(4, d); err != nil {
		t.Fatal(err)
	}
}

// H(0^32 || H(data)) with crypto/sha256 alone.
func want4(data string) []byte {
	d := sha256.Sum256([]byte(data))
	v := sha256.Sum256(append(make([]byte, 32), d[:]...))
	return v[:]
}

// A guest's life through vtpmback's parts: created (its TPM made and
// reset), vtpmback restarted while it runs (re-adopted, its Connected
// device served again, PCRs unchanged), rebooted (xl: destroy + create,
// a new domid: PCRs a fresh TPM's again, same prediction).
func TestGuestLife(t *testing.T) {
	testenv.NeedCommands(t, "swtpm", "swtpm_setup", "swtpm_localca")
	const u = "00000000-7e57-4000-8000-0000000000aa"
	h := &host{t: t, s: mapStore{}, live: map[uint32]bool{}, chans: map[uint32]*chanMem{}, root: t.TempDir()}
	t.Cleanup(func() {
		if pid, err := swtpm.ReadPID(filepath.Join(h.root, "run", "tpm", u+".pid")); err == nil && swtpm.Alive(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	m, b := h.vtpmback()
	tg := h.create(b, 5, u)
	extend4(t, tg, "kernel")
	if got := pcr4(t, tg); !bytes.Equal(got, want4("kernel")) {
		t.Fatalf("boot 1: PCR 4 = %x, want %x", got, want4("kernel"))
	}

	// vtpmback restarts: the old one stops serving (its devices stay
	// Connected in xenstore), a new one starts on the same directories.
	old := h.chans[5]
	b.Close()
	m.Close()
	m, b = h.vtpmback()
	if h.chans[5] == old {
		t.Fatal("after restart, domain 5's Connected device was not connected again")
	}
	if got := h.s[beRoot+"/5/0/state"]; got != "4" {
		t.Fatalf("after restart, domain 5's device is in state %s, not served again", got)
	}
	if got := pcr4(t, h.tpm(5)); !bytes.Equal(got, want4("kernel")) {
		t.Fatalf("after vtpmback restart: PCR 4 = %x, want %x", got, want4("kernel"))
	}

	// xl reboot.
	h.destroy(b, m, 5)
	tg6 := h.create(b, 6, u)
	if got := pcr4(t, tg6); !bytes.Equal(got, make([]byte, 32)) {
		t.Fatalf("boot 2 starts with PCR 4 = %x, want zero", got)
	}
	extend4(t, tg6, "kernel")
	if got := pcr4(t, tg6); !bytes.Equal(got, want4("kernel")) {
		t.Fatalf("boot 2: PCR 4 = %x, want %x (boot 1's)", got, want4("kernel"))
	}
	b.Close()
	m.Close()
}
