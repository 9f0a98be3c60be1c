package tpmback

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/vtpmboot/vtpmboot/xen/xenstore"
)

// guestStore writes b onto the page at off the way a hostile frontend's
// writes look to the race detector: word by word, atomically. The
// backend reads the page only by atomic words (ring.go), so a plain
// write here would be reported as a race in the test, not in the code.
func guestStore(page []byte, off int, b []byte) {
	for i := 0; i+4 <= len(b) && off+i+4 <= PageSize; i += 4 {
		atomic.StoreUint32(wordAt(page, off+i), binary.LittleEndian.Uint32(b[i:]))
	}
}

// fuzzValues are the values a fuzzed frontend writes most; a byte past
// the table takes raw bytes from the input instead.
var fuzzValues = []string{"0", "1", "2", "3", "4", "5", "6", "7", "107", "207",
	"4294967403", "-1", "", " 4", "1\x00", "18446744073709551617"}

// fuzzRig is two guests on one backend: 7 the fuzzer's, 8 a bystander
// that connected first and must never notice 7.
type fuzzRig struct {
	t     *testing.T
	s     *memStore
	b     *Backend
	mu    sync.Mutex
	chans map[uint32][]*memChannel
	open  []string // "domid backend-path uuid" of each OpenTPM
	lines int      // guest 7's log lines, this backend
}

func (f *fuzzRig) start() {
	f.lines = 0
	f.b = &Backend{Store: f.s, Root: root,
		Connect: func(id, ref, port uint32) (Channel, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			c := newMemChannel()
			f.chans[id] = append(f.chans[id], c)
			return c, nil
		},
		OpenTPM: func(domid uint32, be, uuid string) (TPM, string, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.open = append(f.open, fmt.Sprintf("%d %s %s", domid, be, uuid))
			return &echoTPM{}, "echo", nil
		},
		Logf: func(format string, a ...any) {
			if strings.HasPrefix(fmt.Sprintf(format, a...), beOf(7)) {
				f.mu.Lock()
				f.lines++
				f.mu.Unlock()
			}
		},
	}
	step(f.b)
}

// check holds after every step of the fuzzed sequence.
func (f *fuzzRig) check(after string) {
	t := f.t
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, o := range f.open {
		if o != fmt.Sprintf("7 %s %s", beOf(7), uuidOf(7)) && o != fmt.Sprintf("8 %s %s", beOf(8), uuidOf(8)) {
			t.Fatalf("after %s: opened TPM (domain, device, uuid) %q", after, o)
		}
	}
	live := 0
	for _, c := range f.chans[7] {
		if !c.released {
			live++
		}
	}
	if live > 1 {
		t.Fatalf("after %s: %d pages of guest 7 mapped at once", after, live)
	}
	for id := range f.chans {
		if id != 7 && id != 8 {
			t.Fatalf("after %s: mapped a page of domain %d", after, id)
		}
	}
	if n := len(f.chans[8]); n == 0 || f.chans[8][n-1].released {
		t.Fatalf("after %s: the bystander lost its page", after)
	}
	if st := f.s.data[beOf(8)+"/state"]; st != "4" {
		t.Fatalf("after %s: the bystander's state is %q", after, st)
	}
	if st := f.s.data[beOf(7)+"/state"]; len(st) != 1 || st < "1" || st > "6" {
		t.Fatalf("after %s: guest 7's backend state %q", after, st)
	}
	// Two rate-limited kinds of line per device, each at most logBurst
	// in a window (a fuzz run is well inside one) and a summary.
	if f.lines > 2*(logBurst+1) {
		t.Fatalf("after %s: %d log lines about guest 7", after, f.lines)
	}
}

// FuzzFrontendWrites drives the backend with what a hostile guest can
// write: its frontend's nodes (any value, in any order, with or without
// the events), nodes it creates under its state node, commands on its
// page while the backend connects and disconnects, and backend restarts
// in between. Whatever it does: only its own TPM and page are used, at
// most one page of it is mapped at a time, the other guest stays
// connected, the backend's state stays a xenbus state, its log lines
// stay bounded, and nothing stays mapped after Close.
func FuzzFrontendWrites(f *testing.F) {
	f.Fuzz(func(t *testing.T, ops []byte) {
		fr := &fuzzRig{t: t, s: &memStore{data: map[string]string{}, watches: map[string]bool{}}, chans: map[uint32][]*memChannel{}}
		addGuest(fr.s, 8)
		addGuest(fr.s, 7)
		fr.start()
		initGuest(fr.s, 8)
		fr.b.HandleEvent(xenstore.WatchEvent{Path: feOf(8) + "/state", Token: FrontendToken})
		fr.b.waitJobs()
		fr.check("start")
		fe := feOf(7)
		value := func(i *int) string {
			if *i >= len(ops) {
				return ""
			}
			v := int(ops[*i])
			*i++
			if v < len(fuzzValues) {
				return fuzzValues[v]
			}
			n := min((v-len(fuzzValues))%8, len(ops)-*i)
			s := string(ops[*i : *i+n])
			*i += n
			return s
		}
		for i := 0; i < len(ops) && i < 256; {
			op := ops[i]
			i++
			node := ""
			switch op % 8 {
			case 0:
				node = "/state"
			case 1:
				node = "/ring-ref"
			case 2:
				node = "/event-channel"
			case 3:
				node = "/feature-protocol-v2"
			case 4:
				node = "/state/" + value(&i)
			case 5:
				node = "/" + value(&i)
			case 6:
				// A command, or garbage, on the page, while whatever
				// else happens.
				fr.mu.Lock()
				var m *memChannel
				if n := len(fr.chans[7]); n > 0 {
					m = fr.chans[7][n-1]
				}
				fr.mu.Unlock()
				if m != nil && !m.released {
					cmd := tpmCmd(12 + int(op>>3)*4)
					guestStore(m.page, headerSize, cmd)
					atomic.StoreUint32(wordAt(m.page, 0), uint32(len(cmd)))
					atomic.StoreUint32(word(m.page), uint32(op>>5)<<24|uint32(StateSubmit))
					select {
					case m.toBack <- struct{}{}:
					default:
					}
				}
				fr.check("a command")
				continue
			case 7:
				fr.b.Close()
				fr.start()
				fr.check("a restart")
				continue
			}
			fr.s.Write(fe+node, value(&i))
			if op&0x80 == 0 { // else the event is lost (coalesced, or before a watch)
				fr.b.HandleEvent(xenstore.WatchEvent{Path: fe + node, Token: FrontendToken})
			}
			fr.b.waitJobs()
			fr.check(fmt.Sprintf("op %d: %s%s", op, fe, node))
		}
		// A full reconcile sees whatever events were lost.
		step(fr.b)
		fr.check("a full reconcile")
		fr.b.Close()
		for id, cs := range fr.chans {
			for _, c := range cs {
				if !c.released {
					t.Fatalf("domain %d's page still mapped after Close", id)
				}
			}
		}
	})
}

