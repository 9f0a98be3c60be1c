package tpmback

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vtpmboot/vtpmboot/xen/xenstore"
)

// Xenbus states (xen/include/public/io/xenbus.h).
const (
	xbUnknown      = 0
	xbInitialising = 1
	xbInitWait     = 2
	xbInitialised  = 3
	xbConnected    = 4
	xbClosing      = 5
	xbClosed       = 6
)

// Store is what the backend needs of xenstore.
type Store interface {
	Read(path string) (string, error)
	Write(path, value string) error
	Directory(path string) ([]string, error)
	Watch(path, token string) error
	Unwatch(path, token string) error
}

// Backend serves every vtpm device under Root (the backend domain's
// /local/domain/<id>/backend/vtpm). It is level-triggered: a device is
// looked at as a whole (its xenbus states, not what the event said
// changed), so a missed or merged event costs nothing as long as the
// device is looked at again afterwards.
//
// What one guest does must cost the others nothing: an event on a
// frontend's state looks at that device only (a guest writing its own
// state in a loop costs a few reads per write, however many guests run),
// connecting and disconnecting run outside the lock (a TPM that does not
// answer, or an OpenTPM that takes long, holds up that device only), and
// each device's log lines are rate-limited.
type Backend struct {
	Store Store
	Root  string
	// Connect maps the frontend's ring-ref and binds its event channel.
	Connect func(frontendID, ringRef, port uint32) (Channel, error)
	// OpenTPM gives the TPM for a device of frontend domain domid
	// (backend path be), by the uuid xl wrote (vtpm= uuid=), and says
	// what it is for the log. The domid lets the TPM's owner tell one
	// boot from the next (host/vtpm).
	OpenTPM func(domid uint32, be, uuid string) (TPM, string, error)
	// Logf must be safe to call from several goroutines.
	Logf func(format string, args ...any)
	// LogEvery is the window of each device's log limit: at most
	// logBurst lines of a kind per window, then one line that counts the
	// rest (0: a minute).
	LogEvery time.Duration

	mu       sync.Mutex
	devices  map[string]*device // by backend path
	byFE     map[string]*device // by frontend path
	stopping bool
	// jobs counts connects and teardowns in flight; idle is signalled
	// when it drops to zero. Both under mu: a job can start from a
	// goroutine that is not one (a failing serve loop), which a
	// WaitGroup would not allow while someone waits.
	jobs int
	idle *sync.Cond
}

type device struct {
	be, fe  string // xenstore paths
	feID    uint32
	watched bool // fe/state watch set
	conn    *conn
	// busy: a connect or a teardown runs outside the lock; the device is
	// looked at again when it ends, not before.
	busy bool
	gone bool // removed from the store while busy
	// uuid is the vTPM the device is connected to, or connecting to.
	uuid string
	// refused rate-limits Serve's lines (refused requests, TPM errors),
	// events the rest; a guest can cause both as fast as it likes.
	refused, events *rateLog
}

// conn is a connected device: a goroutine in Serve.
type conn struct {
	ch   Channel
	tpm  TPM
	done chan struct{}
}

// FrontendToken tags the watches Backend sets on frontends' state.
const FrontendToken = "vtpmback-frontend"

// drainTimeout bounds how long Close lets a command in flight finish
// before it closes the TPM under it.
const drainTimeout = 10 * time.Second

// RootToken tags the watch Run sets on Root.
const RootToken = "vtpmback-root"

// Run serves until ctx is done or events is closed (the store's
// connection ended): it watches Root, looks at every device once, then
// hands each event to HandleEvent. It closes the backend before it
// returns. events is the store client's (xenstore.Client.Events), which
// coalesces and bounds them.
func (b *Backend) Run(ctx context.Context, events <-chan xenstore.WatchEvent) error {
	defer b.Close()
	if err := b.Store.Watch(b.Root, RootToken); err != nil {
		return fmt.Errorf("watch %s: %w", b.Root, err)
	}
	b.Step()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				return errors.New("xenstore connection closed")
			}
			b.HandleEvent(ev)
		}
	}
}

// Settle waits until the connects and teardowns that events started
// are done, so that the store shows their outcome: for tests, and for a
// caller that must know a device's state before it goes on.
func (b *Backend) Settle() { b.waitJobs() }

// startJob counts a job; call with mu held.
func (b *Backend) startJob() { b.jobs++ }

// endJob uncounts one; call with mu held.
func (b *Backend) endJob() {
	b.jobs--
	if b.jobs == 0 {
		b.idle.Broadcast()
	}
}

// waitJobs waits until no job is in flight.
func (b *Backend) waitJobs() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.init()
	for b.jobs > 0 {
		b.idle.Wait()
	}
}

