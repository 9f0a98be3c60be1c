package tpmback

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"errors"

	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/vtpmboot/vtpmboot/internal/swtpmtest"
	"github.com/vtpmboot/vtpmboot/pcrbank"
	"github.com/vtpmboot/vtpmboot/tpmfront"
)

func newPage() []byte { return make([]byte, PageSize) }

// submit lays cmd out as xen-tpmfront's vtpm_send does, the state word
// last and atomically: Serve looks at the page once before its first
// wait, so in these tests it runs beside the frontend goroutine.
func submit(page, cmd []byte, extra uint8) {
	copy(page[headerSize+4*int(extra):], cmd)
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&page[0])), uint32(len(cmd)))
	atomic.StoreUint32(word(page), uint32(extra)<<24|uint32(StateSubmit))
}

// tpmCmd is a TPM command with a consistent size field.
func tpmCmd(n int) []byte {
	c := make([]byte, n)
	binary.BigEndian.PutUint16(c, 0x8001)
	binary.BigEndian.PutUint32(c[2:], uint32(n))
	binary.BigEndian.PutUint32(c[6:], 0x17b)
	return c
}

func TestParseRequest(t *testing.T) {
	ok := newPage()
	submit(ok, tpmCmd(12), 0)
	if r, err := ParseRequest(ok); err != nil || !bytes.Equal(r.Command, tpmCmd(12)) {
		t.Fatalf("valid request: %x, %v", r.Command, err)
	}
	for name, tc := range map[string]struct {
		mod  func(p []byte)
		want error
	}{
		"extra pages": {func(p []byte) { submit(p, tpmCmd(12), 1) }, ErrExtraPages},
		"oversized":   {func(p []byte) { submit(p, tpmCmd(12), 0); binary.LittleEndian.PutUint32(p, MaxPacket+1) }, ErrLength},
		"huge":        {func(p []byte) { submit(p, tpmCmd(12), 0); binary.LittleEndian.PutUint32(p, 0xffffffff) }, ErrLength},
		"short":       {func(p []byte) { submit(p, tpmCmd(12), 0); binary.LittleEndian.PutUint32(p, 9) }, ErrLength},
		"size field":  {func(p []byte) { submit(p, tpmCmd(12), 0); binary.LittleEndian.PutUint32(p, 14) }, ErrLength},
		"idle":        {func(p []byte) { submit(p, tpmCmd(12), 0); p[4] = StateIdle }, ErrState},
		"bad state":   {func(p []byte) { submit(p, tpmCmd(12), 0); p[4] = 9 }, ErrState},
		"full page":   {func(p []byte) { submit(p, tpmCmd(MaxPacket), 0) }, nil},
	} {
		p := newPage()
		tc.mod(p)
		_, err := ParseRequest(p)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
}

type echoTPM struct{ calls int }

func (e *echoTPM) Transmit(cmd []byte) ([]byte, error) {
	e.calls++
	return append([]byte(nil), cmd...), nil
}
func (e *echoTPM) Close() error { return nil }

// A refused request reaches the frontend as a cancel (state Idle) and
// never the TPM.
func TestHandleRefuses(t *testing.T) {
	p := newPage()
	submit(p, tpmCmd(12), 2)
	tpm := &echoTPM{}
	notify, err := Handle(p, tpm)
	if !notify || !errors.Is(err, ErrExtraPages) || State(p) != StateIdle || tpm.calls != 0 {
		t.Errorf("extra pages: notify %v err %v state %d calls %d", notify, err, State(p), tpm.calls)
	}
	p = newPage()
	submit(p, tpmCmd(12), 0)
	p[4] = StateCancel
	if notify, err := Handle(p, tpm); !notify || err != nil || State(p) != StateIdle {
		t.Errorf("cancel: notify %v err %v state %d", notify, err, State(p))
	}
	p = newPage()
	if notify, err := Handle(p, tpm); notify || err != nil {
		t.Errorf("idle page: notify %v err %v", notify, err)
	}
	if err := WriteResponse(p, make([]byte, MaxPacket+1)); !errors.Is(err, ErrLength) || State(p) != StateIdle {
		t.Errorf("oversized response: %v, state %d", err, State(p))
	}
}

// memChannel is a page and two signals in memory, standing in for a
// granted page and an event channel (those need Xen: e2e/xen). Its
// frontend side speaks the protocol as xen-tpmfront does.
type memChannel struct {
	page            []byte
	toBack, toFront chan struct{}
	stop            chan struct{}
	stopOnce        sync.Once
	released        bool
}

func newMemChannel() *memChannel {
	return &memChannel{page: newPage(), toBack: make(chan struct{}, 1), toFront: make(chan struct{}, 1), stop: make(chan struct{})}
}

func (m *memChannel) Page() []byte { return m.page }
func (m *memChannel) Notify() error {
	select {
	case m.toFront <- struct{}{}:
	default:
	}
	return nil
}
func (m *memChannel) Wait() error {
	select {
	case <-m.toBack:
		return nil
	case <-m.stop:
		return ErrClosed
	}
}
func (m *memChannel) Interrupt()   { m.stopOnce.Do(func() { close(m.stop) }) }
func (m *memChannel) Close() error { m.released = true; return nil }

// frontend is the guest's side as an io.ReadWriteCloser: Write submits a
// command and waits for Finish, Read returns the response.
type frontend struct {
	m   *memChannel
	rsp []byte
}

func (f *frontend) Write(cmd []byte) (int, error) {
	if len(cmd) > MaxPacket {
		return 0, errors.New("frontend: command too large")
	}
	submit(f.m.page, cmd, 0)
	f.m.toBack <- struct{}{}
	for {
		select {
		case <-f.m.toFront:
		case <-time.After(30 * time.Second):
			return 0, errors.New("frontend: no answer")
		}
		switch State(f.m.page) {
		case StateFinish:
			n := binary.LittleEndian.Uint32(f.m.page)
			f.rsp = append([]byte(nil), f.m.page[headerSize:headerSize+n]...)
			return len(cmd), nil
		case StateIdle:
			return 0, errors.New("frontend: cancelled")
		}
	}
}

func (f *frontend) Read(b []byte) (int, error) {
	if len(f.rsp) == 0 {
		return 0, io.EOF
	}
	n := copy(b, f.rsp)
	f.rsp = f.rsp[n:]
	return n, nil
}

func (f *frontend) Close() error { return nil }

// TestServeSwtpm carries a TPM client's commands (tpmfront, the stub's
// client) through the page protocol to a real swtpm, TPM 1.2 and 2.0:
// extends land, and the values read back equal crypto/sha's.
func TestServeSwtpm(t *testing.T) {
	for _, v := range []pcrbank.Version{pcrbank.Version12, pcrbank.Version20} {
		t.Run(v.String(), func(t *testing.T) {
			sw := swtpmtest.Start(t, v)
			tpm, err := DialSocket(sw.ServerSock)
			if err != nil {
				t.Fatal(err)
			}
			ch := newMemChannel()
			done := make(chan error, 1)
			go func() { done <- Serve(ch, tpm, t.Logf) }()
			target, err := tpmfront.OpenReadWriter(&frontend{m: ch})
			if err != nil {
				t.Fatal(err)
			}
			if target.Version() != v {
				t.Errorf("version %v through the page, want %v", target.Version(), v)
			}
			banks, err := target.Banks()
			if err != nil {
				t.Fatal(err)
			}
			d := pcrbank.Digests{}
			for _, a := range banks {
				d[a] = bytes.Repeat([]byte{0x5a}, a.Size())
			}
			if err := target.Extend(4, d); err != nil {
				t.Fatal(err)
			}
			for _, a := range banks {
				got, err := target.ReadPCR(4, a)
				if err != nil {
					t.Fatal(err)
				}
				var want []byte
				switch a {
				case pcrbank.SHA1:
					s := sha1.Sum(append(make([]byte, 20), d[a]...))
					want = s[:]
				case pcrbank.SHA256:
					s := sha256.Sum256(append(make([]byte, 32), d[a]...))
					want = s[:]
				default:
					continue
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%v PCR 4 = %x, want %x", a, got, want)
				}
			}
			ch.Interrupt()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
			tpm.Close()
		})
	}
}

// FuzzParseRequest: any page is parsed without panic, and an accepted
// request is exactly the bytes after the header, of a length the page
// can hold and the TPM header agrees with.
func FuzzParseRequest(f *testing.F) {
	p := newPage()
	submit(p, tpmCmd(22), 0)
	f.Add(p[:64])
	submit(p, tpmCmd(34), 1)
	f.Add(p[:64])
	f.Fuzz(func(t *testing.T, b []byte) {
		page := newPage()
		copy(page, b)
		r, err := ParseRequest(page)
		if err != nil {
			return
		}
		n := len(r.Command)
		if n < tpmHeaderSize || n > MaxPacket || page[7] != 0 || State(page) != StateSubmit ||
			int(binary.BigEndian.Uint32(r.Command[2:])) != n || !bytes.Equal(r.Command, page[headerSize:headerSize+n]) {
			t.Fatalf("accepted %d bytes from %x", n, page[:16])
		}
	})
}

// FuzzHandle: whatever the frontend leaves on the page, Handle ends in a
// state the frontend may wait on (Idle or Finish) or leaves it alone.
func FuzzHandle(f *testing.F) {
	p := newPage()
	submit(p, tpmCmd(22), 0)
	f.Add(p[:64])
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 3, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		page := newPage()
		copy(page, b)
		before := State(page)
		notify, _ := Handle(page, &echoTPM{})
		after := State(page)
		switch {
		case before == StateSubmit || before == StateCancel:
			if !notify || (after != StateIdle && after != StateFinish) {
				t.Fatalf("state %d -> %d, notify %v", before, after, notify)
			}
		default:
			if notify || after != before {
				t.Fatalf("state %d -> %d, notify %v", before, after, notify)
			}
		}
		// Only a response Handle wrote is bounded by it: a page the
		// frontend left in Finish carries whatever length it wrote.
		if before == StateSubmit && after == StateFinish {
			if n := binary.LittleEndian.Uint32(page); n > MaxPacket {
				t.Fatalf("response length %d", n)
			}
		}
	})
}