// pageTPM records the command it is given and answers with a response
// of the length the fuzzer chose.
type pageTPM struct {
	cmd, snap []byte
	rspLen    int
}

func (p *pageTPM) Transmit(cmd []byte) ([]byte, error) {
	p.cmd, p.snap = cmd, append([]byte(nil), cmd...)
	r := make([]byte, p.rspLen)
	if len(r) >= 6 {
		binary.BigEndian.PutUint32(r[2:], uint32(len(r)))
	}
	return r, nil
}
func (p *pageTPM) Close() error { return nil }

// FuzzHandleChangingPage: the frontend rewrites its page while Handle
// works on it, from another goroutine (another vCPU). The page is
// accessed as the real code accesses guest memory, by atomic words, so
// the race detector (go test -race) reports any access that is not one
// of those. Whatever the page does: the command the TPM gets is
// consistent (its own size field says its length, within a page) and
// is ours, not the page (it does not change after Handle returns while
// the page does), and a response that does not fit the page is refused,
// never written.
func FuzzHandleChangingPage(f *testing.F) {
	f.Fuzz(func(t *testing.T, start, flips []byte, rspLen uint16) {
		page := newPage()
		guestStore(page, 0, start[:min(len(start), PageSize)&^3])
		tpm := &pageTPM{rspLen: int(rspLen) % (MaxPacket + 64)}
		var stop atomic.Bool
		started, done := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(done)
			// Each flip is 5 bytes: a word index (the header and the
			// packet's first words, where checks look) and a value. The
			// flips go on from before Handle starts until after it ends,
			// so the race detector sees them beside every access.
			for n := 0; n < 100000 && (n == 0 || !stop.Load()); n++ {
				for i := 0; i+5 <= len(flips); i += 5 {
					w := int(flips[i]) % 64
					atomic.StoreUint32(wordAt(page, 4*w), binary.LittleEndian.Uint32(flips[i+1:]))
				}
				if n == 0 {
					close(started)
				}
				if len(flips) < 5 {
					return
				}
			}
		}()
		<-started
		notify, err := Handle(page, tpm)
		stop.Store(true)
		<-done
		// The page changes once more after Handle: a command that was
		// the page itself would change with it.
		for w := 0; w < 64; w++ {
			atomic.AddUint32(wordAt(page, 4*w), 0x01010101)
		}
		if tpm.cmd == nil {
			return
		}
		n := len(tpm.cmd)
		if !notify || n < tpmHeaderSize || n > MaxPacket || int(binary.BigEndian.Uint32(tpm.cmd[2:])) != n {
			t.Fatalf("TPM got %d bytes %x (notify %v)", n, tpm.cmd[:min(n, 16)], notify)
		}
		if !bytes.Equal(tpm.cmd, tpm.snap) {
			t.Fatalf("the command changed after the TPM got it: it is the page, not a copy")
		}
		bad := tpm.rspLen < tpmHeaderSize || tpm.rspLen > MaxPacket
		if bad != errors.Is(err, ErrLength) {
			t.Fatalf("response of %d bytes: %v", tpm.rspLen, err)
		}
	})
}

// FuzzEventPath: HandleEvent takes any path without panic, and a path
// that is neither under Root nor in a frontend's state subtree costs no
// request at all.
func FuzzEventPath(f *testing.F) {
	for _, p := range []string{feOf(1) + "/state", feOf(1) + "/state/a/b", root, root + "/1", root + "/1/0/state",
		root + "//", "/", "", "state", "/state", feOf(9) + "/state", root + "x", "/local/domain/1/device/vtpm/0/state/../state"} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p string) {
		var cs *countStore
		r := newRig(t, func(m *memStore) Store { cs = &countStore{memStore: m}; return cs })
		addGuest(r.s, 1)
		initGuest(r.s, 1)
		step(r.b)
		cs.n.Store(0)
		r.b.HandleEvent(xenstore.WatchEvent{Path: p, Token: FrontendToken})
		r.b.waitJobs()
		mine := strings.HasPrefix(p, root) || strings.HasPrefix(p, feOf(1)+"/state")
		if n := cs.n.Load(); !mine && n != 0 {
			t.Fatalf("event on %q cost %d requests", p, n)
		}
		r.b.Close()
	})
}