func (b *Backend) init() {
	if b.idle == nil {
		b.idle = sync.NewCond(&b.mu)
	}
	if b.devices == nil {
		b.devices = map[string]*device{}
		b.byFE = map[string]*device{}
	}
}

// Step reconciles every device with the store: at start, after watching
// Root, and whenever events may have been lost (an Overflow event).
// After any other event call HandleEvent, which looks at the device the
// event names only.
func (b *Backend) Step() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.init()
	if !b.stopping {
		b.stepAll()
	}
}

func (b *Backend) stepAll() {
	domids, err := b.Store.Directory(b.Root)
	if err != nil && !errors.Is(err, xenstore.ErrNotExist) {
		// Not "no devices": a store hiccup must not disconnect guests.
		b.Logf("list %s: %v", b.Root, err)
		return
	}
	seen := map[string]bool{}
	for _, dom := range domids {
		b.reconcileDomain(dom, seen)
	}
	for _, d := range b.sorted() {
		if !seen[d.be] {
			b.forget(d)
		}
	}
}

// HandleEvent does what a watch event calls for. Under Root, an event
// on a domain's or Root's own node reconciles the device list there
// (the toolstack adds and removes devices), any deeper one looks at the
// device it is in. On a frontend's state node (or below: the guest owns
// that subtree and may create nodes there), it looks at that device.
// Anything else is not ours and is ignored.
func (b *Backend) HandleEvent(ev xenstore.WatchEvent) {
	if ev.Overflow {
		b.Step()
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.init()
	if b.stopping {
		return
	}
	if rest, ok := strings.CutPrefix(ev.Path, b.Root); ok && (rest == "" || rest[0] == '/') {
		parts := strings.SplitN(strings.TrimPrefix(rest, "/"), "/", 3)
		switch {
		case rest == "":
			b.stepAll()
		case len(parts) == 1:
			b.reconcileDomain(parts[0], nil)
		case parts[0] != "" && parts[1] != "":
			b.refresh(b.Root + "/" + parts[0] + "/" + parts[1])
		}
		return
	}
	// The frontend path is /local/domain/<id>/device/vtpm/<n>; the event
	// is on its state or below.
	for p := ev.Path; len(p) > 0; p = p[:strings.LastIndexByte(p, '/')] {
		if fe, ok := strings.CutSuffix(p, "/state"); ok {
			if d := b.byFE[fe]; d != nil {
				b.refresh(d.be)
				return
			}
		}
		if !strings.Contains(p, "/") {
			return
		}
	}
}

// reconcileDomain looks at every device of one frontend domain under
// Root and forgets those no longer there. seen, if not nil, collects the
// devices found.
func (b *Backend) reconcileDomain(dom string, seen map[string]bool) {
	dir := b.Root + "/" + dom
	ids, err := b.Store.Directory(dir)
	if err != nil && !errors.Is(err, xenstore.ErrNotExist) {
		b.Logf("list %s: %v", dir, err)
		if seen != nil { // keep them: a hiccup is not a removal
			for be := range b.devices {
				if strings.HasPrefix(be, dir+"/") {
					seen[be] = true
				}
			}
		}
		return
	}
	here := map[string]bool{}
	for _, id := range ids {
		be := dir + "/" + id
		here[be] = true
		if seen != nil {
			seen[be] = true
		}
		b.refresh(be)
	}
	if seen != nil {
		return // stepAll forgets what no domain listed, once
	}
	for _, d := range b.sorted() {
		if path.Dir(d.be) == dir && !here[d.be] {
			b.forget(d)
		}
	}
}

func (b *Backend) sorted() []*device {
	var ds []*device
	for _, d := range b.devices {
		ds = append(ds, d)
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i].be < ds[j].be })
	return ds
}

// refresh looks at the device at be: new, changed or gone.
func (b *Backend) refresh(be string) {
	d := b.devices[be]
	if d != nil && d.busy {
		return // looked at when the job ends
	}
	beState, err := b.readUint32(be + "/state")
	if err != nil {
		if errors.Is(err, xenstore.ErrNotExist) {
			if _, err := b.Store.Directory(be); errors.Is(err, xenstore.ErrNotExist) {
				if d != nil {
					b.forget(d)
				}
				return
			}
		}
		return // being written; the next event finishes it
	}
	if d == nil {
		every := b.LogEvery
		if every <= 0 {
			every = time.Minute
		}
		d = &device{be: be,
			refused: newRateLog(b.Logf, be, "requests refused", every),
			events:  newRateLog(b.Logf, be, "state changes", every)}
		b.devices[be] = d
	}
	b.step(d, int(beState))
}

// forget lets go of a device the toolstack removed: nothing may stay
// mapped.
func (b *Backend) forget(d *device) {
	if d.conn != nil {
		b.teardown(d, "removed", false)
	}
	if d.busy {
		d.gone = true
		return
	}
	if d.watched {
		b.Store.Unwatch(d.fe+"/state", FrontendToken)
		d.watched = false
	}
	if b.byFE[d.fe] == d {
		delete(b.byFE, d.fe)
	}
	delete(b.devices, d.be)
	d.refused.stop()
	d.events.stop()
}

