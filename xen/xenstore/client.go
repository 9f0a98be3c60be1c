package xenstore

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
)

// Default places of the store: xenstored's socket in dom0 (oxenstored and
// C xenstored both listen there), else the kernel's xenbus device.
var (
	SocketPath = "/run/xenstored/socket"
	DevicePath = "/dev/xen/xenbus"
)

// Client talks to the store over one connection. Requests may be issued
// from several goroutines; replies are matched by request id. Watch events
// arrive on Events.
type Client struct {
	rw io.ReadWriteCloser

	wmu    sync.Mutex // one message written at a time
	mu     sync.Mutex
	next   uint32
	wait   map[uint32]chan Msg
	err    error // set when the reader stops
	events chan WatchEvent
	done   chan struct{}

	q eventQueue
}

// MaxQueuedEvents bounds the watch events waiting for the consumer. A
// domain can fire a watch as fast as it can write its own nodes, and can
// make every event's path different (children of a watched node), so
// neither a FIFO nor a set of paths is bounded by itself. Past this many
// distinct events the rest are dropped and the consumer is sent one
// Overflow event instead. Paths are at most 3072 bytes
// (XENSTORE_ABS_PATH_MAX), so a full queue holds at most a few MiB.
const MaxQueuedEvents = 1024

// eventQueue holds watch events not yet delivered, oldest first, each
// (path, token) at most once: an event says "look at this path again",
// and a second one before the consumer has looked says nothing new. So
// a domain writing one node in a loop costs one queued event, and the
// consumer, which reads the node when the event comes, sees its last
// value. The reader never blocks on a slow consumer: a consumer that
// calls Read while events pile up would otherwise wait for a reply
// stuck behind them.
type eventQueue struct {
	mu       sync.Mutex
	order    []WatchEvent
	pending  map[WatchEvent]bool
	overflow bool // events were dropped: the consumer must look at everything
	end      bool
	ready    chan struct{} // signalled when there is something to take
}

func (q *eventQueue) put(ev WatchEvent) {
	q.mu.Lock()
	switch {
	case q.pending[ev]:
	case len(q.order) >= MaxQueuedEvents:
		q.overflow = true
	default:
		if q.pending == nil {
			q.pending = map[WatchEvent]bool{}
		}
		q.pending[ev] = true
		q.order = append(q.order, ev)
	}
	q.mu.Unlock()
	q.signal()
}

func (q *eventQueue) close() {
	q.mu.Lock()
	q.end = true
	q.mu.Unlock()
	q.signal()
}

func (q *eventQueue) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// take returns the next event to deliver, waiting for one; ok is false
// once the connection has ended and nothing is left. An overflow is
// delivered first: the sooner the consumer looks at everything, the
// sooner what was dropped is seen.
func (q *eventQueue) take() (ev WatchEvent, ok bool) {
	for {
		q.mu.Lock()
		switch {
		case q.overflow:
			q.overflow = false
			q.mu.Unlock()
			return WatchEvent{Overflow: true}, true
		case len(q.order) > 0:
			ev = q.order[0]
			q.order = q.order[1:]
			if len(q.order) == 0 {
				q.order = nil // let the array go
			}
			delete(q.pending, ev)
			q.mu.Unlock()
			return ev, true
		case q.end:
			q.mu.Unlock()
			return WatchEvent{}, false
		}
		q.mu.Unlock()
		<-q.ready
	}
}

// queued says how many events wait (for tests).
func (q *eventQueue) queued() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.order)
}

// Open connects to the local store: the socket if it exists, else the
// xenbus device.
func Open() (*Client, error) {
	if _, err := os.Stat(SocketPath); err == nil {
		c, err := net.Dial("unix", SocketPath)
		if err != nil {
			return nil, fmt.Errorf("xenstore: %w", err)
		}
		return New(c), nil
	}
	f, err := os.OpenFile(DevicePath, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("xenstore: neither %s nor %s: %w", SocketPath, DevicePath, err)
	}
	return New(f), nil
}

// New runs the protocol over rw, which the Client owns.
func New(rw io.ReadWriteCloser) *Client {
	c := &Client{rw: rw, wait: map[uint32]chan Msg{}, events: make(chan WatchEvent), done: make(chan struct{})}
	c.q.ready = make(chan struct{}, 1)
	go c.read()
	go c.pump()
	return c
}

