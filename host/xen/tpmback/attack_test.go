package tpmback

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vtpmboot/vtpmboot/xen/xenstore"
)

// The tests here play a hostile guest against the backend, through the
// in-memory store (xenstored needs Xen; e2e/xen runs the backend against
// the real one) and in-memory pages.

const root = "/local/domain/0/backend/vtpm"

func beOf(dom int) string { return fmt.Sprintf("%s/%d/0", root, dom) }
func feOf(dom int) string { return fmt.Sprintf("/local/domain/%d/device/vtpm/0", dom) }
func uuidOf(dom int) string {
	return fmt.Sprintf("00000000-7e57-4000-8000-%012d", dom)
}

// addGuest writes what libxl__device_add_async writes for domain dom's
// vtpm=[...], and what xen-tpmfront's setup_ring writes once it has a
// page (ring-ref dom+100, event channel dom+200).
func addGuest(s *memStore, dom int) {
	be, fe := beOf(dom), feOf(dom)
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range map[string]string{
		be + "/frontend": fe, be + "/frontend-id": fmt.Sprint(dom), be + "/online": "1", be + "/state": "1",
		be + "/handle": "0", be + "/uuid": uuidOf(dom), be + "/resume": "False",
		fe + "/backend": be, fe + "/backend-id": "0", fe + "/state": "1", fe + "/handle": "0",
	} {
		s.data[k] = v
	}
}

func initGuest(s *memStore, dom int) {
	fe := feOf(dom)
	s.Write(fe+"/ring-ref", fmt.Sprint(dom+100))
	s.Write(fe+"/event-channel", fmt.Sprint(dom+200))
	s.Write(fe+"/feature-protocol-v2", "1")
	s.Write(fe+"/state", "3")
}

// countStore counts the requests the backend makes.
type countStore struct {
	*memStore
	n atomic.Int64
}

func (c *countStore) Read(p string) (string, error) { c.n.Add(1); return c.memStore.Read(p) }
func (c *countStore) Write(p, v string) error       { c.n.Add(1); return c.memStore.Write(p, v) }
func (c *countStore) Directory(p string) ([]string, error) {
	c.n.Add(1)
	return c.memStore.Directory(p)
}

// rig is a backend over a memStore with echo TPMs, recording what it
// opened and mapped.
type rig struct {
	s       *memStore
	b       *Backend
	mu      sync.Mutex
	open    []string // uuid
	openFor []string // "domid backend-path" of each open
	maps    []string // frontend id/ring-ref/port
	chs     map[uint32]*memChannel
	logs    []string
}

func newRig(t *testing.T, store func(*memStore) Store) *rig {
	r := &rig{s: &memStore{data: map[string]string{}, watches: map[string]bool{}}, chs: map[uint32]*memChannel{}}
	var st Store = r.s
	if store != nil {
		st = store(r.s)
	}
	r.b = &Backend{Store: st, Root: root,
		Connect: func(id, ref, port uint32) (Channel, error) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.maps = append(r.maps, fmt.Sprintf("%d/%d/%d", id, ref, port))
			c := newMemChannel()
			r.chs[id] = c
			return c, nil
		},
		OpenTPM: func(domid uint32, be, uuid string) (TPM, string, error) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.open = append(r.open, uuid)
			r.openFor = append(r.openFor, fmt.Sprintf("%d %s", domid, be))
			return &echoTPM{}, "echo", nil
		},
		Logf: func(f string, a ...any) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.logs = append(r.logs, fmt.Sprintf(f, a...))
		},
	}
	return r
}

func (r *rig) state(dom int) string { v, _ := r.s.Read(beOf(dom) + "/state"); return v }

// event delivers a watch event as xenstored would for a write of p, and
// waits for the jobs it started.
func (r *rig) event(p string) {
	tok := FrontendToken
	if strings.HasPrefix(p, root) {
		tok = "vtpmback-root"
	}
	r.b.HandleEvent(xenstore.WatchEvent{Path: p, Token: tok})
	r.b.waitJobs()
}

func (r *rig) connectAll(t *testing.T, n int) {
	for dom := 1; dom <= n; dom++ {
		addGuest(r.s, dom)
	}
	step(r.b)
	for dom := 1; dom <= n; dom++ {
		initGuest(r.s, dom)
		r.event(feOf(dom) + "/state")
		if r.state(dom) != "4" {
			t.Fatalf("domain %d: backend state %q", dom, r.state(dom))
		}
	}
}

