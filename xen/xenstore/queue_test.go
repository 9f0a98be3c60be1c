package xenstore

import (
	"bytes"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
)

// floodConn is a store that has sent n watch events before it answers
// the client's first request (with an empty read reply): when that
// request returns, the client has taken in every event. It is a byte
// stream in memory so a million events take a second, not a minute of
// pipe hand-offs.
type floodConn struct {
	mu      sync.Mutex
	r       *bytes.Reader
	all     []byte // kept, so the heap's growth is the client's alone
	asked   chan struct{}
	once    sync.Once
	replied bool
	closed  chan struct{}
}

func newFlood(n int, path func(i int) string) *floodConn {
	var b bytes.Buffer
	for i := range n {
		m, _ := Msg{Type: typeWatchEvent, Payload: nul(path(i), "tok")}.Marshal()
		b.Write(m)
	}
	return &floodConn{r: bytes.NewReader(b.Bytes()), all: b.Bytes(), asked: make(chan struct{}), closed: make(chan struct{})}
}

func (f *floodConn) Read(p []byte) (int, error) {
	f.mu.Lock()
	if f.r.Len() > 0 {
		defer f.mu.Unlock()
		return f.r.Read(p)
	}
	if f.replied {
		f.mu.Unlock()
		<-f.closed
		return 0, fmt.Errorf("closed")
	}
	f.mu.Unlock()
	select {
	case <-f.asked:
	case <-f.closed:
		return 0, fmt.Errorf("closed")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	m, _ := Msg{Type: typeRead, ReqID: 1, Payload: []byte("v")}.Marshal()
	f.r = bytes.NewReader(m)
	f.replied = true
	return f.r.Read(p)
}

func (f *floodConn) Write(p []byte) (int, error) {
	f.once.Do(func() { close(f.asked) })
	return len(p), nil
}

func (f *floodConn) Close() error {
	select {
	case <-f.closed:
	default:
		close(f.closed)
	}
	return nil
}

func heap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestEventFloodBounded: a domain fires a watch a million times while
// the consumer is busy. Memory stays bounded and no path's last change
// is lost: the same path coalesces into one event; distinct paths fill
// the queue to MaxQueuedEvents and the rest become one Overflow event.
func TestEventFloodBounded(t *testing.T) {
	n := 1_000_000
	if raceEnabled {
		n = 100_000 // the same bound, in a tenth of the time
	}
	for name, tc := range map[string]struct {
		path func(i int) string
		want int // events queued
	}{
		"one path":       {func(int) string { return "/local/domain/7/device/vtpm/0/state" }, 1},
		"distinct paths": {func(i int) string { return fmt.Sprintf("/local/domain/7/device/vtpm/0/state/%d", i) }, MaxQueuedEvents},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFlood(n, tc.path)
			before := heap()
			c := New(f)
			defer c.Close()
			if _, err := c.Read("/x"); err != nil { // every event is in
				t.Fatal(err)
			}
			// The pump holds one event it could not hand over yet.
			q := c.q.queued()
			grown := int64(heap()) - int64(before)
			t.Logf("%d events: %d queued, heap %+.1f MiB", n, q, float64(grown)/(1<<20))
			if q > tc.want {
				t.Errorf("%d events queued, want at most %d", q, tc.want)
			}
			runtime.KeepAlive(f.all)
			if grown > 8<<20 {
				t.Errorf("heap grew by %d bytes for %d queued events", grown, q)
			}
			// Delivered: the event the pump took first and holds until
			// the consumer comes, then the queue (an overflow first).
			var got []WatchEvent
			for len(got) < tc.want+3 {
				select {
				case ev := <-c.Events():
					got = append(got, ev)
					continue
				case <-time.After(200 * time.Millisecond):
				}
				break
			}
			last := tc.path(n - 1)
			switch name {
			case "one path":
				if len(got) != 2 || got[1].Path != last {
					t.Errorf("delivered %d events (%+v), want the first and one for %s", len(got), got[:min(len(got), 3)], last)
				}
			case "distinct paths":
				// The pump may hold the first event or, if it came late,
				// an overflow already.
				overflow := len(got) > 1 && (got[0].Overflow || got[1].Overflow)
				if len(got) != MaxQueuedEvents+2 || !overflow {
					t.Errorf("delivered %d events, first %+v %+v; want the one held, an overflow and %d more", len(got), got[0], got[1], MaxQueuedEvents)
				}
			}
		})
	}
}
