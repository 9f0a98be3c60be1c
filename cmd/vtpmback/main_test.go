package main

import (
	"bytes"
	"errors"
	"sort"
	"strings"
	"testing"

	"github.com/vtpmboot/vtpmboot/xen/xenstore"
)

// Usage errors exit 2 with the usage text, flags spelt with two dashes;
// --help and --version exit 0 on stdout. Serving needs a Xen dom0
// (e2e/xen runs it there).
func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		args       []string
		code       int
		out, err   string
		notInError string
	}{
		{[]string{"--frobnicate"}, 2, "", "vtpmback: unknown flag --frobnicate\n", " -frobnicate"},
		{[]string{"--domid", "x"}, 2, "", "--domid", ""},
		{[]string{"--domid", "-1"}, 2, "", "--domid -1 is not a domain id", ""},
		{[]string{"--socket-dir", "/run/vtpm", "extra"}, 2, "", `unexpected argument "extra"`, ""},
		{[]string{"--help"}, 0, "usage: vtpmback", "", ""},
		{[]string{"--version"}, 0, "vtpmback ", "", ""},
	} {
		var stdout, stderr bytes.Buffer
		code := run(tc.args, &stdout, &stderr)
		if code != tc.code || !strings.Contains(stdout.String(), tc.out) || !strings.Contains(stderr.String(), tc.err) ||
			tc.notInError != "" && strings.Contains(stderr.String(), tc.notInError) {
			t.Errorf("%q: exit %d, want %d; stdout %.60q; stderr %.80q", tc.args, code, tc.code, stdout.String(), stderr.String())
		}
	}
}

// The defaults are the documented ones: an admin types nothing.
func TestDefaults(t *testing.T) {
	var out, errb bytes.Buffer
	o, code := parse(nil, &out, &errb)
	if code != nil {
		t.Fatalf("no arguments: exit %d: %s", *code, errb.String())
	}
	want := options{stateDir: "/var/lib/vtpmboot/tpm", caDir: "/var/lib/vtpmboot/ca", runDir: "/run/vtpmboot",
		control: "/run/vtpmboot/vtpmback.sock", config: "/etc/vtpmboot/vtpm.conf"}
	if *o != want {
		t.Fatalf("defaults %+v, want %+v", *o, want)
	}
}

type mapStore map[string]string

func (s mapStore) Read(p string) (string, error) {
	v, ok := s[p]
	if !ok {
		return "", &xenstore.Error{Op: "read", Path: p, Errno: "ENOENT"}
	}
	return v, nil
}
func (s mapStore) Write(p, v string) error { s[p] = v; return nil }
func (s mapStore) Directory(p string) ([]string, error) {
	set := map[string]bool{}
	for k := range s {
		if rest, ok := strings.CutPrefix(k, p+"/"); ok {
			set[strings.Split(rest, "/")[0]] = true
		}
	}
	if len(set) == 0 {
		return nil, errors.New("ENOENT")
	}
	var out []string
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out, nil
}
func (s mapStore) Watch(string, string) error   { return nil }
func (s mapStore) Unwatch(string, string) error { return nil }

// After a restart, Connected devices go back to InitWait (where the
// backend connects a Connected frontend); others are left alone.
func TestReserveConnected(t *testing.T) {
	root := "/local/domain/0/backend/vtpm"
	s := mapStore{
		root + "/7/0/state": "4", root + "/7/0/frontend": "/local/domain/7/device/vtpm/0",
		root + "/8/0/state": "2",
		root + "/9/0/state": "6",
		root + "/9/1/state": "4",
	}
	if n := reserve(s, root, t.Logf); n != 2 {
		t.Fatalf("re-served %d devices, want 2", n)
	}
	for p, want := range map[string]string{root + "/7/0/state": "2", root + "/8/0/state": "2", root + "/9/0/state": "6", root + "/9/1/state": "2"} {
		if s[p] != want {
			t.Errorf("%s = %s, want %s", p, s[p], want)
		}
	}
}