// TestGuestWriteCostsOneDevice: a guest writing its own frontend state
// in a loop costs the backend the same few requests per write however
// many guests it serves. Before, every event reconciled every device:
// the full reconcile's count is logged next to it for 1, 10 and 100
// guests.
func TestGuestWriteCostsOneDevice(t *testing.T) {
	var per []int64
	for _, n := range []int{1, 10, 100} {
		var cs *countStore
		r := newRig(t, func(m *memStore) Store { cs = &countStore{memStore: m}; return cs })
		r.connectAll(t, n)
		cs.n.Store(0)
		r.s.Write(feOf(1)+"/state", "4") // the same value, again
		r.event(feOf(1) + "/state")
		one := cs.n.Load()
		cs.n.Store(0)
		step(r.b)
		all := cs.n.Load()
		t.Logf("%3d guests: %d requests per guest write (a full reconcile: %d)", n, one, all)
		per = append(per, one)
		r.b.Close()
	}
	// be/state, be/online, fe/state: the device's two states and whether
	// the toolstack still wants it.
	for i, n := range per {
		if n != 3 {
			t.Errorf("%d requests per guest write with %d guests, want 3", n, []int{1, 10, 100}[i])
		}
	}
}

// A guest's events, however many, reach only its own device: events on
// nodes it creates under its state node, and on paths that only look
// like another guest's, change nothing for the others.
func TestGuestEventsStayInItsDevice(t *testing.T) {
	var cs *countStore
	r := newRig(t, func(m *memStore) Store { cs = &countStore{memStore: m}; return cs })
	r.connectAll(t, 3)
	cs.n.Store(0)
	for _, p := range []string{feOf(2) + "/state/x/y", feOf(2) + "/statex", feOf(2), "/local/domain/2", root + "x/1/0", "state"} {
		r.event(p)
	}
	if got := cs.n.Load(); got != 3 { // the one under state
		t.Errorf("%d requests for events that name no device but domain 2's once, want 3", got)
	}
	for dom := 1; dom <= 3; dom++ {
		if r.state(dom) != "4" {
			t.Errorf("domain %d: state %q", dom, r.state(dom))
		}
	}
	r.b.Close()
}

// blockTPM never answers until released, and Close does not end a
// command in flight: a TPM whose owner hangs.
type blockTPM struct {
	in      chan struct{} // a command arrived
	release chan struct{}
}

func (b *blockTPM) Transmit(cmd []byte) ([]byte, error) {
	b.in <- struct{}{}
	<-b.release
	return append([]byte(nil), cmd...), nil
}
func (b *blockTPM) Close() error { return nil }

// within fails the test if f has not returned in 20 s: a liveness
// bound (the thing tested hangs for ever without the fix), not a
// measure of speed.
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { f(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: still blocked after 20 s", what)
	}
}