// readUint32 reads a decimal number as xenbus_printf("%u") and libxl
// write them: digits only, at most 2^32-1. Anything else, a sign, a
// space or a value that would be truncated, is an error.
func (b *Backend) readUint32(p string) (uint32, error) {
	v, err := b.Store.Read(p)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%s is %q, not a 32-bit unsigned number", p, v)
	}
	return uint32(n), nil
}

func (b *Backend) step(d *device, beState int) {
	if d.fe == "" {
		// Both come from the backend directory, which only the toolstack
		// writes: the guest names neither its domain nor its TPM.
		fe, err := b.Store.Read(d.be + "/frontend")
		if err != nil {
			return // being written
		}
		id, err := b.readUint32(d.be + "/frontend-id")
		if err != nil {
			if !errors.Is(err, xenstore.ErrNotExist) {
				d.events.printf("refused: %v", err)
			}
			return
		}
		if !strings.HasPrefix(fe, fmt.Sprintf("/local/domain/%d/", id)) {
			d.events.printf("refused: frontend %q is not in domain %d's tree", fe, id)
			return
		}
		d.fe, d.feID = fe, id
		if b.byFE[fe] == nil {
			b.byFE[fe] = d
		}
	}
	if !d.watched {
		if err := b.Store.Watch(d.fe+"/state", FrontendToken); err != nil {
			b.Logf("%s: watch %s/state: %v", d.be, d.fe, err)
		} else {
			d.watched = true
		}
	}
	online, _ := b.readUint32(d.be + "/online")
	fs, err := b.readUint32(d.fe + "/state")
	feState := int(fs)
	if err != nil {
		feState = xbUnknown
	}
	switch {
	case online == 0 && beState != xbInitialising || feState == xbClosing || feState == xbClosed && beState != xbClosed:
		// The toolstack takes the device away (online=0, as xl does at
		// destroy and soft reset), or the frontend closes (its kernel
		// shuts down or kexecs): let go of its memory, then say Closed.
		if d.conn != nil {
			b.teardown(d, fmt.Sprintf("frontend state %d, online %d", feState, online), false)
			return
		}
		if beState != xbClosed {
			b.setState(d, xbClosed)
		}
	case beState == xbInitialising, beState == xbClosed && online == 1 && (feState == xbInitialising || feState == xbUnknown):
		// A new device, or a frontend starting over after Closed (a new
		// kernel probing again): offer protocol v2 and wait.
		if d.conn != nil {
			b.teardown(d, "reconnect", false)
			return
		}
		if err := b.Store.Write(d.be+"/feature-protocol-v2", "1"); err != nil {
			b.Logf("%s: %v", d.be, err)
			return
		}
		b.setState(d, xbInitWait)
		d.events.printf("waiting for domain %d's frontend", d.feID)
	case (beState == xbInitWait || beState == xbConnected) && (feState == xbInitialised || feState == xbConnected) && d.conn == nil:
		// Connected with no connection: the frontend is still using the
		// page a backend that stopped (a restart of vtpmback) served.
		// Map it again and go on. The grant is still the frontend's to
		// give, and its event channel can be bound again: when the old
		// backend's binding closed, Xen's evtchn_close
		// (xen/common/event_channel.c) put the frontend's port back to
		// ECS_UNBOUND with our domain as its remote. Serve handles the
		// page before it waits, so a command submitted while no backend
		// ran is answered. One the old backend had sent to the TPM but
		// not answered when it died (a crash; Close lets commands
		// finish) is run a second time: tpmif carries no sequence
		// number that would tell.
		b.connect(d, beState == xbConnected)
	}
}

func (b *Backend) setState(d *device, s int) {
	if err := b.Store.Write(d.be+"/state", strconv.Itoa(s)); err != nil {
		b.Logf("%s: set state %d: %v", d.be, s, err)
	}
}

