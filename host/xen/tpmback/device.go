package tpmback

import (
	"errors"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"

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
// /local/domain/<id>/backend/vtpm). It is level-triggered: on any watch
// event, Step looks at every device's xenbus states and does what they
// call for, so a missed or merged event costs nothing.
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
	Logf    func(format string, args ...any)

	mu      sync.Mutex
	devices map[string]*device // by backend path
}

type device struct {
	be, fe  string // xenstore paths
	feID    uint32
	watched bool // fe/state watch set
	conn    *conn
}

// conn is a connected device: a goroutine in Serve.
type conn struct {
	ch   Channel
	tpm  TPM
	done chan struct{}
}

// FrontendToken tags the watches Backend sets on frontends' state.
const FrontendToken = "vtpmback-frontend"

// Step reconciles every device with the store; call it after each watch
// event (and once at start, after watching Root).
func (b *Backend) Step() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.devices == nil {
		b.devices = map[string]*device{}
	}
	seen := map[string]bool{}
	domids, err := b.Store.Directory(b.Root)
	if err != nil && !errors.Is(err, xenstore.ErrNotExist) {
		// Not "no devices": a store hiccup must not disconnect guests.
		b.Logf("list %s: %v", b.Root, err)
		return
	}
	for _, dom := range domids {
		devids, _ := b.Store.Directory(path.Join(b.Root, dom))
		for _, id := range devids {
			be := path.Join(b.Root, dom, id)
			seen[be] = true
			d := b.devices[be]
			if d == nil {
				d = &device{be: be}
				b.devices[be] = d
			}
			b.step(d)
		}
	}
	// A device whose backend directory is gone (xl removed it after
	// Closed): nothing may stay mapped.
	var gone []string
	for be := range b.devices {
		if !seen[be] {
			gone = append(gone, be)
		}
	}
	sort.Strings(gone)
	for _, be := range gone {
		d := b.devices[be]
		b.disconnect(d, "removed")
		if d.watched {
			b.Store.Unwatch(d.fe+"/state", FrontendToken)
		}
		delete(b.devices, be)
	}
}

func (b *Backend) readInt(p string) (int, bool) {
	v, err := b.Store.Read(p)
	if err != nil {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	return n, err == nil
}

func (b *Backend) step(d *device) {
	beState, ok := b.readInt(d.be + "/state")
	if !ok {
		return // being written; the next event finishes it
	}
	if d.fe == "" {
		fe, err := b.Store.Read(d.be + "/frontend")
		id, ok := b.readInt(d.be + "/frontend-id")
		if err != nil || !ok || id < 0 || !strings.HasPrefix(fe, "/local/domain/") {
			return
		}
		d.fe, d.feID = fe, uint32(id)
	}
	if !d.watched {
		if err := b.Store.Watch(d.fe+"/state", FrontendToken); err != nil {
			b.Logf("%s: watch %s/state: %v", d.be, d.fe, err)
		} else {
			d.watched = true
		}
	}
	online, _ := b.readInt(d.be + "/online")
	feState, ok := b.readInt(d.fe + "/state")
	if !ok {
		feState = xbUnknown
	}
	switch {
	case online == 0 && beState != xbInitialising || feState == xbClosing || feState == xbClosed && beState != xbClosed:
		// The toolstack takes the device away (online=0, as xl does at
		// destroy and soft reset), or the frontend closes (its kernel
		// shuts down or kexecs): let go of its memory and say Closed.
		b.disconnect(d, fmt.Sprintf("frontend state %d, online %d", feState, online))
		if beState != xbClosed {
			b.setState(d, xbClosed)
		}
	case beState == xbInitialising, beState == xbClosed && online == 1 && (feState == xbInitialising || feState == xbUnknown):
		// A new device, or a frontend starting over after Closed (a new
		// kernel probing again): offer protocol v2 and wait.
		b.disconnect(d, "reconnect")
		if err := b.Store.Write(d.be+"/feature-protocol-v2", "1"); err != nil {
			b.Logf("%s: %v", d.be, err)
			return
		}
		b.setState(d, xbInitWait)
		b.Logf("%s: waiting for domain %d's frontend", d.be, d.feID)
	case beState == xbInitWait && (feState == xbInitialised || feState == xbConnected) && d.conn == nil:
		if err := b.connect(d); err != nil {
			b.Logf("%s: connect: %v", d.be, err)
			b.Store.Write(d.be+"/error", err.Error())
			b.setState(d, xbClosing)
			return
		}
		b.setState(d, xbConnected)
	}
}

func (b *Backend) setState(d *device, s int) {
	if err := b.Store.Write(d.be+"/state", strconv.Itoa(s)); err != nil {
		b.Logf("%s: set state %d: %v", d.be, s, err)
	}
}

func (b *Backend) connect(d *device) error {
	ref, ok1 := b.readInt(d.fe + "/ring-ref")
	port, ok2 := b.readInt(d.fe + "/event-channel")
	if !ok1 || !ok2 || ref < 0 || port < 0 {
		return fmt.Errorf("frontend %s has no valid ring-ref and event-channel", d.fe)
	}
	if v, _ := b.readInt(d.fe + "/feature-protocol-v2"); v != 1 {
		return fmt.Errorf("frontend %s does not speak protocol v2", d.fe)
	}
	uuid, err := b.Store.Read(d.be + "/uuid")
	if err != nil {
		return fmt.Errorf("read uuid: %w", err)
	}
	tpm, what, err := b.OpenTPM(d.feID, d.be, strings.TrimSpace(uuid))
	if err != nil {
		return err
	}
	ch, err := b.Connect(d.feID, uint32(ref), uint32(port))
	if err != nil {
		tpm.Close()
		return err
	}
	c := &conn{ch: ch, tpm: tpm, done: make(chan struct{})}
	d.conn = c
	b.Logf("%s: connected domain %d (ring-ref %d, event channel %d) to %s", d.be, d.feID, ref, port, what)
	go func() {
		defer close(c.done)
		logf := func(f string, a ...any) { b.Logf("%s: %s", d.be, fmt.Sprintf(f, a...)) }
		if err := Serve(ch, tpm, logf); err != nil {
			logf("serve: %v", err)
		}
	}()
	return nil
}

// disconnect stops serving: the channel first (ends Serve's wait), the
// TPM (ends a command in flight), then, once Serve has returned, the
// page.
func (b *Backend) disconnect(d *device, why string) {
	c := d.conn
	if c == nil {
		return
	}
	d.conn = nil
	c.ch.Interrupt()
	c.tpm.Close()
	<-c.done
	if err := c.ch.Close(); err != nil {
		b.Logf("%s: %v", d.be, err)
	}
	b.Logf("%s: disconnected (%s)", d.be, why)
}

// Close disconnects every device.
func (b *Backend) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, d := range b.devices {
		b.disconnect(d, "backend stopping")
	}
}