// TestStuckServeDoesNotBlockOthers: guest 7's TPM never answers, and
// guest 7 closes its frontend while its command hangs. Guest 8 must
// still be connected and served; guest 7's device says Closed only once
// its page is unmapped.
func TestStuckServeDoesNotBlockOthers(t *testing.T) {
	r := newRig(t, nil)
	stuck := &blockTPM{in: make(chan struct{}), release: make(chan struct{})}
	r.b.OpenTPM = func(_ uint32, _, uuid string) (TPM, string, error) {
		if uuid == uuidOf(7) {
			return stuck, "stuck", nil
		}
		return &echoTPM{}, "echo", nil
	}
	addGuest(r.s, 7)
	step(r.b)
	initGuest(r.s, 7)
	r.event(feOf(7) + "/state")
	if r.state(7) != "4" {
		t.Fatalf("guest 7: state %q", r.state(7))
	}
	go (&frontend{m: r.chs[7]}).Write(tpmCmd(12))
	<-stuck.in
	r.s.Write(feOf(7)+"/state", "5")
	within(t, "guest 7's close", func() { r.b.HandleEvent(xenstore.WatchEvent{Path: feOf(7) + "/state", Token: FrontendToken}) })
	addGuest(r.s, 8)
	within(t, "guest 8's add", func() { r.b.HandleEvent(xenstore.WatchEvent{Path: beOf(8) + "/state", Token: "r"}) })
	initGuest(r.s, 8)
	within(t, "guest 8's connect", func() {
		r.b.HandleEvent(xenstore.WatchEvent{Path: feOf(8) + "/state", Token: FrontendToken})
		for r.state(8) != "4" { // the connect job, which guest 7's teardown must not hold up
			time.Sleep(time.Millisecond)
		}
	})
	r.mu.Lock()
	ch8 := r.chs[8]
	r.mu.Unlock()
	within(t, "guest 8's command", func() {
		if _, err := (&frontend{m: ch8}).Write(tpmCmd(14)); err != nil {
			t.Errorf("guest 8: %v", err)
		}
	})
	if r.state(7) == "6" || r.chs[7].released {
		t.Errorf("guest 7 said Closed (%q) or unmapped (%v) while its command still ran", r.state(7), r.chs[7].released)
	}
	close(stuck.release)
	r.b.waitJobs()
	if r.state(7) != "6" || !r.chs[7].released {
		t.Errorf("guest 7 after its command ended: state %q, unmapped %v", r.state(7), r.chs[7].released)
	}
	r.b.Close()
}

// An OpenTPM that takes long (a vTPM being set up) holds up its own
// device only.
func TestSlowOpenDoesNotBlockOthers(t *testing.T) {
	r := newRig(t, nil)
	release := make(chan struct{})
	r.b.OpenTPM = func(_ uint32, _, uuid string) (TPM, string, error) {
		if uuid == uuidOf(7) {
			<-release
		}
		return &echoTPM{}, "echo", nil
	}
	addGuest(r.s, 7)
	addGuest(r.s, 8)
	step(r.b)
	initGuest(r.s, 7)
	within(t, "guest 7's connect", func() { r.b.HandleEvent(xenstore.WatchEvent{Path: feOf(7) + "/state", Token: FrontendToken}) })
	initGuest(r.s, 8)
	within(t, "guest 8's connect", func() {
		r.b.HandleEvent(xenstore.WatchEvent{Path: feOf(8) + "/state", Token: FrontendToken})
		for r.state(8) != "4" {
			time.Sleep(time.Millisecond)
		}
	})
	close(release)
	r.b.waitJobs()
	if r.state(7) != "4" {
		t.Errorf("guest 7 after its TPM opened: state %q", r.state(7))
	}
	r.b.Close()
}

// TestReserveAfterRestart: a backend stops while a guest is Connected
// (as systemctl restart does); the next backend maps the same page and
// serves it, and a command the guest submitted in between is answered.
func TestReserveAfterRestart(t *testing.T) {
	r := newRig(t, nil)
	r.connectAll(t, 1)
	r.b.Close()
	if r.state(1) != "4" || !r.chs[1].released {
		t.Fatalf("after stopping: state %q (the guest must stay Connected), unmapped %v", r.state(1), r.chs[1].released)
	}
	r2 := newRig(t, nil)
	r2.s = r.s
	r2.b.Store = r.s
	// The guest's page, as it left it: a command waiting.
	page := newPage()
	submit(page, tpmCmd(16), 0)
	r2.b.Connect = func(id, ref, port uint32) (Channel, error) {
		r2.maps = append(r2.maps, fmt.Sprintf("%d/%d/%d", id, ref, port))
		c := newMemChannel()
		c.page = page
		r2.chs[id] = c
		return c, nil
	}
	step(r2.b)
	if len(r2.maps) != 1 || r2.maps[0] != "1/101/201" || r2.state(1) != "4" || len(r2.open) != 1 || r2.open[0] != uuidOf(1) {
		t.Fatalf("restarted backend: mapped %v, opened %v, state %q", r2.maps, r2.open, r2.state(1))
	}
	within(t, "the waiting command", func() {
		for State(page) != StateFinish {
			time.Sleep(time.Millisecond)
		}
	})
	fr := &frontend{m: r2.chs[1]}
	if _, err := fr.Write(tpmCmd(18)); err != nil {
		t.Fatalf("command after the restart: %v", err)
	}
	r2.b.Close()
}