// connect reads what the frontend published and starts a job that opens
// the TPM and maps the page: either can take long (a TPM being set up,
// a dial), and must not hold up other devices.
func (b *Backend) connect(d *device, again bool) {
	fail := func(err error) {
		d.events.printf("connect: %v", err)
		b.Store.Write(d.be+"/error", err.Error())
		b.setState(d, xbClosing)
	}
	ref, err1 := b.readUint32(d.fe + "/ring-ref")
	port, err2 := b.readUint32(d.fe + "/event-channel")
	if err := errors.Join(err1, err2); err != nil {
		fail(fmt.Errorf("frontend %s has no valid ring-ref and event-channel: %w", d.fe, err))
		return
	}
	if v, err := b.Store.Read(d.fe + "/feature-protocol-v2"); err != nil || v != "1" {
		fail(fmt.Errorf("frontend %s does not speak protocol v2", d.fe))
		return
	}
	// The TPM is the one the toolstack named: the backend directory is
	// not the guest's to write.
	uuid, err := b.Store.Read(d.be + "/uuid")
	if err != nil {
		fail(fmt.Errorf("read uuid: %w", err))
		return
	}
	uuid = strings.TrimSpace(uuid)
	// One vTPM, one domain: a second domain naming a uuid in use (a
	// copied config, or a toolstack mistake) would share the first's
	// PCRs. The same domain may come back (a soft reset keeps the
	// domid); another one only once the first has let go.
	for _, o := range b.devices {
		if o != d && o.uuid == uuid && o.feID != d.feID && (o.conn != nil || o.busy) {
			fail(fmt.Errorf("vTPM %s is in use by domain %d", uuid, o.feID))
			return
		}
	}
	feID := d.feID
	d.uuid = uuid
	d.busy = true
	b.startJob()
	go func() {
		tpm, what, err := b.OpenTPM(feID, d.be, uuid)
		var ch Channel
		if err == nil {
			if ch, err = b.Connect(feID, ref, port); err != nil {
				tpm.Close()
			}
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		defer b.endJob()
		d.busy = false
		if err != nil || b.stopping || d.gone {
			d.uuid = ""
		}
		if err == nil && (b.stopping || d.gone) {
			ch.Close()
			tpm.Close()
			err = errors.New("device removed while connecting")
		}
		switch {
		case b.stopping:
			return
		case d.gone:
			b.forget(d)
			return
		case err != nil:
			fail(err)
			return
		}
		c := &conn{ch: ch, tpm: tpm, done: make(chan struct{})}
		d.conn = c
		how := "connected"
		if again {
			how = "connected again (it was Connected before this backend started)"
		}
		d.events.printf("%s domain %d (ring-ref %d, event channel %d) to %s", how, feID, ref, port, what)
		go func() {
			defer close(c.done)
			err := Serve(ch, tpm, d.refused.printf)
			if err == nil {
				return // interrupted: whoever did it tears down
			}
			// The channel failed (notify or wait): nothing will reach
			// this frontend any more. Say so and let go, rather than
			// look connected with no one serving; Closing with an error
			// is left as it is until the frontend starts over.
			b.mu.Lock()
			defer b.mu.Unlock()
			d.events.printf("serve: %v", err)
			if d.conn != c || b.stopping {
				return
			}
			b.teardown(d, "serving failed", false)
			b.Store.Write(d.be+"/error", "serve: "+err.Error())
			b.setState(d, xbClosing)
		}()
		if !again {
			b.setState(d, xbConnected)
		}
		// The frontend may have moved on while we connected.
		b.refresh(d.be)
	}()
}

// teardown stops serving, in a job: the channel first (ends Serve's
// wait), the TPM (ends a command in flight; with drain, only if it has
// not finished within drainTimeout), then, once Serve has returned, the
// page. The device is looked at again when it is done, so the Closed
// the toolstack waits for is said only once nothing is mapped.
func (b *Backend) teardown(d *device, why string, drain bool) {
	c := d.conn
	d.conn = nil
	d.busy = true
	b.startJob()
	go func() {
		c.ch.Interrupt()
		if drain {
			select {
			case <-c.done:
			case <-time.After(drainTimeout):
			}
		}
		c.tpm.Close()
		<-c.done
		err := c.ch.Close()
		b.mu.Lock()
		defer b.mu.Unlock()
		defer b.endJob()
		if err != nil {
			b.Logf("%s: %v", d.be, err)
		}
		d.events.printf("disconnected (%s)", why)
		d.busy = false
		d.uuid = ""
		switch {
		case b.stopping:
		case d.gone:
			b.forget(d)
		default:
			b.refresh(d.be)
		}
	}()
}

// Close stops serving every device, leaving the store as it is: the
// guests' frontends stay Connected, and a backend started later serves
// them again. A command in flight may finish first (up to drainTimeout),
// so its answer reaches the guest rather than being run twice.
func (b *Backend) Close() {
	b.mu.Lock()
	b.init()
	b.stopping = true
	for _, d := range b.sorted() {
		if d.conn != nil {
			b.teardown(d, "backend stopping", true)
		}
	}
	b.mu.Unlock()
	done := make(chan struct{})
	go func() { b.waitJobs(); close(done) }()
	select {
	case <-done:
	case <-time.After(drainTimeout + 5*time.Second):
		// A TPM whose Close does not end its command: give up on it
		// rather than never stopping (the process is about to exit).
		b.Logf("stopping: some devices' serve loops did not end; their pages stay mapped")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, d := range b.devices {
		d.refused.stop()
		d.events.stop()
	}
}
