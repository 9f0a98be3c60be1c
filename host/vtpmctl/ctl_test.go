package vtpmctl

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// recorder is a Handler that records what reached it. The server's part
// (peer check, limits, codes on the wire) is what these tests check; the
// real handler is host/vtpm's, tested there against swtpm.
type recorder struct {
	mu    sync.Mutex
	calls []string
	err   error
	log   []byte
}

func (r *recorder) note(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, s)
}

func (r *recorder) Boot(uuid string, domid uint32, ms []Measurement) (bool, error) {
	r.note("boot " + uuid)
	return true, r.err
}
func (r *recorder) PCRs(uuid string, pcrs []int) (string, map[string]map[string]string, error) {
	r.note("pcrs " + uuid)
	return "2.0", map[string]map[string]string{"sha256": {"4": "00"}}, r.err
}
func (r *recorder) PutLog(uuid string, domid uint32, log []byte) error {
	r.note("put-log " + uuid)
	r.log = log
	return r.err
}
func (r *recorder) GetLog(uuid string) ([]byte, error) {
	r.note("get-log " + uuid)
	return r.log, r.err
}
func (r *recorder) Status(uuid string) ([]Binding, error) {
	r.note("status")
	return []Binding{{UUID: "u", Domid: 3, State: "running"}}, r.err
}

const u1 = "00000000-7e57-4000-8000-000000000001"

func start(t *testing.T, h Handler, allow uint32) *Client {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "run", "vtpmback.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	s := &Server{Handler: h, AllowUID: allow, Logf: t.Logf}
	go func() { done <- s.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return &Client{Socket: sock}
}

func TestRoundTrip(t *testing.T) {
	h := &recorder{}
	c := start(t, h, uint32(os.Getuid()))
	reset, err := c.Boot(u1, 7, []Measurement{{PCR: 4, Digests: map[string]string{"sha256": "00"}, Event: []byte("kernel")}})
	if err != nil || !reset {
		t.Fatalf("boot: %v %v", reset, err)
	}
	log := make([]byte, MaxLog) // the largest allowed log goes through
	log[0], log[MaxLog-1] = 1, 2
	if err := c.PutLog(u1, 7, log); err != nil {
		t.Fatal(err)
	}
	got, err := c.GetLog(u1)
	if err != nil || len(got) != MaxLog || got[0] != 1 || got[MaxLog-1] != 2 {
		t.Fatalf("get-log: %d bytes, %v", len(got), err)
	}
	rsp, err := c.PCRs(u1, []int{4})
	if err != nil || rsp.Version != "2.0" || rsp.PCRs["sha256"]["4"] != "00" {
		t.Fatalf("pcrs: %+v %v", rsp, err)
	}
	if b, err := c.Status(""); err != nil || len(b) != 1 {
		t.Fatalf("status: %v %v", b, err)
	}
	want := "boot " + u1 + ",put-log " + u1 + ",get-log " + u1 + ",pcrs " + u1 + ",status"
	if strings.Join(h.calls, ",") != want {
		t.Fatalf("calls %v", h.calls)
	}
}

// The socket and its directory are root's alone from the start.
func TestSocketModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	os.Mkdir(dir, 0o755) // an existing, too open directory is tightened
	l, err := Listen(filepath.Join(dir, "s.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for p, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, "s.sock"): 0o600} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s mode %v, want %v", p, st.Mode().Perm(), want)
		}
	}
	if _, err := Listen(filepath.Join(dir, "s.sock")); err == nil {
		t.Fatal("a second Listen on a live socket succeeded")
	}
}

// SO_PEERCRED: a peer whose uid is not the allowed one is refused before
// its request is read. The test runs as some uid and allows another.
func TestPeerUIDRefused(t *testing.T) {
	h := &recorder{}
	c := start(t, h, uint32(os.Getuid())+4242)
	_, err := c.Status("")
	if !errors.Is(err, ErrDenied) {
		t.Fatalf("got %v, want ErrDenied", err)
	}
	if len(h.calls) != 0 {
		t.Fatalf("handler reached: %v", h.calls)
	}
}

