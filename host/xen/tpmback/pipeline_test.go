package tpmback

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vtpmboot/vtpmboot/xen/xenstore"
)

// Message types of xen/include/public/io/xs_wire.h (enum
// xsd_sockmsg_type), for the fake store's side of the wire.
const (
	xsDirectory  = 1
	xsRead       = 2
	xsWatch      = 4
	xsUnwatch    = 5
	xsWrite      = 11
	xsWatchEvent = 15
	xsError      = 16
)

// wireStore is xenstored as far as the backend's connection sees it: the
// wire protocol over a pipe, a memStore behind it, watches that fire on
// a path and below, after the reply, as xenstored sends them. Guests
// write through guestWrite, which fires the same watches. xenstored
// itself needs Xen (e2e/xen runs the backend against the real one).
type wireStore struct {
	*memStore
	c        net.Conn
	wmu      sync.Mutex
	wmtx     sync.Mutex // watches
	watches  map[string][]string
	requests atomic.Int64
}

func newWireStore(t *testing.T, m *memStore) (*xenstore.Client, *wireStore) {
	a, b := net.Pipe()
	w := &wireStore{memStore: m, c: b, watches: map[string][]string{}}
	go w.serve()
	c := xenstore.New(a)
	t.Cleanup(func() { c.Close() })
	return c, w
}

func (w *wireStore) send(m xenstore.Msg) {
	b, _ := m.Marshal()
	w.wmu.Lock()
	defer w.wmu.Unlock()
	w.c.Write(b)
}

func split0(p []byte) []string {
	return strings.Split(strings.TrimSuffix(string(p), "\x00"), "\x00")
}

func (w *wireStore) fire(p string) {
	w.wmtx.Lock()
	var evs []xenstore.Msg
	for wp, toks := range w.watches {
		if p == wp || strings.HasPrefix(p, wp+"/") {
			for _, tok := range toks {
				evs = append(evs, xenstore.Msg{Type: xsWatchEvent, Payload: []byte(p + "\x00" + tok + "\x00")})
			}
		}
	}
	w.wmtx.Unlock()
	for _, e := range evs {
		w.send(e)
	}
}

// guestWrite is a write by a guest on its own connection.
func (w *wireStore) guestWrite(p, v string) {
	w.memStore.Write(p, v)
	w.fire(p)
}

func (w *wireStore) serve() {
	for {
		m, err := xenstore.ReadMsg(w.c)
		if err != nil {
			return
		}
		w.requests.Add(1)
		args := split0(m.Payload)
		reply := xenstore.Msg{Type: m.Type, ReqID: m.ReqID, Payload: []byte("OK\x00")}
		fired := ""
		switch m.Type {
		case xsRead:
			v, err := w.memStore.Read(args[0])
			if err != nil {
				reply = xenstore.Msg{Type: xsError, ReqID: m.ReqID, Payload: []byte("ENOENT\x00")}
			} else {
				reply.Payload = []byte(v)
			}
		case xsDirectory:
			d, err := w.memStore.Directory(args[0])
			if err != nil {
				reply = xenstore.Msg{Type: xsError, ReqID: m.ReqID, Payload: []byte("ENOENT\x00")}
			} else {
				reply.Payload = []byte(strings.Join(d, "\x00") + "\x00")
			}
		case xsWrite:
			p, v, _ := bytes.Cut(m.Payload, []byte{0})
			w.memStore.Write(string(p), string(v))
			fired = string(p)
		case xsWatch:
			w.wmtx.Lock()
			w.watches[args[0]] = append(w.watches[args[0]], args[1])
			w.wmtx.Unlock()
			defer w.send(xenstore.Msg{Type: xsWatchEvent, Payload: []byte(args[0] + "\x00" + args[1] + "\x00")})
		case xsUnwatch:
			w.wmtx.Lock()
			delete(w.watches, args[0])
			w.wmtx.Unlock()
		default:
			reply = xenstore.Msg{Type: xsError, ReqID: m.ReqID, Payload: []byte("EINVAL\x00")}
		}
		w.send(reply)
		if fired != "" {
			w.fire(fired)
		}
	}
}

// TestFloodThroughTheStore: 100 guests connected through the real
// xenstore client; guest 1 writes its own state 100,000 times as fast
// as the store takes it. The backend makes fewer requests than the guest
// makes writes (one event costs 3, but events coalesce while the backend
// works: TestGuestWriteCostsOneDevice has the cost of one),
// the other guests stay connected, and the guest's last write is acted
// on: none is lost.
func TestFloodThroughTheStore(t *testing.T) {
	const guests, writes = 100, 100_000
	m := &memStore{data: map[string]string{}, watches: map[string]bool{}}
	for dom := 1; dom <= guests; dom++ {
		addGuest(m, dom)
		initGuest(m, dom)
	}
	xs, ws := newWireStore(t, m)
	r := newRig(t, func(*memStore) Store { return xs })
	r.s = m
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.b.Run(ctx, xs.Events()) }()
	within(t, "connecting every guest", func() {
		for dom := 1; dom <= guests; dom++ {
			for r.state(dom) != "4" {
				time.Sleep(time.Millisecond)
			}
		}
	})
	time.Sleep(100 * time.Millisecond) // our own writes' events, handled before the count starts
	before := ws.requests.Load()
	for range writes {
		ws.guestWrite(feOf(1)+"/state", "4")
	}
	ws.guestWrite(feOf(1)+"/state", "5") // the last one: it closes
	within(t, "the last write acted on", func() {
		for r.state(1) != "6" {
			time.Sleep(time.Millisecond)
		}
	})
	n := ws.requests.Load() - before
	t.Logf("%d guest writes with %d guests: %d backend requests (%.4f per write)", writes+1, guests, n, float64(n)/float64(writes+1))
	if n >= writes+1 {
		t.Errorf("%d requests for %d writes", n, writes+1)
	}
	for dom := 2; dom <= guests; dom++ {
		if r.state(dom) != "4" {
			t.Errorf("domain %d: state %q", dom, r.state(dom))
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