// TestNumbersParsed: ring-ref, event-channel and frontend-id are what
// xenbus_printf("%u") and libxl write, or refused with one line in the
// device's error node; never truncated to 32 bits (2^32+101 would map
// grant 101).
func TestNumbersParsed(t *testing.T) {
	for _, tc := range []struct{ node, value, want string }{
		{"/ring-ref", "4294967397", "ring-ref"},
		{"/ring-ref", "-1", "ring-ref"},
		{"/ring-ref", "+101", "ring-ref"},
		{"/ring-ref", " 101", "ring-ref"},
		{"/ring-ref", "0x65", "ring-ref"},
		{"/ring-ref", "", "ring-ref"},
		{"/event-channel", "4294967497", "event-channel"},
		{"/event-channel", "201\n", "event-channel"},
	} {
		r := newRig(t, nil)
		addGuest(r.s, 1)
		step(r.b)
		initGuest(r.s, 1)
		r.s.Write(feOf(1)+tc.node, tc.value)
		r.event(feOf(1) + "/state")
		if len(r.maps) != 0 || r.state(1) != "5" || !strings.Contains(r.s.data[beOf(1)+"/error"], tc.want) {
			t.Errorf("%s = %q: mapped %v, state %q, error %q", tc.node, tc.value, r.maps, r.state(1), r.s.data[beOf(1)+"/error"])
		}
		r.b.Close()
	}
	// frontend-id is the toolstack's, but a value that truncates to
	// another domain's id must not name it.
	r := newRig(t, nil)
	addGuest(r.s, 7)
	r.s.Write(beOf(7)+"/frontend-id", "4294967303")
	step(r.b)
	initGuest(r.s, 7)
	r.event(feOf(7) + "/state")
	if len(r.maps) != 0 || len(r.open) != 0 {
		t.Errorf("frontend-id 2^32+7: mapped %v, opened %v", r.maps, r.open)
	}
	if n := countLines(r, "frontend-id"); n != 1 {
		t.Errorf("%d lines about frontend-id, want 1: %q", n, r.logs)
	}
	r.b.Close()
}

func countLines(r *rig, sub string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, l := range r.logs {
		if strings.Contains(l, sub) {
			n++
		}
	}
	return n
}

// TestFrontendCannotChooseTPM: guest 7 writes every node it owns, and
// some it would like to, with guest 8's identity (its uuid, its backend
// path, its domain id) before it connects. The TPM opened and the page
// mapped are still guest 7's: the uuid and the frontend's domain come
// from the backend directory, which the toolstack writes.
func TestFrontendCannotChooseTPM(t *testing.T) {
	r := newRig(t, nil)
	addGuest(r.s, 7)
	addGuest(r.s, 8)
	step(r.b)
	for _, n := range []string{"/uuid", "/backend", "/backend-id", "/frontend", "/frontend-id", "/domid", "/device/vtpm/0/uuid"} {
		for _, base := range []string{feOf(7), "/local/domain/7"} {
			r.s.Write(base+n, map[string]string{"/uuid": uuidOf(8), "/device/vtpm/0/uuid": uuidOf(8), "/backend": beOf(8),
				"/frontend": feOf(8), "/frontend-id": "8", "/backend-id": "8", "/domid": "8"}[n])
		}
	}
	initGuest(r.s, 7)
	r.event(feOf(7) + "/state")
	r.event(feOf(7) + "/uuid")
	r.event(feOf(7) + "/backend")
	if len(r.open) != 1 || r.open[0] != uuidOf(7) || r.openFor[0] != "7 "+beOf(7) || len(r.maps) != 1 || !strings.HasPrefix(r.maps[0], "7/") {
		t.Errorf("guest 7 opened %v for %v and mapped %v, want only %s for domain 7 and domain 7's page", r.open, r.openFor, r.maps, uuidOf(7))
	}
	r.b.Close()
}