// Codes cross the wire and match their sentinels; an untyped handler
// error is internal.
func TestErrorCodes(t *testing.T) {
	h := &recorder{}
	c := start(t, h, uint32(os.Getuid()))
	for _, tc := range []struct {
		err  error
		want error
		msg  string
	}{
		{Errorf(CodeBusy, "vTPM %s is bound to running domain 3", u1), ErrBusy, "vTPM " + u1 + " is bound to running domain 3"},
		{Errorf(CodeAlreadyBooted, "measured"), ErrAlreadyBooted, "measured"},
		{Errorf(CodeTPMDead, "dead"), ErrTPMDead, "dead"},
		{errors.New("disk full"), ErrInternal, "disk full"},
	} {
		h.err = tc.err
		_, err := c.Boot(u1, 9, nil)
		if !errors.Is(err, tc.want) {
			t.Errorf("handler error %v arrived as %v, want %v", tc.err, err, tc.want)
		}
		var e *Error
		if !errors.As(err, &e) || e.Message != tc.msg {
			t.Errorf("%v is not an *Error carrying the message", err)
		}
	}
}

// Requests the server must refuse before the handler: checked on the
// server even though the Go client checks too (another client may not).
func TestBadRequests(t *testing.T) {
	h := &recorder{}
	c := start(t, h, uint32(os.Getuid()))
	d7, d0, dBig := uint32(7), uint32(0), uint32(0x7ff0)
	for name, req := range map[string]*Request{
		"unknown op":      {Op: "format-disk", UUID: u1},
		"path uuid":       {Op: OpPCRs, UUID: "../../etc"},
		"upper-case uuid": {Op: OpPCRs, UUID: strings.ToUpper(u1)},
		"boot no domid":   {Op: OpBoot, UUID: u1},
		"domid 0":         {Op: OpBoot, UUID: u1, Domid: &d0},
		"reserved domid":  {Op: OpBoot, UUID: u1, Domid: &dBig},
		"pcr 24":          {Op: OpBoot, UUID: u1, Domid: &d7, Measurements: []Measurement{{PCR: 24, Digests: map[string]string{"sha1": "00"}}}},
		"no digests":      {Op: OpBoot, UUID: u1, Domid: &d7, Measurements: []Measurement{{PCR: 4}}},
		"big event":       {Op: OpBoot, UUID: u1, Domid: &d7, Measurements: []Measurement{{PCR: 4, Digests: map[string]string{"sha1": "00"}, Event: make([]byte, MaxEventData+1)}}},
		"too many":        {Op: OpBoot, UUID: u1, Domid: &d7, Measurements: make([]Measurement, MaxMeasurements+1)},
		"log too big":     {Op: OpPutLog, UUID: u1, Domid: &d7, Log: make([]byte, MaxLog+1)},
		"log on wrong op": {Op: OpPCRs, UUID: u1, Log: []byte("x")},
		"read pcr 99":     {Op: OpPCRs, UUID: u1, PCRs: []int{99}},
	} {
		// Bypass the client's own Check to reach the server.
		rsp, err := rawDo(c.Socket, req)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if rsp.Error == nil || !errors.Is(rsp.Error, ErrBadRequest) {
			t.Errorf("%s: answer %+v, want bad-request", name, rsp.Error)
		}
	}
	for _, raw := range []string{"", "{", `{"op":"status","extra":1}`, `[1,2]`, strings.Repeat(" ", MaxRequest+1)} {
		rsp, err := rawBytes(c.Socket, []byte(raw))
		if err != nil {
			t.Fatalf("%.20q: %v", raw, err)
		}
		if !errors.Is(rsp.Error, ErrBadRequest) {
			t.Errorf("%.20q: answer %+v, want bad-request", raw, rsp.Error)
		}
	}
	if len(h.calls) != 0 {
		t.Fatalf("handler reached: %v", h.calls)
	}
}
