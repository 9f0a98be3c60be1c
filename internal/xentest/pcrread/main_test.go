package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vtpmboot/vtpmboot/host/vtpmctl"
)

// fakeVTPMs stands in for vtpmback's manager (which needs Xen): this
// tests pcrread's hand-written side of the wire against the real server.
type fakeVTPMs struct{ vtpmctl.Handler }

const known = "00000000-7e57-4000-8000-000000000001"

func (fakeVTPMs) PCRs(uuid string, pcrs []int) (string, map[string]map[string]string, error) {
	if uuid != known {
		return "", nil, vtpmctl.Errorf(vtpmctl.CodeUnknownVTPM, "vTPM %s: vtpmback has not served it", uuid)
	}
	m := map[string]string{}
	for _, p := range pcrs {
		m[string(rune('a'+p))] = "00"
	}
	return "1.2", map[string]map[string]string{"sha1": m}, nil
}

func TestViaVtpmctl(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "ctl", "vtpmback.sock")
	l, err := vtpmctl.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go (&vtpmctl.Server{Handler: fakeVTPMs{}}).Serve(ctx, l)
	out, err := viaVtpmctl(sock, known)
	if err != nil {
		t.Fatal(err)
	}
	if len(out["sha1"]) != maxPCR+1 {
		t.Errorf("asked for %d PCRs, got %v", maxPCR+1, out)
	}
	_, err = viaVtpmctl(sock, "00000000-7e57-4000-8000-000000000002")
	if err == nil || !strings.Contains(err.Error(), "vtpmctl unknown-vtpm: ") {
		t.Errorf("unknown vTPM: %v, want the code the test looks for", err)
	}
}