// TestRefusalsRateLimited: a guest submits malformed requests as fast as
// it can for half a second. The log gets a handful of lines, and when
// the device goes one line counts the rest and says the last reason.
func TestRefusalsRateLimited(t *testing.T) {
	r := newRig(t, nil)
	r.connectAll(t, 1)
	m := r.chs[1]
	refused := 0
	for end := time.Now().Add(500 * time.Millisecond); time.Now().Before(end); refused++ {
		submit(m.page, tpmCmd(12), 1) // an extra page: refused
		m.toBack <- struct{}{}
		<-m.toFront
		if State(m.page) != StateIdle {
			t.Fatalf("malformed request not refused: state %d", State(m.page))
		}
	}
	lines := countLines(r, "refused")
	r.b.Close()
	r.mu.Lock()
	last := r.logs[len(r.logs)-1]
	r.mu.Unlock()
	t.Logf("%d requests refused in 0.5 s: %d lines, then %q", refused, lines, last)
	if lines > logBurst {
		t.Errorf("%d lines for %d refused requests, want at most %d", lines, refused, logBurst)
	}
	want := fmt.Sprintf("%s: %d requests refused in the last 1m0s: refused: %v", beOf(1), refused-logBurst, ErrExtraPages)
	if !strings.HasPrefix(last, want) {
		t.Errorf("last line %q, want %q...", last, want)
	}
}

// The window's summary comes when the window ends, and a flood that goes
// on costs one line per window. The clock and the timer are the test's.
func TestRateLogWindows(t *testing.T) {
	var lines []string
	now := time.Unix(1000, 0)
	var fire func()
	r := newRateLog(func(f string, a ...any) { lines = append(lines, fmt.Sprintf(f, a...)) }, "dev", "requests refused", time.Minute)
	r.now = func() time.Time { return now }
	r.after = func(d time.Duration, f func()) *time.Timer {
		if d != time.Minute {
			t.Errorf("window ends in %v, want 1m", d)
		}
		fire = f
		return time.NewTimer(time.Hour)
	}
	for i := range 100 {
		r.printf("bad %d", i)
	}
	if len(lines) != logBurst || fire == nil {
		t.Fatalf("%d lines in the window, timer %v", len(lines), fire != nil)
	}
	now = now.Add(time.Minute)
	fire()
	if want := "dev: 95 requests refused in the last 1m0s: bad 99"; lines[len(lines)-1] != want {
		t.Errorf("summary %q, want %q", lines[len(lines)-1], want)
	}
	// Still flooding: no lines until the next summary.
	n := len(lines)
	fire = nil
	for i := range 50 {
		r.printf("worse %d", i)
	}
	if len(lines) != n || fire == nil {
		t.Fatalf("flood went on: %d new lines, timer %v", len(lines)-n, fire != nil)
	}
	now = now.Add(time.Minute)
	fire()
	// Quiet for a window: lines pass again.
	now = now.Add(2 * time.Minute)
	r.printf("once more")
	if got := lines[len(lines)-2:]; got[0] != "dev: 50 requests refused in the last 1m0s: worse 49" || got[1] != "dev: once more" {
		t.Errorf("lines %q", got)
	}
	r.stop()
}

// abortTPM answers once released; Close aborts a command in flight, as
// closing an swtpm socket does.
type abortTPM struct {
	in, release, closed chan struct{}
	once                sync.Once
}

func (a *abortTPM) Transmit(cmd []byte) ([]byte, error) {
	a.in <- struct{}{}
	select {
	case <-a.release:
		return append([]byte(nil), cmd...), nil
	case <-a.closed:
		return nil, errors.New("closed")
	}
}
func (a *abortTPM) Close() error { a.once.Do(func() { close(a.closed) }); return nil }

// TestCloseDrains: a backend stopping lets a command in flight finish
// and answers it, rather than closing the TPM under it and leaving the
// command on the page for the next backend to run a second time.
func TestCloseDrains(t *testing.T) {
	r := newRig(t, nil)
	tpm := &abortTPM{in: make(chan struct{}), release: make(chan struct{}), closed: make(chan struct{})}
	r.b.OpenTPM = func(uint32, string, string) (TPM, string, error) { return tpm, "abort", nil }
	r.connectAll(t, 1)
	m := r.chs[1]
	submit(m.page, tpmCmd(12), 0)
	m.toBack <- struct{}{}
	<-tpm.in
	go func() { time.Sleep(50 * time.Millisecond); close(tpm.release) }()
	within(t, "Close", r.b.Close)
	if State(m.page) != StateFinish {
		t.Errorf("after Close the page is in state %d, want Finish (%d): the command was cut off", State(m.page), StateFinish)
	}
}

