package tpmback

import (
	"errors"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/vtpmboot/vtpmboot/xen/xenstore"
)

// memStore is xenstore as a map (xenstored needs Xen; e2e/xen runs the
// backend against the real one). Reads of missing paths fail like the
// store's ENOENT.
type memStore struct {
	mu      sync.Mutex
	data    map[string]string
	watches map[string]bool
}

func (s *memStore) Read(p string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.data[p]
	if !ok {
		return "", &xenstore.Error{Op: "read", Path: p, Errno: "ENOENT"}
	}
	return v, nil
}

func (s *memStore) Write(p, v string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data[p] = v
	return nil
}

func (s *memStore) Directory(p string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	set := map[string]bool{}
	for k := range s.data {
		if rest, ok := strings.CutPrefix(k, p+"/"); ok {
			set[strings.Split(rest, "/")[0]] = true
		}
	}
	if len(set) == 0 {
		return nil, &xenstore.Error{Op: "directory", Path: p, Errno: "ENOENT"}
	}
	var out []string
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out, nil
}

func (s *memStore) Watch(p, tok string) error   { s.watches[p] = true; return nil }
func (s *memStore) Unwatch(p, tok string) error { delete(s.watches, p); return nil }

func (s *memStore) rmTree(p string) {
	for k := range s.data {
		if k == p || strings.HasPrefix(k, p+"/") {
			delete(s.data, k)
		}
	}
}

const (
	be = "/local/domain/0/backend/vtpm/7/0"
	fe = "/local/domain/7/device/vtpm/0"
)

// addDevice writes what libxl__device_add_async writes for vtpm=[...].
func addDevice(s *memStore) {
	for k, v := range map[string]string{
		be + "/frontend": fe, be + "/frontend-id": "7", be + "/online": "1", be + "/state": "1",
		be + "/handle": "0", be + "/uuid": "00000000-7e57-4000-8000-000000000001", be + "/resume": "False",
		fe + "/backend": be, fe + "/backend-id": "0", fe + "/state": "1", fe + "/handle": "0",
	} {
		s.data[k] = v
	}
}

// frontendInit is what xen-tpmfront's setup_ring writes.
func frontendInit(s *memStore, ref, port string) {
	s.Write(fe+"/ring-ref", ref)
	s.Write(fe+"/event-channel", port)
	s.Write(fe+"/feature-protocol-v2", "1")
	s.Write(fe+"/state", "3")
}