func (c *Client) pump() {
	defer close(c.events)
	for {
		ev, ok := c.q.take()
		if !ok {
			return
		}
		c.events <- ev
	}
}

// Events delivers watch events, oldest first, each (path, token) once
// however often it fired since it was last delivered, and an event with
// Overflow set when some were dropped (see MaxQueuedEvents). It is
// closed when the connection ends and the queue is drained.
func (c *Client) Events() <-chan WatchEvent { return c.events }

// Close ends the connection; pending requests fail.
func (c *Client) Close() error {
	err := c.rw.Close()
	<-c.done
	return err
}

func (c *Client) read() {
	defer close(c.done)
	defer c.q.close()
	for {
		m, err := ReadMsg(c.rw)
		if err != nil {
			c.mu.Lock()
			c.err = fmt.Errorf("xenstore connection: %w", err)
			for id, ch := range c.wait {
				close(ch)
				delete(c.wait, id)
			}
			c.mu.Unlock()
			return
		}
		if m.Type == typeWatchEvent {
			if ev, err := parseWatchEvent(m.Payload); err == nil {
				c.q.put(ev)
			}
			continue
		}
		c.mu.Lock()
		ch := c.wait[m.ReqID]
		delete(c.wait, m.ReqID)
		c.mu.Unlock()
		if ch != nil {
			ch <- m
		}
	}
}

var errClosed = errors.New("xenstore: connection closed")

func (c *Client) call(op string, typ uint32, path string, payload []byte) ([]byte, error) {
	if err := validPath(path); err != nil {
		return nil, err
	}
	ch := make(chan Msg, 1)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return nil, err
	}
	c.next++
	id := c.next
	c.wait[id] = ch
	c.mu.Unlock()
	b, err := Msg{Type: typ, ReqID: id, Payload: payload}.Marshal()
	if err == nil {
		c.wmu.Lock()
		_, err = c.rw.Write(b)
		c.wmu.Unlock()
	}
	if err != nil {
		c.mu.Lock()
		delete(c.wait, id)
		c.mu.Unlock()
		return nil, fmt.Errorf("xenstore %s %s: %w", op, path, err)
	}
	m, ok := <-ch
	if !ok {
		c.mu.Lock()
		err := c.err
		c.mu.Unlock()
		if err == nil {
			err = errClosed
		}
		return nil, fmt.Errorf("xenstore %s %s: %w", op, path, err)
	}
	if m.Type == typeError {
		return nil, &Error{Op: op, Path: path, Errno: strings.TrimRight(string(m.Payload), "\x00")}
	}
	if m.Type != typ {
		return nil, fmt.Errorf("xenstore %s %s: reply of type %d", op, path, m.Type)
	}
	return m.Payload, nil
}

func nul(s ...string) []byte {
	var b []byte
	for _, x := range s {
		b = append(append(b, x...), 0)
	}
	return b
}

// Read returns the value at path (errors.Is(err, ErrNotExist) if none).
func (c *Client) Read(path string) (string, error) {
	b, err := c.call("read", typeRead, path, nul(path))
	return string(b), err
}

// Write sets path to value, creating parents.
func (c *Client) Write(path, value string) error {
	_, err := c.call("write", typeWrite, path, append(nul(path), value...))
	return err
}

// Directory lists path's children.
func (c *Client) Directory(path string) ([]string, error) {
	b, err := c.call("directory", typeDirectory, path, nul(path))
	return splitStrings(b), err
}

// Rm removes path and everything under it.
func (c *Client) Rm(path string) error {
	_, err := c.call("rm", typeRm, path, nul(path))
	return err
}

// Watch asks for events on path and below, tagged token. The store sends
// one event for path right away.
func (c *Client) Watch(path, token string) error {
	_, err := c.call("watch", typeWatch, path, nul(path, token))
	return err
}

// Unwatch removes a watch set with the same path and token.
func (c *Client) Unwatch(path, token string) error {
	_, err := c.call("unwatch", typeUnwatch, path, nul(path, token))
	return err
}