// TestSharedUUIDRefused: two running domains whose configs name the same
// vTPM; the second is refused with one line (and its error node), and
// gets the vTPM once the first has let go of it.
func TestSharedUUIDRefused(t *testing.T) {
	r := newRig(t, nil)
	addGuest(r.s, 1)
	addGuest(r.s, 2)
	r.s.Write(beOf(2)+"/uuid", uuidOf(1))
	step(r.b)
	initGuest(r.s, 1)
	r.event(feOf(1) + "/state")
	initGuest(r.s, 2)
	r.event(feOf(2) + "/state")
	if r.state(1) != "4" || r.state(2) != "5" || len(r.open) != 1 {
		t.Fatalf("states %q %q, opened %v", r.state(1), r.state(2), r.open)
	}
	want := fmt.Sprintf("vTPM %s is in use by domain 1", uuidOf(1))
	if !strings.Contains(r.s.data[beOf(2)+"/error"], want) || countLines(r, want) != 1 {
		t.Errorf("error node %q, log %q; want one line saying %q", r.s.data[beOf(2)+"/error"], r.logs, want)
	}
	// Domain 1 goes; domain 2's frontend starts over and connects.
	r.s.Write(beOf(1)+"/online", "0")
	r.event(beOf(1) + "/online")
	r.s.Write(feOf(2)+"/state", "6")
	r.event(feOf(2) + "/state")
	r.s.Write(feOf(2)+"/state", "1")
	r.event(feOf(2) + "/state")
	initGuest(r.s, 2)
	r.event(feOf(2) + "/state")
	if r.state(2) != "4" || len(r.open) != 2 || r.open[1] != uuidOf(1) {
		t.Errorf("after domain 1 went: state %q, opened %v", r.state(2), r.open)
	}
	r.b.Close()
}

// Run looks at every device once at start (a device already waiting is
// connected without any event), then follows events.
func TestRun(t *testing.T) {
	r := newRig(t, nil)
	addGuest(r.s, 1)
	initGuest(r.s, 1)
	r.s.Write(beOf(1)+"/state", "2") // InitWait from before: a restart mid-handshake
	events := make(chan xenstore.WatchEvent)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.b.Run(ctx, events) }()
	wait := func(dom int, st string) {
		within(t, fmt.Sprintf("domain %d state %s", dom, st), func() {
			for r.state(dom) != st {
				time.Sleep(time.Millisecond)
			}
		})
	}
	wait(1, "4")
	addGuest(r.s, 2)
	events <- xenstore.WatchEvent{Path: beOf(2), Token: RootToken}
	wait(2, "2")
	initGuest(r.s, 2)
	events <- xenstore.WatchEvent{Path: feOf(2) + "/state", Token: FrontendToken}
	wait(2, "4")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !r.s.watches[root] {
		t.Error("Run did not watch the backend root")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, c := range r.chs {
		if !c.released {
			t.Errorf("domain %d's page mapped after Run returned", id)
		}
	}
	close(events)
}

// failChannel is a memChannel whose wait fails (an event channel device
// that errors).
type failChannel struct{ *memChannel }

func (f failChannel) Wait() error { return errors.New("evtchn read: input/output error") }

// A channel that fails ends the device with an error node and Closing,
// once, not a device that looks connected with nobody serving it, nor a
// loop of reconnects.
func TestServeFailureCloses(t *testing.T) {
	r := newRig(t, nil)
	var chs []failChannel
	r.b.Connect = func(id, ref, port uint32) (Channel, error) {
		c := failChannel{newMemChannel()}
		chs = append(chs, c)
		return c, nil
	}
	addGuest(r.s, 1)
	step(r.b)
	initGuest(r.s, 1)
	r.event(feOf(1) + "/state")
	within(t, "the failed device closing", func() {
		for r.state(1) != "5" {
			time.Sleep(time.Millisecond)
		}
		r.b.waitJobs()
	})
	r.event(feOf(1) + "/state")
	if !strings.Contains(r.s.data[beOf(1)+"/error"], "input/output error") || len(chs) != 1 || !chs[0].released {
		t.Errorf("error node %q, %d connects, released %v", r.s.data[beOf(1)+"/error"], len(chs), len(chs) > 0 && chs[0].released)
	}
	r.b.Close()
}