// TestBackendLifecycle walks a device through what one guest does:
// xl adds it, the stub's kernel connects, closes at kexec, the soft reset
// has xl take it away (online=0, then rm) and add it again, and the
// target's kernel connects anew, to the same TPM.
func TestBackendLifecycle(t *testing.T) {
	s := &memStore{data: map[string]string{}, watches: map[string]bool{}}
	var chans []*memChannel
	var connects []string
	var opened []string
	var logs []string
	b := &Backend{
		Store: s, Root: "/local/domain/0/backend/vtpm",
		Connect: func(id, ref, port uint32) (Channel, error) {
			connects = append(connects, strings.Join([]string{itoa(id), itoa(ref), itoa(port)}, "/"))
			c := newMemChannel()
			chans = append(chans, c)
			return c, nil
		},
		OpenTPM: func(_ uint32, _, uuid string) (TPM, string, error) {
			opened = append(opened, uuid)
			return &echoTPM{}, "echo", nil
		},
		Logf: func(f string, a ...any) { logs = append(logs, f) },
	}
	state := func() string { v, _ := s.Read(be + "/state"); return v }

	b.Step() // nothing there yet
	addDevice(s)
	b.Step()
	if state() != "2" || s.data[be+"/feature-protocol-v2"] != "1" || !s.watches[fe+"/state"] {
		t.Fatalf("after add: state %q, data %v, watches %v", state(), s.data, s.watches)
	}
	frontendInit(s, "8", "5")
	b.Step()
	if state() != "4" || len(connects) != 1 || connects[0] != "7/8/5" || opened[0] != "00000000-7e57-4000-8000-000000000001" {
		t.Fatalf("connect: state %q connects %v opened %v", state(), connects, opened)
	}
	b.Step() // nothing changes: no second connect
	if len(connects) != 1 {
		t.Fatalf("connected twice: %v", connects)
	}
	// A command submitted before the backend was bound is served (Serve
	// handles the page before its first wait).
	fr := &frontend{m: chans[0]}
	if _, err := fr.Write(tpmCmd(12)); err != nil {
		t.Fatal(err)
	}
	// kexec: the stub's kernel shuts the frontend down.
	s.Write(fe+"/state", "5")
	b.Step()
	if state() != "6" || !chans[0].released {
		t.Fatalf("frontend closing: state %q released %v", state(), chans[0].released)
	}
	// Soft reset: xl takes the device away, then adds it again.
	s.Write(be+"/online", "0")
	s.Write(be+"/state", "5")
	b.Step()
	if state() != "6" {
		t.Fatalf("toolstack removal: state %q", state())
	}
	s.rmTree(be)
	s.rmTree(fe)
	b.Step()
	if len(b.devices) != 0 || s.watches[fe+"/state"] {
		t.Fatalf("removed device still tracked: %v %v", b.devices, s.watches)
	}
	addDevice(s)
	b.Step()
	frontendInit(s, "9", "6")
	b.Step()
	if state() != "4" || len(connects) != 2 || connects[1] != "7/9/6" || len(opened) != 2 {
		t.Fatalf("after soft reset: state %q connects %v", state(), connects)
	}
	// The frontend closes and starts over in place (Closed, then
	// Initialising): back to InitWait, then connected again.
	s.Write(fe+"/state", "6")
	b.Step()
	s.Write(fe+"/state", "1")
	b.Step()
	if state() != "2" {
		t.Fatalf("reconnect: state %q", state())
	}
	frontendInit(s, "10", "7")
	b.Step()
	if state() != "4" || len(connects) != 3 {
		t.Fatalf("reconnected: state %q connects %v", state(), connects)
	}
	b.Close()
	if !chans[2].released {
		t.Error("Close left a page mapped")
	}
}

// A frontend that cannot be served is told so in xenstore, not left
// waiting: no TPM for its uuid, no protocol v2.
func TestBackendConnectFailures(t *testing.T) {
	for name, tc := range map[string]struct {
		mod     func(s *memStore)
		openErr error
		want    string
	}{
		"no swtpm":    {nil, errors.New("no swtpm for vTPM x"), "no swtpm"},
		"protocol v1": {func(s *memStore) { delete(s.data, fe+"/feature-protocol-v2") }, nil, "protocol v2"},
		"no ring-ref": {func(s *memStore) { delete(s.data, fe+"/ring-ref") }, nil, "ring-ref"},
	} {
		s := &memStore{data: map[string]string{}, watches: map[string]bool{}}
		b := &Backend{Store: s, Root: "/local/domain/0/backend/vtpm",
			Connect: func(id, ref, port uint32) (Channel, error) { return newMemChannel(), nil },
			OpenTPM: func(uint32, string, string) (TPM, string, error) {
				if tc.openErr != nil {
					return nil, "", tc.openErr
				}
				return &echoTPM{}, "echo", nil
			},
			Logf: func(string, ...any) {}}
		addDevice(s)
		b.Step()
		frontendInit(s, "8", "5")
		if tc.mod != nil {
			tc.mod(s)
		}
		b.Step()
		if st := s.data[be+"/state"]; st != "5" || !strings.Contains(s.data[be+"/error"], tc.want) {
			t.Errorf("%s: state %q error %q", name, st, s.data[be+"/error"])
		}
	}
}

func itoa(v uint32) string { return strconv.FormatUint(uint64(v), 10) }
