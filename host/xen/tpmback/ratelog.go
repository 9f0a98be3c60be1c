package tpmback

import (
	"fmt"
	"sync"
	"time"
)

// logBurst is how many lines of one kind a device may log per window
// before the rest are counted instead.
const logBurst = 5

// rateLog passes a device's lines of one kind to logf, at most logBurst
// per window; the rest are counted, and when the window ends one line
// says how many there were and the last of them. A guest can make its
// backend refuse requests (or change state) as fast as it can write a
// page or a node: unlimited, 342,114 lines in half a second.
type rateLog struct {
	logf   func(string, ...any)
	prefix string // the device
	what   string // "requests refused"
	window time.Duration
	now    func() time.Time
	after  func(time.Duration, func()) *time.Timer

	mu      sync.Mutex
	start   time.Time // of the window
	n       int       // lines passed in it
	dropped int
	last    string
	timer   *time.Timer // ends a window with lines dropped
	stopped bool
}

func newRateLog(logf func(string, ...any), prefix, what string, window time.Duration) *rateLog {
	return &rateLog{logf: logf, prefix: prefix, what: what, window: window, now: time.Now, after: time.AfterFunc}
}

func (r *rateLog) printf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if r.timer == nil && now.Sub(r.start) >= r.window {
		r.start, r.n = now, 0
	}
	if r.n < logBurst {
		r.n++
		r.logf("%s: %s", r.prefix, msg)
		return
	}
	r.dropped++
	r.last = msg
	if r.timer == nil && !r.stopped {
		r.timer = r.after(r.start.Add(r.window).Sub(now), r.flush)
	}
}

// flush ends a window that dropped lines: the summary, and a new window
// that starts full, so a flood that goes on is one line per window.
func (r *rateLog) flush() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.timer = nil
	r.summarise()
	r.start, r.n = r.now(), logBurst
}

func (r *rateLog) summarise() {
	if r.dropped > 0 {
		r.logf("%s: %d %s in the last %v: %s", r.prefix, r.dropped, r.what, r.window, r.last)
		r.dropped = 0
	}
}

// stop says what was dropped so far and ends the timer: the device is
// gone, or the backend stops.
func (r *rateLog) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	r.stopped = true
	r.summarise()
}
