package xenstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeStore speaks the server side of the wire over a pipe: a map of
// paths and one watch. It stands in for xenstored, which needs a Xen
// hypervisor to run; the Xen end-to-end suite (e2e/xen) runs this client
// against the real oxenstored.
type fakeStore struct {
	t       *testing.T
	c       net.Conn
	mu      sync.Mutex
	data    map[string]string
	watches map[string]string // path -> token
}

func newFake(t *testing.T) (*Client, *fakeStore) {
	a, b := net.Pipe()
	f := &fakeStore{t: t, c: b, data: map[string]string{}, watches: map[string]string{}}
	go f.serve()
	c := New(a)
	t.Cleanup(func() { c.Close() })
	return c, f
}

func (f *fakeStore) send(m Msg) {
	b, err := m.Marshal()
	if err != nil {
		f.t.Error(err)
		return
	}
	f.c.Write(b)
}

func (f *fakeStore) serve() {
	for {
		m, err := ReadMsg(f.c)
		if err != nil {
			return
		}
		args := splitStrings(m.Payload)
		reply := Msg{Type: m.Type, ReqID: m.ReqID}
		var events []Msg // sent after the reply, as xenstored does
		f.mu.Lock()
		switch m.Type {
		case typeRead:
			v, ok := f.data[args[0]]
			if !ok {
				reply = Msg{Type: typeError, ReqID: m.ReqID, Payload: []byte("ENOENT\x00")}
			} else {
				reply.Payload = []byte(v)
			}
		case typeWrite:
			p, v, _ := bytes.Cut(m.Payload, []byte{0})
			f.data[string(p)] = string(v)
			reply.Payload = []byte("OK\x00")
			for w, tok := range f.watches {
				if strings.HasPrefix(string(p), w) {
					events = append(events, Msg{Type: typeWatchEvent, Payload: nul(string(p), tok)})
				}
			}
		case typeDirectory:
			var kids []string
			for k := range f.data {
				if rest, ok := strings.CutPrefix(k, args[0]+"/"); ok {
					kids = append(kids, strings.Split(rest, "/")[0])
				}
			}
			reply.Payload = nul(kids...)
		case typeWatch:
			f.watches[args[0]] = args[1]
			reply.Payload = []byte("OK\x00")
			events = append(events, Msg{Type: typeWatchEvent, Payload: nul(args[0], args[1])})
		default:
			reply = Msg{Type: typeError, ReqID: m.ReqID, Payload: []byte("EINVAL\x00")}
		}
		f.mu.Unlock()
		f.send(reply)
		for _, e := range events {
			f.send(e)
		}
	}
}

func TestClientReadWriteWatch(t *testing.T) {
	c, _ := newFake(t)
	if _, err := c.Read("/local/domain/0/name"); !errors.Is(err, ErrNotExist) {
		t.Fatalf("read of a missing path: %v, want ErrNotExist", err)
	}
	if err := c.Watch("/local/domain/0/backend", "tok"); err != nil {
		t.Fatal(err)
	}
	if ev := <-c.Events(); ev != (WatchEvent{Path: "/local/domain/0/backend", Token: "tok"}) {
		t.Fatalf("first event %+v", ev)
	}
	if err := c.Write("/local/domain/0/backend/vtpm/1/0/state", "1"); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Read("/local/domain/0/backend/vtpm/1/0/state"); err != nil || v != "1" {
		t.Fatalf("read back %q, %v", v, err)
	}
	if ev := <-c.Events(); ev.Path != "/local/domain/0/backend/vtpm/1/0/state" || ev.Token != "tok" {
		t.Fatalf("event %+v", ev)
	}
	if d, err := c.Directory("/local/domain/0/backend/vtpm"); err != nil || len(d) != 1 || d[0] != "1" {
		t.Fatalf("directory %q, %v", d, err)
	}
	if err := c.Rm("/x"); err == nil || !strings.Contains(err.Error(), "xenstore rm /x: EINVAL") {
		t.Fatalf("rm: %v", err)
	}
	if err := c.Write("/a\x00b", "v"); err == nil {
		t.Fatal("a path with NUL was sent")
	}
}

// Many events queued while nobody reads them must not stall replies:
// vtpmback reads the store while handling one event.
func TestEventsDoNotBlockReplies(t *testing.T) {
	c, _ := newFake(t)
	if err := c.Watch("/w", "t"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		for i := 0; i < 500; i++ {
			if err := c.Write("/w/x", "v"); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("writes stalled behind unread watch events")
	}
	// The writes' events coalesce: the watch's first event and at least
	// one for /w/x after the writes, whatever the consumer's pace.
	seen := map[string]bool{}
	for !seen["/w/x"] {
		select {
		case ev := <-c.Events():
			seen[ev.Path] = true
		case <-time.After(20 * time.Second):
			t.Fatalf("events seen %v, none for /w/x", seen)
		}
	}
	if !seen["/w"] {
		t.Fatalf("events seen %v, not the watch's first", seen)
	}
}

func TestClosedConnection(t *testing.T) {
	a, b := net.Pipe()
	c := New(a)
	b.Close()
	if _, err := c.Read("/x"); err == nil {
		t.Fatal("read on a closed connection succeeded")
	}
	if _, ok := <-c.Events(); ok {
		t.Fatal("events not closed")
	}
	c.Close()
}

func TestReadMsgBounds(t *testing.T) {
	var h [16]byte
	binary.LittleEndian.PutUint32(h[12:], PayloadMax+1)
	if _, err := ReadMsg(bytes.NewReader(h[:])); !errors.Is(err, ErrTooLong) {
		t.Errorf("oversized: %v", err)
	}
	binary.LittleEndian.PutUint32(h[12:], 10)
	if _, err := ReadMsg(bytes.NewReader(append(h[:], "short"...))); err == nil || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated: %v", err)
	}
	if _, err := (Msg{Payload: make([]byte, PayloadMax+1)}).Marshal(); !errors.Is(err, ErrTooLong) {
		t.Errorf("marshal oversized: %v", err)
	}
}

// FuzzReadMsg: whatever a store (or a corrupt stream) sends, reading is
// bounded, never panics, and what it accepts re-encodes to the same bytes.
func FuzzReadMsg(f *testing.F) {
	for _, m := range []Msg{
		{Type: typeWatchEvent, Payload: nul("/local/domain/0/backend/vtpm/3/0/state", "vtpmback-root")},
		{Type: typeError, ReqID: 7, Payload: []byte("ENOENT\x00")},
		{Type: typeDirectory, ReqID: 2, Payload: nul("1", "2", "17")},
		{Type: typeRead, ReqID: 3, TxID: 9, Payload: []byte("4")},
	} {
		b, _ := m.Marshal()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ReadMsg(bytes.NewReader(b))
		if err != nil {
			return
		}
		out, err := m.Marshal()
		if err != nil || !bytes.Equal(out, b[:len(out)]) {
			t.Fatalf("re-encoded %x from %x: %v", out, b, err)
		}
		if m.Type == typeWatchEvent {
			parseWatchEvent(m.Payload)
		}
		splitStrings(m.Payload)
	})
}
