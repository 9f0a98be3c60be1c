package main

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/vtpmboot/vtpmboot/internal/testenv"
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
		return nil, &xenstore.Error{Op: "directory", Path: p, Errno: "ENOENT"}
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

func itoa(d uint32) string { return strconv.FormatUint(uint64(d), 10) }

// --provision makes the vTPM vtpmback would make at first use, once.
func TestProvisionFlag(t *testing.T) {
	testenv.NeedCommands(t, "swtpm_setup", "swtpm_localca")
	root := t.TempDir()
	conf := filepath.Join(root, "vtpm.conf")
	os.WriteFile(conf, []byte("00000000-7e57-4000-8000-000000000012 tpm=1.2\n"), 0o644)
	args := func(u string) []string {
		return []string{"--state-dir", filepath.Join(root, "tpm"), "--ca-dir", filepath.Join(root, "ca"), "--config", conf, "--provision", u}
	}
	for u, file := range map[string]string{"00000000-7e57-4000-8000-000000000020": "tpm2-00.permall", "00000000-7e57-4000-8000-000000000012": "tpm-00.permall"} {
		var out, errb bytes.Buffer
		if code := run(args(u), &out, &errb); code != 0 || !strings.Contains(out.String(), "provisioned in") {
			t.Fatalf("%s: exit %d: %s%s", u, code, out.String(), errb.String())
		}
		if _, err := os.Stat(filepath.Join(root, "tpm", u, file)); err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		out.Reset()
		if code := run(args(u), &out, &errb); code != 0 || !strings.Contains(out.String(), "already provisioned") {
			t.Fatalf("%s again: exit %d: %s", u, code, out.String())
		}
	}
	var out, errb bytes.Buffer
	if code := run(args("../etc"), &out, &errb); code != 1 || !strings.Contains(errb.String(), "not a lower-case vTPM uuid") {
		t.Fatalf("bad uuid: exit %d: %s", code, errb.String())
	}
}
